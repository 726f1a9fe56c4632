"""Label windows (contract section 9): aggregates of the events after a row, and waiting days.

For a spine row at `t` with group values `k`, a label window `w` aggregates the events `e` of
its source with `e.group = k` and `t < e.ts <= t + w`: strictly after the row (its own event,
and everything at the same instant, never counts), up to and including `t + w`. The functions
and their empty-window values are the registry's (daedalus.functions); `SUPPORTED` lists the
ones computed forward, any other is a compile error.

The SQL engine mirrors the backward windows of daedalus.skeleton.windows: the day's query
points (distinct group, ts of the spine) are stacked under the events and each window length
is one forward RANGE frame, `RANGE BETWEEN INTERVAL 1 microsecond FOLLOWING AND w FOLLOWING`
(timestamps are microseconds, so "1 microsecond following" is "strictly after"); query rows
carry NULL values and count for nothing. `first`/`last`/`last_k` go by rank in the group's
(ts, source order) order of the non-null values: with `lo` = the non-null events at or before
`t` (a running count up to the row's peers included) and `n` = those inside the window, the
window's values are the ranks `lo + 1 .. lo + n`.

A day-D job reads the label source's partitions D .. D + ceil(w / 1 day) (events up to
`t + w < D + 1 + w`). The day is complete only when the source can hold every such event
(`waiting`): a `dt=`-partitioned source has the partition of the day that contains the instant
`D + 1 + w`; any other source has an event at or after that instant. Until then the day is no
Snakemake target, `status` shows it `waiting`, and a day job asked for it fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import duckdb

from daedalus import functions
from daedalus.atomic import write_if_changed
from daedalus.errors import DaedalusError
from daedalus.plan import LabelWindowOp, LabelWindowParams, Plan, SourceSpec, WindowFeature
from daedalus.skeleton.context import DayContext, interval_sql, table, ts_literal
from daedalus.skeleton.windows import FRAME
from daedalus.sources import SourceFiles, read_parquet_sql, sql_ident, timestamp_sql
from daedalus.timeutil import DAY, duration_micros

# The functions the sql engine computes forward: window-frame aggregates, and by rank.
FRAME_FUNCTIONS = ("count", "count_distinct", "sum", "mean", "min", "max")
RANKED: dict[str, tuple[str, int | None]] = {"first": ("oldest", 1), "last": ("newest", 1), "last_k": ("newest", None)}
SUPPORTED: frozenset[str] = frozenset(FRAME_FUNCTIONS) | frozenset(RANKED)


def _events_sql(ctx: DayContext, op: LabelWindowOp) -> tuple[str, list[str], dict[str, str]]:
    """The events some window of some row of the day can hold (start < ts < end + longest w),
    with source order; the value columns they carry and their DuckDB types."""
    p: LabelWindowParams = op.params
    spec = ctx.plan.sources[p.source]
    max_w = max(duration_micros(f.window) for f in p.features)
    files = ctx.source_files(p.source, 0, op.lookahead_days())
    rel, empty = ctx.relation(p.source, files)
    ts = ctx.ts_expr(rel, spec.timestamp_field, spec.path)
    value_cols: list[str] = []
    for f in p.features:
        if f.column and f.column not in value_cols:
            value_cols.append(f.column)
    groups = [sql_ident(g) for g in p.group_by]
    vals = "".join(f", {ctx.value_expr(rel, c)} AS {sql_ident('v:' + c)}" for c in value_cols)
    conds = [f"__ts > {ts_literal(ctx.start)}", f"__ts < {ts_literal(ctx.end)} + {interval_sql(max_w)}"]
    conds += [f"{g} IS NOT NULL" for g in groups] + (["false"] if empty else [])
    sql = f"""
        SELECT * FROM (
            SELECT {", ".join(groups)}, {ts} AS __ts, filename AS __file, file_row_number AS __row{vals}
            FROM {rel}
        ) WHERE {" AND ".join(conds)}
    """
    types: dict[str, str] = {}
    if value_cols:
        desc = ctx.con.execute(f"DESCRIBE {sql}").fetchall()
        types = {r[0][2:]: r[1] for r in desc if r[0].startswith("v:")}
    return sql, value_cols, types


def label_window_sql(ctx: DayContext, op: LabelWindowOp) -> None:
    """The label windows of the day's rows as forward RANGE frames (module docstring)."""
    p: LabelWindowParams = op.params
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    not_null = " AND ".join(f"{g} IS NOT NULL" for g in groups)
    qp = table(op.name + ":queries")
    spine = table(ctx.plan.input_of(op, "spine").name)
    ctx.con.execute(f"CREATE TEMP TABLE {qp} AS SELECT DISTINCT {gl}, __ts FROM {spine} WHERE {not_null}")
    ev = table(op.name + ":events")
    ev_sql, value_cols, types = _events_sql(ctx, op)
    ctx.con.execute(f"CREATE TEMP TABLE {ev} AS {ev_sql}")
    temps = [qp, ev]
    vals = "".join(f", {sql_ident('v:' + c)}" for c in value_cols)
    vals_null = "".join(f", NULL AS {sql_ident('v:' + c)}" for c in value_cols)
    by_window: dict[int, list[tuple[int, WindowFeature]]] = {}
    for i, f in enumerate(p.features):
        by_window.setdefault(duration_micros(f.window), []).append((i, f))
    select: dict[str, str] = {}
    joins: list[str] = []
    on_q = lambda alias: " AND ".join(f"q.{g} = {alias}.{g}" for g in groups) + f" AND q.__ts = {alias}.__ts"  # noqa: E731
    for w, feats in sorted(by_window.items()):
        upper = f"{ts_literal(ctx.end)} + {interval_sql(w)}"
        win = table(f"{op.name}:w{w}")
        temps.append(win)
        exprs = []
        for i, f in feats:
            v = sql_ident("v:" + f.column) if f.column else "__ev"
            if f.function in RANKED:
                exprs.append(f"count({v}) OVER upto AS __lo{i}, count({v}) OVER w AS __n{i}")
            else:
                exprs.append(f"{FRAME[f.function](v, types.get(f.column or ''), 'OVER w')} AS {sql_ident(f.output)}")
        ctx.con.execute(f"""
            CREATE TEMP TABLE {win} AS
            SELECT * EXCLUDE (__q) FROM (
                SELECT {gl}, __ts, __q, {", ".join(exprs)}
                FROM (
                    SELECT {gl}, __ts, __file, __row, 1 AS __ev, false AS __q{vals} FROM {ev} WHERE __ts <= {upper}
                    UNION ALL
                    SELECT {gl}, __ts, NULL, NULL, NULL, true{vals_null} FROM {qp}
                )
                WINDOW w AS (PARTITION BY {gl} ORDER BY __ts RANGE BETWEEN {interval_sql(1)} FOLLOWING AND {interval_sql(w)} FOLLOWING),
                       upto AS (PARTITION BY {gl} ORDER BY __ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            ) WHERE __q
        """)
        alias = f"w{w}"
        joins.append(f"LEFT JOIN {win} {alias} ON {on_q(alias)}")
        for i, f in feats:
            if f.function not in RANKED:
                select[f.output] = f"{alias}.{sql_ident(f.output)}"
                continue
            v = sql_ident("v:" + (f.column or ""))
            rk = table(f"{op.name}:rank:{w}:{f.column}")
            if rk not in temps:
                temps.append(rk)
                ctx.con.execute(f"""
                    CREATE TEMP TABLE {rk} AS
                    SELECT {gl}, row_number() OVER (PARTITION BY {gl} ORDER BY __ts, __file, __row) AS __rank, {v} AS __v
                    FROM {ev} WHERE {v} IS NOT NULL AND __ts <= {upper}
                """)
            on_g = " AND ".join(f"m.{g} = r.{g}" for g in groups)
            end, one = RANKED[f.function]
            if one:
                rank = f"m.__lo{i} + 1" if end == "oldest" else f"m.__lo{i} + m.__n{i}"
                sub = f"""SELECT m.{", m.".join(groups)}, m.__ts, r.__v AS x FROM {win} m JOIN {rk} r
                          ON {on_g} AND r.__rank = {rank} WHERE m.__n{i} > 0"""
            else:
                take = int(f.k or 0)
                sub = f"""SELECT m.{", m.".join(groups)}, m.__ts, list(r.__v ORDER BY r.__rank DESC) AS x
                          FROM {win} m JOIN {rk} r
                          ON {on_g} AND r.__rank > m.__lo{i} + m.__n{i} - least(m.__n{i}, {take})
                             AND r.__rank <= m.__lo{i} + m.__n{i}
                          GROUP BY ALL"""
            la = f"l{i}"
            joins.append(f"LEFT JOIN ({sub}) {la} ON {on_q(la)}")
            select[f.output] = f"{la}.x" if one else f"coalesce({la}.x, {functions.get(f.function).empty_sql})"
    cols = ", ".join(f"{select[f.output]} AS {sql_ident(f.output)}" for f in p.features)
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT q.{", q.".join(groups)}, q.__ts, {cols} FROM {qp} q {" ".join(joins)}
    """)
    for t in temps:
        ctx.con.execute(f"DROP TABLE {t}")


# -- waiting days ------------------------------------------------------------------------------


def horizon(day: dt.date, window: str) -> dt.datetime:
    """The instant D + 1 + w up to which (exclusive) day D's label windows read events."""
    return dt.datetime.combine(day, dt.time()) + DAY + dt.timedelta(microseconds=duration_micros(window))


def longest_window(op: LabelWindowOp) -> str:
    return max((f.window for f in op.params.features), key=duration_micros)


HORIZON_CACHE = Path(".daedalus_tmp/label-horizon.json")


def latest_event(spec: SourceSpec, files: list[str]) -> dt.datetime | None:
    """The latest event time of an unpartitioned source (None: no event), remembered in
    `.daedalus_tmp/label-horizon.json` under the files' names, sizes and mtimes."""
    if not files:
        return None
    h = hashlib.sha256(spec.timestamp_field.encode())
    for f in files:
        st = os.stat(f)
        h.update(f"\n{os.path.abspath(f)}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    key = h.hexdigest()
    try:
        cache = json.loads(HORIZON_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return dt.datetime.fromisoformat(cache[key]) if cache[key] else None
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rel = read_parquet_sql(files)
        kind = con.execute(f"DESCRIBE SELECT {sql_ident(spec.timestamp_field)} FROM {rel}").fetchall()[0][1]
        ts = timestamp_sql(spec.timestamp_field, kind, spec.path)
        value = con.execute(f"SELECT max({ts}) FROM {rel}").fetchall()[0][0]
    except duckdb.Error as e:
        raise DaedalusError(spec.path, f"unreadable parquet data: {' '.join(str(e).split())}") from None
    finally:
        con.close()
    if len(cache) >= 256:
        cache = {}
    cache[key] = value.isoformat() if value is not None else None
    try:  # a cache only
        write_if_changed(HORIZON_CACHE, json.dumps(cache, sort_keys=True))
    except OSError:
        pass
    return value


def waiting(plan: Plan, scans: dict[str, SourceFiles], days: list[dt.date]) -> dict[dt.date, str]:
    """The days whose label horizon the data does not cover yet, each with what it waits for."""
    out: dict[dt.date, str] = {}
    for op in plan.ops("label_window"):
        sid = op.params.source
        spec = plan.sources[sid]
        sf = scans.get(sid) or SourceFiles.scan(spec.path)
        w = longest_window(op)
        what = f"label window {op.params.aggregation!r} ({w})"
        if sf.partitioned:
            have = set(sf.days)
            for d in days:
                need = horizon(d, w).date()
                if need not in have and d not in out:
                    out[d] = f"{what} needs partition dt={need.isoformat()} of {spec.path!r}"
            continue
        latest = latest_event(spec, list(sf.files))
        for d in days:
            h = horizon(d, w)
            if (latest is None or latest < h) and d not in out:
                out[d] = f"{what} needs an event at or after {h.isoformat(sep=' ')} in {spec.path!r}"
    return dict(sorted(out.items()))


def waiting_note(waits: dict[dt.date, str]) -> str | None:
    """One line for the user about the waiting days (None when none wait)."""
    if not waits:
        return None
    days = list(waits)
    span = days[0].isoformat() if len(days) == 1 else f"{days[0].isoformat()}..{days[-1].isoformat()}"
    first = waits[days[0]]
    return (
        f"{len(days)} day(s) waiting for label data ({span}; {days[0].isoformat()}: {first}): "
        "not written; a run after that data arrives writes them"
    )


def check_not_waiting(plan: Plan, day: dt.date, scans: dict[str, SourceFiles] | None = None) -> None:
    """A day job asked for a waiting day fails (the contract: such a day is not written)."""
    waits = waiting(plan, scans or {}, [day])
    if day in waits:
        raise DaedalusError(f"dt={day.isoformat()}", f"waiting: {waits[day]}; the day is written once it arrives")
