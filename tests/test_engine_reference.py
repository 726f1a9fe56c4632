"""Every (operator kind, engine) pair against the naive reference, in-process.

The edge-case datasets of tests/edge_data.py (the fixed `edge` and `simple` ones and
hypothesis-generated random ones) are compiled and run day by day in-process
(tests/inprocess.py: the code a day job runs, without Snakemake) under every assignment of
engines to the operator kinds that have more than one (`daedalus.plan.ENGINES`: today
pit_join and window_agg, each sql or pythonic), chosen as a user chooses them: a hand-edited
plan `config/pipelines/<service>.yaml`, which compile validates and binds. Every cell of
every day, the parts' layout and qid_map.parquet are compared with tests/reference.py
exactly as tests/test_reference.py compares the CLI's output (tests/output_checks.py).

Test ids name the assignment: `all-sql` (the generated plan), `all-pythonic`, and the kinds
switched alone from the default, e.g. `pit_join-pythonic` (window_agg on sql) and
`window_agg-pythonic` (pit_join on sql). The kinds with one engine (spine, derive, udf, qid,
write_parts) run in every assignment.

Run:  .venv/bin/python -m pytest tests/test_engine_reference.py -v
      (DAEDALUS_ENGINE_REF_EXAMPLES=N hypothesis examples per assignment, default 2, each
      merging DAEDALUS_ENGINE_REF_SPECS=M random datasets, default 6.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge_data  # noqa: E402
import inprocess  # noqa: E402
import output_checks as C  # noqa: E402
import reference as R  # noqa: E402

from daedalus.plan import ENGINES, KINDS  # noqa: E402

ASSIGNMENTS = inprocess.engine_assignments()
IDS = [inprocess.assignment_id(a) for a in ASSIGNMENTS]
# embed is the enrich stage's (tests/test_enrich.py); label_window has one engine and its own
# reference and edge cases (tests/test_label_windows.py, tests/reference_labels.py).
SKELETON_KINDS = {k for k in KINDS if k not in ("embed", "label_window")}


@dataclass
class Expected:
    ds: edge_data.Dataset
    defs: R.Defs
    cols: list
    per_day: dict
    qmap: dict | None
    generated_yaml: str | None = None  # the generated plan, once compiled (saves a compile per assignment)


def expect(ds: edge_data.Dataset) -> Expected:
    defs = R.load_defs(ds.root, ds.exprs)
    per_day, qmap = R.expected_run(defs, ds.service, ds.days)
    return Expected(ds, defs, R.output_columns(defs, ds.service), per_day, qmap)


@contextlib.contextmanager
def local_zone(zone: str | None) -> Iterator[None]:
    """The process's local time zone (contract §1: it never matters), restored afterwards."""
    before = os.environ.get("TZ")
    if zone is not None:
        os.environ["TZ"] = zone
        time.tzset()
    try:
        yield
    finally:
        if zone is not None:
            if before is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = before
            time.tzset()


def run_and_compare(exp: Expected, engines: dict[str, str], zone: str | None = None) -> list[str]:
    """Compile with `engines` in the dataset's directory, run every day, and list every
    difference from the reference (labelled with the assignment)."""
    ds, label = exp.ds, inprocess.assignment_id(engines)
    out = ds.root / "out" / label
    with contextlib.chdir(ds.root), local_zone(zone):
        compiled = inprocess.compile_with_engines(ds.service, engines, generated_yaml=exp.generated_yaml)
        exp.generated_yaml = compiled.generated_yaml
        assert compiled.days == ds.days
        chunk_rows = compiled.definitions.runtime.skeleton.chunk_rows
        assert chunk_rows == ds.chunk_rows
        shutil.rmtree(out, ignore_errors=True)
        inprocess.run_days(compiled.plan, compiled.days, out, chunk_rows=chunk_rows, temp=ds.root / ".tmp")
    problems = []
    for day in ds.days:
        problems += C.day_problems(out, chunk_rows, exp.cols, day, exp.per_day[day], label=f"[{label}] ")
    problems += [f"[{label}] {p}" for p in C.qid_map_problems(out, exp.defs, ds.service, ds.root, exp.qmap)]
    want = [f"dt={d.isoformat()}" for d in ds.days]
    if C.output_days(out) != want:
        problems.append(f"[{label}] output day directories: expected {want}, got {C.output_days(out)}")
    return problems


# --------------------------------------------------------------------------- the fixed datasets


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Expected:
    return expect(edge_data.build_edge(tmp_path_factory.mktemp("edge") / "edge"))


@pytest.fixture(scope="module")
def simple(tmp_path_factory) -> Expected:
    return expect(edge_data.build_simple(tmp_path_factory.mktemp("simple") / "simple"))


def test_the_assignments_cover_every_kind_and_engine(edge: Expected, simple: Expected) -> None:
    """The datasets' plans hold every skeleton operator kind; the assignments run each kind
    under each of its engines; the default assignment is the generated plan's."""
    kinds: set[str] = set()
    for exp in (edge, simple):
        with contextlib.chdir(exp.ds.root):
            plan = inprocess.compile_with_engines(exp.ds.service).plan
        kinds |= {op.kind for op in plan.operators}
        for op in plan.operators:
            assert op.engine == inprocess.DEFAULT_ENGINES.get(op.kind, op.engine), (op.name, op.engine)
    assert kinds == SKELETON_KINDS
    pairs = {(k, a.get(k, inprocess.DEFAULT_ENGINES.get(k))) for a in ASSIGNMENTS for k in inprocess.MULTI_ENGINE_KINDS}
    assert pairs == {(k, e) for k, es in ENGINES.items() if len(es) > 1 and k in SKELETON_KINDS for e in es}
    assert "all-sql" in IDS and len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("engines", ASSIGNMENTS, ids=IDS)
def test_edge(edge: Expected, engines: dict[str, str]) -> None:
    """TTL and window boundaries, created-timestamp and source-order ties, nulls, empty days,
    derived and udf features, qids (tests/edge_data.py `build_edge`)."""
    C.fail_if(run_and_compare(edge, engines))


@pytest.mark.parametrize("engines", ASSIGNMENTS, ids=IDS)
def test_simple(simple: Expected, engines: dict[str, str]) -> None:
    """No session field; mixed time units and zones; run under a half-hour local zone, as the
    CLI suite runs it (tests/edge_data.py `build_simple`)."""
    C.fail_if(run_and_compare(simple, engines, zone="Asia/Kolkata"))


# --------------------------------------------------------------------------- random datasets

EXAMPLES = int(os.environ.get("DAEDALUS_ENGINE_REF_EXAMPLES", "2"))
SPECS_PER_EXAMPLE = int(os.environ.get("DAEDALUS_ENGINE_REF_SPECS", "6"))


@dataclass
class RandomDatasets:
    base: Path
    built: dict[str, Expected]


@pytest.fixture(scope="module")
def random_datasets(tmp_path_factory) -> RandomDatasets:
    """Each example's dataset and expectations, built once: every assignment draws the same
    derandomized examples."""
    return RandomDatasets(tmp_path_factory.mktemp("random"), {})


# Each example merges SPECS_PER_EXAMPLE random specs into one working directory
# (tests/edge_data.py `build_random`).
@pytest.mark.parametrize("engines", ASSIGNMENTS, ids=IDS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failing dataset is kept instead
    suppress_health_check=list(HealthCheck),
)
@given(specs=st.lists(edge_data.random_spec_strategy(), min_size=SPECS_PER_EXAMPLE, max_size=SPECS_PER_EXAMPLE))
def test_random_datasets(random_datasets: RandomDatasets, engines: dict[str, str], specs: list[dict]) -> None:
    built = random_datasets.built
    key = repr(specs)
    if key not in built:
        built[key] = expect(edge_data.build_random(random_datasets.base / f"rand{len(built)}", specs))
    exp = built[key]
    problems = run_and_compare(exp, engines)
    if problems:
        keep = Path(tempfile.mkdtemp(prefix="daedalus_engref_fail_"))
        shutil.copytree(exp.ds.root, keep / "rand", ignore=shutil.ignore_patterns("out"))
        problems.insert(0, f"random dataset kept at {keep / 'rand'}; specs={specs}")
    C.fail_if(problems)
