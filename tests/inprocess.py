"""Running a service's day jobs in-process: the code a day job runs, without Snakemake.

Compile the service in the working directory (`compile_service`), choose the engines, run
every day of the run with `run_skeleton_stage` (as `daedalus.jobs.skeleton` does, with the
run's days for qids) and publish qid_map.parquet (as the qid_map job does). Used by
tests/test_type_matrix.py and tests/test_engine_reference.py.

Engines are chosen the way a user chooses them: a hand-edited plan
`config/pipelines/<service>.yaml` (the generated plan with `engine:` changed), which compile
validates and binds (`via="override"`); or, cheaper, by replacing the engines of the
compiled plan in memory (`via="memory"`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from daedalus.compile import Compiled, compile_service, override_path
from daedalus.definitions import DuckDBSettings
from daedalus.loading import DefinitionPaths
from daedalus.plan import ENGINES, Plan
from daedalus.skeleton import run_skeleton_stage
from daedalus.skeleton.qid import publish_qid_map

# The skeleton operator kinds with more than one engine, and the engine lowering generates
# (the first one declared; tests/test_engine_reference.py checks it against the plans).
MULTI_ENGINE_KINDS: dict[str, tuple[str, ...]] = {
    kind: engines for kind, engines in ENGINES.items() if len(engines) > 1 and kind != "embed"
}
DEFAULT_ENGINES: dict[str, str] = {kind: engines[0] for kind, engines in MULTI_ENGINE_KINDS.items()}


def uniform_engines(engine: str) -> dict[str, str]:
    """Every kind that has `engine` runs it (e.g. "pythonic": pit_join and window_agg)."""
    return {kind: engine for kind, engines in MULTI_ENGINE_KINDS.items() if engine in engines}


def assignment_id(engines: dict[str, str]) -> str:
    """`all-sql`, `all-pythonic` when every kind runs one engine; otherwise the kinds that
    differ from the default, e.g. `pit_join-pythonic` (window_agg on its default engine)."""
    full = {**DEFAULT_ENGINES, **engines}
    if len(set(full.values())) == 1:
        return f"all-{next(iter(full.values()))}"
    return "+".join(f"{k}-{e}" for k, e in sorted(full.items()) if e != DEFAULT_ENGINES[k])


def engine_assignments(limit: int = 16) -> list[dict[str, str]]:
    """Every combination of the kinds' engines (the default first); when there are more than
    `limit`, the default, each kind switched alone to each of its engines, and each engine
    everywhere it exists."""
    kinds = sorted(MULTI_ENGINE_KINDS)
    combos = [dict(zip(kinds, c)) for c in itertools.product(*(MULTI_ENGINE_KINDS[k] for k in kinds))]
    if len(combos) > limit:
        combos = [dict(DEFAULT_ENGINES)]
        combos += [{**DEFAULT_ENGINES, k: e} for k in kinds for e in MULTI_ENGINE_KINDS[k]]
        combos += [
            {**DEFAULT_ENGINES, **uniform_engines(e)} for e in {e for es in MULTI_ENGINE_KINDS.values() for e in es}
        ]
    out: dict[str, dict[str, str]] = {assignment_id(DEFAULT_ENGINES): dict(DEFAULT_ENGINES)}
    for c in combos:
        out.setdefault(assignment_id(c), c)
    return list(out.values())


def plan_with_engines(plan: Plan, engines: dict[str, str]) -> Plan:
    """The plan with every operator of a kind in `engines` on that engine (no validation)."""
    ops = [op.model_copy(update={"engine": engines[op.kind]}) if op.kind in engines else op for op in plan.operators]
    return plan.model_copy(update={"operators": ops})


def compile_with_engines(
    service: str, engines: dict[str, str] | None = None, *, via: str = "override", generated_yaml: str | None = None
) -> Compiled:
    """Compile `service` in the working directory with the operators of each kind in
    `engines` on that engine. Nothing is written but the hand-edited plan, which is removed
    again; the returned plan is the one a day job would run. `generated_yaml`, the generated
    plan of an earlier compile of the same definitions and data, saves a compile."""
    engines = engines or {}
    compiled = None
    if generated_yaml is None or via == "memory":
        with working_directory_imports():
            compiled = compile_service(service, DefinitionPaths(), output_dir=None)
        generated_yaml = compiled.generated_yaml
    doc = yaml.safe_load(generated_yaml)
    if all(op["engine"] == engines.get(op["kind"], op["engine"]) for op in doc["operators"]):
        if compiled is None:
            with working_directory_imports():
                compiled = compile_service(service, DefinitionPaths(), output_dir=None)
        return compiled
    if via == "memory":
        assert compiled is not None
        return dataclasses.replace(compiled, plan=plan_with_engines(compiled.plan, engines))
    assert via == "override", via
    for op in doc["operators"]:
        op["engine"] = engines.get(op["kind"], op["engine"])
    ov = override_path(service)
    assert not ov.exists(), f"{ov} exists: this helper writes its own hand-edited plan"
    ov.parent.mkdir(parents=True, exist_ok=True)
    ov.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        with working_directory_imports():
            compiled = compile_service(service, DefinitionPaths(), output_dir=None)
    finally:
        ov.unlink()
    assert compiled.plan_path == ov, compiled.plan_path
    wrong = [(op.name, op.engine) for op in compiled.plan.operators if op.engine != engines.get(op.kind, op.engine)]
    assert not wrong, f"the hand-edited plan's engines did not take: {wrong}"
    return compiled


@contextlib.contextmanager
def working_directory_imports():
    """Restore sys.path and forget the modules imported from the working directory.

    A udf module is imported from the working directory (daedalus.udfs puts it first on
    sys.path), at compile (binding) and in the day job; in one process the next test's
    working directory would otherwise get the previous one's module."""
    cwd = Path.cwd().resolve()
    path_before, modules_before = list(sys.path), set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = path_before
        for name in set(sys.modules) - modules_before:
            file = getattr(sys.modules[name], "__file__", None)
            if file and Path(file).resolve().is_relative_to(cwd):
                del sys.modules[name]


def run_days(plan: Plan, days: list[dt.date], out: Path, *, chunk_rows: int, temp: Path) -> None:
    """Every day of the run, then qid_map.parquet when the plan numbers sessions."""
    settings = DuckDBSettings(threads=1, memory_limit="1GB", temp_directory=str(temp))
    with working_directory_imports():
        for day in days:
            run_skeleton_stage(plan, day, out, chunk_rows=chunk_rows, duckdb_settings=settings, run_days=days)
        qid = plan.ops("qid")
        if qid:
            publish_qid_map(out, qid[0].params.session_field)


def read_day(out: Path, day: dt.date) -> pa.Table:
    """The day's parts concatenated in N order (no layout checks: see tests/output_checks.py)."""
    d = out / f"dt={day.isoformat()}"
    parts = sorted(d.glob("part-*-0.parquet"), key=lambda p: int(p.name.split("-")[1]))
    return pa.concat_tables([pq.read_table(p) for p in parts])
