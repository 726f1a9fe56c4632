"""Checking an output root against the naive reference (tests/reference.py): the day parts'
layout (part-0-0..part-(n-1)-0, at most chunk_rows rows each, ZSTD, one schema), every cell
of every day, and qid_map.parquet. Shared by the CLI suite (tests/test_reference.py) and the
in-process one (tests/test_engine_reference.py), which compare the same way.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402

PART_RE = re.compile(r"^part-(\d+)-0\.parquet$")


def read_day(out: Path, day: dt.date, chunk_rows: int) -> tuple[pa.Table | None, list[str]]:
    """The day's skeleton parts under output root `out` concatenated in N order, plus layout problems."""
    problems = []
    ddir = out / f"dt={day.isoformat()}"
    if not ddir.is_dir():
        return None, [f"{day}: missing directory {ddir}"]
    files = sorted(p.name for p in ddir.iterdir() if p.name.endswith(".parquet"))
    numbered = {}
    for name in files:
        m = PART_RE.match(name)
        if not m or name != f"part-{int(m.group(1))}-0.parquet":
            problems.append(f"{day}: unexpected parquet file {name}")
        else:
            numbered[int(m.group(1))] = name
    if sorted(numbered) != list(range(len(numbered))) or not numbered:
        problems.append(f"{day}: part files are not part-0-0..part-(n-1)-0: {files}")
    tables = []
    for n in sorted(numbered):
        path = ddir / numbered[n]
        pf = pq.ParquetFile(path)
        t = pf.read()
        if t.num_rows > chunk_rows:
            problems.append(f"{day}: {path.name} has {t.num_rows} rows > chunk_rows {chunk_rows}")
        for rg in range(pf.metadata.num_row_groups):
            for c in range(pf.metadata.num_columns):
                comp = pf.metadata.row_group(rg).column(c).compression
                if comp.upper() != "ZSTD":
                    problems.append(f"{day}: {path.name} column {c} compressed with {comp}, not ZSTD")
                    break
        if tables and not t.schema.equals(tables[0].schema):
            problems.append(f"{day}: {path.name} schema differs from part-0-0:\n{t.schema}\nvs\n{tables[0].schema}")
            continue
        tables.append(t)
    if not tables:
        return None, problems
    return pa.concat_tables(tables), problems


def day_problems(
    out: Path, chunk_rows: int, cols: list, day: dt.date, expected_rows: list[dict], label: str = ""
) -> list[str]:
    """Layout problems of the day plus every cell that differs from the reference's rows."""
    table, problems = read_day(out, day, chunk_rows)
    if table is None:
        return problems
    return problems + R.compare_rows(cols, expected_rows, table, label=f"{label}{day}")


def qid_map_problems(out: Path, defs: R.Defs, service: str, workdir: Path, expected: dict | None) -> list[str]:
    """qid_map.parquet under `out` against the reference's map (None: no session field, no file)."""
    path = out / "qid_map.parquet"
    if expected is None:
        return [f"qid_map.parquet exists without a session_field: {path}"] if path.exists() else []
    if not path.exists():
        return [f"missing {path}"]
    sf = defs.services[service]["spine"]["session_field"]
    t = pq.read_table(path)
    problems = []
    if t.column_names != [sf, "qid"]:
        problems.append(f"qid_map columns: expected {[sf, 'qid']}, got {t.column_names}")
        return problems
    spine_type = R.normalize_type(
        R.read_source(defs.services[service]["spine"]["source"], workdir).schema.field(sf).type
    )
    if t.schema.field(sf).type != spine_type:
        problems.append(f"qid_map {sf} type {t.schema.field(sf).type}, expected {spine_type}")
    if t.schema.field("qid").type != pa.int64():
        problems.append(f"qid_map qid type {t.schema.field('qid').type}, expected int64")
    sessions, qids = t.column(sf).to_pylist(), t.column("qid").to_pylist()
    if len(set(sessions)) != len(sessions):
        problems.append(f"qid_map has duplicate sessions: {sessions}")
    if len(set(qids)) != len(qids):
        problems.append(f"qid_map has duplicate qids: {qids}")
    got = dict(zip(sessions, qids))
    if got != expected:
        problems.append(
            f"qid_map: expected {sorted(expected.items(), key=lambda kv: kv[1])}, "
            f"got {sorted(got.items(), key=lambda kv: (kv[1] is None, kv[1]))}"
        )
    return problems


def output_days(out: Path) -> list[str]:
    """The dt=<day> directories of an output root."""
    return sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("dt=")) if out.is_dir() else []


def fail_if(problems: list[str]) -> None:
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
