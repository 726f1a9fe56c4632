"""qid: one integer per feed session (contract section 7).

qids live in a registry (`<root>/.daedalus/qid/registry.parquet`) that only grows: the
first day job that meets a session without a qid assigns, under a file lock, every new
session of the run's days at once (`assign_qids`), so the numbering is the same whatever
order or concurrency the day jobs run in. `publish_qid_map` then writes `qid_map.parquet`
from the day outputs. Neither file is an input of a day job, so a new qid never makes
other days look stale.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from daedalus.atomic import write_parquet
from daedalus.errors import DaedalusError
from daedalus.plan import Plan, QidOp, QidParams, SpineParams
from daedalus.skeleton.context import DayContext, table, ts_literal
from daedalus.sources import SourceFiles, partition_day, read_parquet_sql, sql_ident, sql_str, timestamp_sql


def state_dir(output_root: Path) -> Path:
    return Path(output_root) / ".daedalus"


def registry_path(output_root: Path) -> Path:
    return state_dir(output_root) / "qid" / "registry.parquet"


def qid_map_path(output_root: Path) -> Path:
    return Path(output_root) / "qid_map.parquet"


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    return con


def _spans(days: set[dt.date]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Days as the fewest [start, end) spans: DuckDB filters a long OR of ranges very slowly."""
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    for d in sorted(days):
        a = dt.datetime.combine(d, dt.time())
        if spans and spans[-1][1] == a:
            spans[-1] = (spans[-1][0], a + dt.timedelta(days=1))
        else:
            spans.append((a, a + dt.timedelta(days=1)))
    return spans


class Busy(Exception):
    """Another job holds the registry's lock (`assign_qids` with wait=False)."""


def assign_qids(
    plan: Plan, days: list[dt.date], spine_files: list[str], output_root: Path, *, wait: bool = True
) -> dict:
    """Give every session with rows in `days` and no qid yet the next qids, by first row.
    Raises Busy when `wait` is False and another job is assigning."""
    sp: SpineParams = plan.spine.params
    session = sp.session_field
    assert session
    spec = plan.sources[sp.source]
    wanted = set(days)
    # Sorted, so that a row's file_index in the scan is its file's rank in source order.
    files = sorted(f for f in spine_files if partition_day(f) is None or partition_day(f) in wanted)
    reg = registry_path(output_root)
    reg.parent.mkdir(parents=True, exist_ok=True)
    new = 0
    try:
        with FileLock(str(reg) + ".lock", timeout=-1 if wait else 0):
            con = _connect()
            if reg.exists():
                con.execute(f"CREATE TEMP TABLE reg AS SELECT * FROM read_parquet({sql_str(reg.as_posix())})")
            if files:
                rel = read_parquet_sql(files)
                types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
                ts = timestamp_sql(spec.timestamp_field, types[spec.timestamp_field], spec.path)
                day_conds = " OR ".join(
                    f"(__ts >= {ts_literal(a)} AND __ts < {ts_literal(b)})" for a, b in _spans(wanted)
                )
                s = sql_ident(session)
                # A hash aggregate of the smallest (ts, file, row) per session: no sort of all rows.
                con.execute(f"""
                    CREATE TEMP TABLE firsts AS
                    SELECT {s} AS session, min({{'t': __ts, 'f': __file, 'r': __row}}) AS __first FROM (
                        SELECT {s}, {ts} AS __ts, file_index AS __file, file_row_number AS __row FROM {rel}
                    ) WHERE {s} IS NOT NULL AND ({day_conds})
                    GROUP BY {s}
                """)
                if not reg.exists():
                    con.execute(
                        "CREATE TEMP TABLE reg AS SELECT session, CAST(NULL AS BIGINT) AS qid FROM firsts WHERE false"
                    )
                base = con.execute("SELECT coalesce(max(qid) + 1, 0) FROM reg").fetchall()[0][0]
                con.execute(f"""
                    CREATE TEMP TABLE fresh AS
                    SELECT session, CAST({base} + row_number() OVER (ORDER BY __first) - 1 AS BIGINT) AS qid
                    FROM firsts ANTI JOIN reg USING (session)
                """)
                new = con.execute("SELECT count(*) FROM fresh").fetchall()[0][0]
                if new or not reg.exists():
                    merged = con.sql(
                        "SELECT session, qid FROM reg UNION ALL SELECT session, qid FROM fresh ORDER BY qid"
                    ).to_arrow_table()
                    write_parquet(merged.rename_columns(["session", "qid"]), reg)
    except Timeout:
        raise Busy(str(reg)) from None
    return {"new_sessions": int(new)}


def _join_registry(ctx: DayContext, op: QidOp, session_field: str) -> int:
    """(Re)build the day's qid table from the registry; returns rows whose session has no qid."""
    reg = registry_path(ctx.output_root)
    s = sql_ident(session_field)
    spine = table(ctx.plan.input_of(op, "spine").name)
    if reg.exists():
        src = f"read_parquet({sql_str(reg.as_posix())})"
    else:
        src = f"(SELECT {s} AS session, CAST(NULL AS BIGINT) AS qid FROM {spine} WHERE false)"
    ctx.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {table(op.name)} AS
        SELECT sp.__rid, r.qid FROM {spine} sp LEFT JOIN {src} r ON sp.{s} = r.session
    """)
    return ctx.con.execute(
        f"SELECT count(*) FROM {table(op.name)} q JOIN {spine} sp USING (__rid) WHERE q.qid IS NULL AND sp.{s} IS NOT NULL"
    ).fetchall()[0][0]


def qid_sql(ctx: DayContext, op: QidOp, *, wait: bool = True) -> None:
    """qids of the day's rows; the first day job that meets a new session numbers them all.

    Assigning every new session of the run's days at once, in first-row order, makes qids
    independent of which day job gets there first, so of day_workers and executor. With
    `wait` False, raises Busy instead of waiting for another job's assignment (the day job
    then computes its other operators first: daedalus.skeleton.stage).
    """
    p: QidParams = op.params
    if _join_registry(ctx, op, p.session_field) == 0:
        return
    spine_src = ctx.plan.input_of(op, "spine").params.source
    files = SourceFiles.scan(ctx.plan.sources[spine_src].path).select(ctx.run_days or [ctx.day], 0)
    assign_qids(ctx.plan, ctx.run_days or [ctx.day], files, ctx.output_root, wait=wait)
    missing = _join_registry(ctx, op, p.session_field)
    if missing:
        raise DaedalusError(
            registry_path(ctx.output_root),
            f"{missing} rows of {ctx.day} still have no qid after assignment; is the day outside the run's days?",
        )


def publish_qid_map(output_root: Path, session_field: str) -> int:
    """Write qid_map.parquet: exactly the sessions that have rows in the day outputs."""
    root = Path(output_root)
    parts = sorted(root.glob("dt=*/part-*.parquet"))
    con = _connect()
    s = sql_ident(session_field)
    if parts:
        rel = f"read_parquet({sql_str(root.as_posix() + '/dt=*/part-*.parquet')}, hive_partitioning=false, union_by_name=true)"
        tbl = con.sql(f"SELECT DISTINCT {s}, qid FROM {rel} WHERE {s} IS NOT NULL ORDER BY qid").to_arrow_table()
    else:
        reg = registry_path(root)
        if reg.exists():
            t = pq.read_table(reg).slice(0, 0)
            tbl = pa.table({session_field: t["session"], "qid": t["qid"]})
        else:
            tbl = pa.table({session_field: pa.array([], pa.string()), "qid": pa.array([], pa.int64())})
    tbl = tbl.cast(pa.schema([pa.field(session_field, tbl.schema.field(0).type), pa.field("qid", pa.int64())]))
    out = qid_map_path(root)
    if out.exists():
        try:
            if pq.read_table(out).equals(tbl):
                return tbl.num_rows
        except Exception:
            pass  # unreadable: rewrite it
    write_parquet(tbl, out)
    return tbl.num_rows
