"""Running a plan for one day: each operator by its engine, then the parts."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from daedalus.definitions import DuckDBSettings
from daedalus.plan import Plan
from daedalus.skeleton import labels, windows, windows_py
from daedalus.skeleton.columns import DayColumns
from daedalus.skeleton.context import DayContext, lock_down, table
from daedalus.skeleton.derive import derive_sql, udf_arrow
from daedalus.skeleton.pit import pit_join_pythonic, pit_join_sql
from daedalus.skeleton.qid import Busy, qid_sql, registry_path
from daedalus.skeleton.spine import spine_sql
from daedalus.skeleton.state import day_states
from daedalus.skeleton.windows import window_agg_sql
from daedalus.skeleton.windows_py import window_agg_pythonic
from daedalus.sources import SourceFiles

# Each implementation takes its own operator class; the table is keyed by that class's kind.
Impl = Callable[[DayContext, Any], None]

# (operator kind, engine) -> implementation; a new engine or operator is a new entry.
IMPLEMENTATIONS: dict[tuple[str, str], Impl] = {
    ("spine", "sql"): spine_sql,
    ("pit_join", "sql"): pit_join_sql,
    ("pit_join", "pythonic"): pit_join_pythonic,
    ("derive", "sql"): derive_sql,
    ("udf", "sql_arrow_udf"): udf_arrow,
    ("window_agg", "sql"): window_agg_sql,
    ("window_agg", "pythonic"): window_agg_pythonic,
    ("label_window", "sql"): labels.label_window_sql,
    ("qid", "sql"): qid_sql,
}


# (operator kind, engine) -> the aggregation functions that implementation computes
# (daedalus.functions); a plan asking an engine for another one is a compile error.
FUNCTION_SUPPORT: dict[tuple[str, str], set[str]] = {
    ("window_agg", "sql"): windows.SUPPORTED,
    ("window_agg", "pythonic"): windows_py.SUPPORTED,
    ("label_window", "sql"): set(labels.SUPPORTED),
}
# ... and those it computes per bucket, as a bucket map (`bucket_by` without `buckets`).
BUCKET_MAP_SUPPORT: dict[tuple[str, str], set[str]] = {
    ("window_agg", "sql"): windows.BUCKET_MAP_SUPPORTED,
    ("window_agg", "pythonic"): windows_py.BUCKET_MAP_SUPPORTED,
}


@dataclass
class DayResult:
    day: dt.date
    rows: int
    parts: int
    seconds: float
    operator_seconds: dict[str, float]
    computed: list[str]  # the operators computed (the others' tables were kept: columns.py)


def connect(settings: DuckDBSettings, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": threads or settings.threads, "memory_limit": settings.memory_limit})
    Path(settings.temp_directory).mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{Path(settings.temp_directory).as_posix()}'")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    return con


def scan_sources(plan: Plan) -> dict[str, SourceFiles]:
    return {sid: SourceFiles.scan(spec.path) for sid, spec in plan.sources.items()}


def day_files(plan: Plan, day: dt.date, scans: dict[str, SourceFiles] | None = None) -> dict[str, list[str]]:
    """Every source file a day job reads (its look-back), as the workflow declares them."""
    scans = scans or scan_sources(plan)
    return {
        sid: scans[sid].for_day(day, spec.lookback_days, plan.lookahead_days(sid)) for sid, spec in plan.sources.items()
    }


def run_skeleton_stage(
    plan: Plan,
    day: dt.date,
    output_root: Path | str,
    *,
    chunk_rows: int,
    duckdb_settings: DuckDBSettings | None = None,
    threads: int | None = None,
    files: dict[str, list[str]] | None = None,
    run_days: list[dt.date] | None = None,
    incremental: bool = True,
) -> DayResult:
    """Compute day `day` of the plan and publish `<output_root>/dt=<day>/part-N-0.parquet`.

    `run_days` are the days of the whole run: a session without a qid gets one together with
    every other new session of those days (contract section 7); default: this day only.
    `incremental`: operators with per-source-day state read it (made when missing,
    daedalus.skeleton.state) instead of their raw look-back, and an operator whose table
    of the day is kept and current (daedalus.skeleton.columns) is read, not computed; the
    bytes are the same.
    """
    from daedalus.quality import SkeletonStats, write_skeleton_stats
    from daedalus.skeleton.writer import write_parts

    t0 = time.perf_counter()
    output_root = Path(output_root)
    scans = scan_sources(plan)
    if files is None:
        files = day_files(plan, day, scans)
    settings = duckdb_settings or DuckDBSettings()
    kept = DayColumns(plan, day, files, output_root) if incremental else None
    reused = kept.current() if kept else set()
    computed = [op.name for op in plan.skeleton_operators if op.name not in reused and op.kind != "write_parts"]
    states = (
        day_states(plan, day, output_root, scans, settings, only=set(computed), first_day=min(run_days or [day]))
        if incremental
        else {}
    )
    state_files = [p.as_posix() for by_day in states.values() for p in by_day.values()]
    con = connect(settings, threads)
    try:
        lock_down(
            con,
            [f for fs in files.values() for f in fs] + [registry_path(output_root).as_posix()] + state_files,
            settings.temp_directory,
        )
        ctx = DayContext(
            con=con,
            plan=plan,
            day=day,
            files=files,
            output_root=output_root,
            run_days=run_days or [day],
            states=states,
        )
        timings: dict[str, float] = {}
        write_op = plan.ops("write_parts")[0]
        ops = [op for op in plan.skeleton_operators if op.kind != "write_parts"]
        # qid reads only the spine: numbered right after it, so that a day job that finds
        # another one numbering the run's sessions computes its other operators meanwhile.
        ops = (
            [o for o in ops if o.kind == "spine"]
            + [o for o in ops if o.kind == "qid"]
            + [o for o in ops if o.kind not in ("spine", "qid")]
        )
        deferred: set[str] = set()
        for op in ops:  # grows by the deferred qid
            t_op = time.perf_counter()
            if kept is not None and op.name in reused:
                con.register("__kept", kept.read(op))
                con.execute(f"CREATE TEMP TABLE {table(op.name)} AS SELECT * FROM __kept")
                con.unregister("__kept")
            elif op.kind == "qid":
                try:
                    qid_sql(ctx, op, wait=op.name in deferred)
                except Busy:
                    deferred.add(op.name)
                    ops.append(op)
                    continue
            else:
                IMPLEMENTATIONS[(op.kind, op.engine)](ctx, op)
                if kept is not None and kept.cached(op):
                    kept.save(op, con.table(table(op.name)).to_arrow_table())
            timings[op.name] = timings.get(op.name, 0.0) + time.perf_counter() - t_op
            if op.kind == "spine":
                # No row, no value: reading the look-back of the sources would change nothing.
                ctx.no_rows = con.execute(f"SELECT count(*) FROM {table(op.name)}").fetchall()[0][0] == 0
        stats = SkeletonStats(plan)
        rows, parts = write_parts(ctx, write_op, chunk_rows, on_part=stats.add)
        write_skeleton_stats(con, stats, day.isoformat(), output_root)
    finally:
        con.close()
    return DayResult(day, rows, parts, time.perf_counter() - t0, timings, computed)
