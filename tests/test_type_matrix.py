"""Every type a user's writer produces, in every role, against the naive reference.

The same logical dataset (tests/type_matrix.py) is written by pyarrow, pandas, polars and
DuckDB in each timestamp unit and zone they offer, with the physical types those writers
produce for strings, categoricals, small and unsigned ids and decimals. Each cell is
compiled and run day by day in-process (the code a day job runs, without Snakemake), once
with the sql engines and once with the pythonic ones, and every cell of every output row
is compared with tests/reference.py. One cell (pandas' tz-aware nanoseconds, the most common
real-world input) also goes through `daeda pipeline train`.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inprocess  # noqa: E402
import reference as R  # noqa: E402
import type_matrix as M  # noqa: E402

DAYS = [dt.date(2026, 4, 2), dt.date(2026, 4, 3)]
read_day = inprocess.read_day


def run_cell(root: Path, engine: str) -> tuple[Path, list[str]]:
    """Compile the cell's service in its directory and run both days with one engine family."""
    compiled = inprocess.compile_with_engines("matrix", inprocess.uniform_engines(engine), via="memory")
    out = root / f"out-{engine}"
    inprocess.run_days(compiled.plan, DAYS, out, chunk_rows=M.CHUNK_ROWS, temp=root / ".tmp")
    return out, compiled.warnings


@pytest.mark.parametrize("cell", M.CELLS, ids=[c.id for c in M.CELLS])
def test_cell_equals_the_reference(cell: M.Cell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = M.build(tmp_path / cell.id, cell)
    monkeypatch.chdir(root)
    defs = R.load_defs(root, M.EXPRS)
    cols = R.output_columns(defs, "matrix")
    per_day, qmap = R.expected_run(defs, "matrix", DAYS)
    problems: list[str] = []
    for engine in ("sql", "pythonic"):
        out, warnings = run_cell(root, engine)
        assert warnings == [], warnings
        for day in DAYS:
            table = read_day(out, day)
            problems += R.compare_rows(cols, per_day[day], table, label=f"{cell.id} {engine} {day}")
            if table.num_rows > M.CHUNK_ROWS:  # parts are at most chunk_rows each; more rows than one chunk
                assert len(list((out / f"dt={day}").glob("part-*"))) > 1
        got = pq.read_table(out / "qid_map.parquet")
        if dict(zip(got["session"].to_pylist(), got["qid"].to_pylist())) != qmap:
            problems.append(f"{cell.id} {engine}: qid_map {got.to_pylist()} != {qmap}")
        if got.schema.field("session").type != pa.string():
            problems.append(f"{cell.id} {engine}: qid_map session type {got.schema.field('session').type}")
    assert not problems, "\n".join(problems[:60])


def test_the_matrix_covers_every_timestamp_type_duckdb_reads(tmp_path: Path) -> None:
    """The cells hold every parquet time type DuckDB 2 distinguishes, and each writer's own
    physical types for the other columns (so the matrix is what it says it is)."""
    con = duckdb.connect()
    duck: set[str] = set()
    arrow: set[str] = set()
    for cell in M.CELLS:
        root = M.build(tmp_path / cell.id, cell)
        for f in sorted(root.rglob("*.parquet")):
            arrow |= {str(fld.type) for fld in pq.read_schema(f)}
            duck |= {r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{f.as_posix()}')").fetchall()}
    assert {"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS", "DATE"} <= duck
    for t in (
        "timestamp[ms]",
        "timestamp[ns, tz=Asia/Kolkata]",
        "timestamp[us, tz=UTC]",
        "timestamp[ns, tz=America/New_York]",
        "large_string",
        "string_view",
        "dictionary<values=string, indices=int8, ordered=0>",
        "dictionary<values=string, indices=uint32, ordered=0>",
        "uint8",
        "uint16",
        "uint32",
        "int8",
        "decimal128(10, 2)",
    ):
        assert t in arrow, t


@pytest.mark.e2e
def test_pandas_tz_aware_nanoseconds_through_train(tmp_path: Path) -> None:
    """The input of the original report: pandas `tz="UTC"` columns (TIMESTAMPTZ_NS), end to end."""
    cell = M.Cell("pandas", "ns", "UTC")
    root = M.build(tmp_path / cell.id, cell)
    res = subprocess.run(
        [sys.executable, "-m", "daedalus", "pipeline", "train", "matrix", "--skeleton-only"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    defs = R.load_defs(root, M.EXPRS)
    cols = R.output_columns(defs, "matrix")
    per_day, qmap = R.expected_run(defs, "matrix", DAYS)
    problems = []
    for day in DAYS:
        problems += R.compare_rows(cols, per_day[day], read_day(root / "out", day), label=str(day))
    got = pq.read_table(root / "out/qid_map.parquet")
    assert dict(zip(got["session"].to_pylist(), got["qid"].to_pylist())) == qmap
    assert not problems, "\n".join(problems)
