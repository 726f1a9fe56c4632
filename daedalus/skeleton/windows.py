"""Rolling window aggregations (contract section 4): events with t - w <= e.ts < t.

The SQL engine stacks the day's query points (distinct group, ts of the spine) under the
events and evaluates each window as a RANGE frame ending one microsecond before the row,
so events at the row's own timestamp are excluded; query rows carry NULL values and count
for nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from daedalus import functions
from daedalus.plan import WindowAggOp, WindowAggParams, WindowFeature
from daedalus.skeleton import state
from daedalus.skeleton.context import DayContext, interval_sql, table, ts_literal
from daedalus.skeleton.values import bucket_text, value_sql
from daedalus.sources import partition_day, sql_ident, sql_str
from daedalus.timeutil import DAY, duration_micros


def events_sql(
    ctx: DayContext, p: WindowAggParams, files: list[str] | None = None
) -> tuple[str, list[str], dict[str, str]]:
    """The events that can fall in a window of some row of the day, with source order (of
    `files`, default the day's look-back).

    Returns the SQL, the value columns it carries, and their DuckDB types.
    """
    spec = ctx.plan.sources[p.source]
    max_w = max(duration_micros(f.window) for f in p.features)
    if files is None:
        files = ctx.source_files(p.source, spec.lookback_days)
    rel, empty = ctx.relation(p.source, files)
    ts = ctx.ts_expr(rel, spec.timestamp_field, spec.path)
    value_cols: list[str] = []
    exprs: dict[str, str] = {}
    for f in p.features:
        key = f.value
        if key and key not in value_cols:
            value_cols.append(key)
            exprs[key] = value_sql(ctx, rel, f)
        bkey = f.bucket_key
        if bkey and f.bucket_by and bkey not in value_cols:
            value_cols.append(bkey)
            exprs[bkey] = bucket_text(ctx.value_expr(rel, f.bucket_by))
    groups = [sql_ident(g) for g in p.group_by]
    vals = [f"{exprs[c]} AS {sql_ident('v:' + c)}" for c in value_cols]
    conds = [f"__ts < {ts_literal(ctx.end)}", f"__ts >= {ts_literal(ctx.start)} - {interval_sql(max_w)}"]
    conds += [f"{g} IS NOT NULL" for g in groups]
    if empty:
        conds.append("false")
    sql = f"""
        SELECT * FROM (
            SELECT {", ".join(groups)}, {ts} AS __ts, filename AS __file, file_row_number AS __row
                   {"".join(", " + v for v in vals)}
            FROM {rel}
        ) WHERE {" AND ".join(conds)}
    """
    types = {}
    if value_cols:
        desc = ctx.con.execute(f"DESCRIBE {sql}").fetchall()
        types = {r[0][2:]: r[1] for r in desc if r[0].startswith("v:")}
    return sql, value_cols, types


def _is_float(ctype: str | None) -> bool:
    return ctype is not None and (ctype.upper() in ("FLOAT", "DOUBLE") or ctype.upper().startswith("DECIMAL"))


# The SQL engine's window functions over a RANGE frame `over`: value SQL and DuckDB type in, SQL out.
FRAME: dict[str, Callable[[str, str | None, str], str]] = {
    "count": lambda v, t, over: f"count({v}) {over}",
    "count_distinct": lambda v, t, over: f"count(DISTINCT {v}) {over}",
    "sum": lambda v, t, over: (
        f"coalesce(sum(CAST({v} AS DOUBLE)) {over}, 0)"
        if _is_float(t)
        else f"CAST(coalesce(sum(CAST({v} AS BIGINT)) {over}, 0) AS BIGINT)"
    ),
    "mean": lambda v, t, over: f"avg(CAST({v} AS DOUBLE)) {over}",
    "min": lambda v, t, over: f"min({v}) {over}",
    "max": lambda v, t, over: f"max({v}) {over}",
}
# Functions the SQL engine computes by rank in the group's (ts, source order) order of the
# window's non-null values: the end of the window they take from, and how many values (None:
# the feature's `k`); one value is a scalar, `k` values a list, most recent first.
RANKED: dict[str, tuple[str, int | None]] = {
    "last": ("newest", 1),
    "first": ("oldest", 1),
    "last_k": ("newest", None),
}


# Functions the SQL engine computes per row from the window's events (a range join of the
# row's query point with its group's events in [t - w, t)): an aggregate over the joined
# events (`v` the value, `__ets`/`__file`/`__row` the event's time and source order,
# `__qts` the row's t) and an expression of its result `a`; `mu` is the mean of the
# aggregated values where a function asks for it (`MOMENTS`). Float accumulations run over
# lists in (ts, source order), so a result does not depend on how DuckDB split the work.
def _ordered(v: str, desc: bool = False, extra: str = "") -> str:
    d = " DESC" if desc else ""
    return f"list({v} ORDER BY __ets{d}, __file{d}, __row{d}) FILTER (WHERE {v} IS NOT NULL{extra})"


def _doubles(v: str) -> str:
    return _ordered(f"CAST({v} AS DOUBLE)")


def _moment(a: str, mu: str, p: int) -> str:
    return f"list_avg(list_transform({a}, lambda x: power(x - {mu}, {p})))"


def _hist(a: str, f: WindowFeature) -> str:
    entries = f"list_transform(map_entries({a}), lambda e: {{'c': -CAST(e.value AS BIGINT), 'k': e.key}})"
    if f.top_n is not None:
        entries = f"list_sort({entries})[1:{int(f.top_n)}]"
    pairs = f"list_sort(list_transform({entries}, lambda e: {{'key': e.k, 'value': -e.c}}))"
    return f"CASE WHEN {a} IS NULL THEN NULL ELSE map_from_entries({pairs}) END"


def _half_life_us(f: WindowFeature) -> float:
    return float(duration_micros(f.half_life or ""))


JoinedAgg = tuple[Callable[[str, WindowFeature], str], Callable[[str, str, WindowFeature], str]]
JOINED: dict[str, JoinedAgg] = {
    "first_k": (lambda v, f: _ordered(v), lambda a, mu, f: f"{a}[1:{int(f.k or 0)}]"),
    "last_distinct_k": (
        lambda v, f: _ordered(v, desc=True, extra=f" AND {sql_ident('nv:' + (f.value or ''))}"),
        lambda a, mu, f: f"{a}[1:{int(f.k or 0)}]",
    ),
    "top_k": (
        lambda v, f: f"list({v} ORDER BY {v} DESC) FILTER (WHERE {v} IS NOT NULL)",
        lambda a, mu, f: f"{a}[1:{int(f.k or 0)}]",
    ),
    "bottom_k": (
        lambda v, f: f"list({v} ORDER BY {v} ASC) FILTER (WHERE {v} IS NOT NULL)",
        lambda a, mu, f: f"{a}[1:{int(f.k or 0)}]",
    ),
    "variance": (lambda v, f: _doubles(v), lambda a, mu, f: _moment(a, mu, 2)),
    "stddev": (lambda v, f: _doubles(v), lambda a, mu, f: f"sqrt({_moment(a, mu, 2)})"),
    "skew": (
        lambda v, f: _doubles(v),
        lambda a, mu, f: (
            f"CASE WHEN list_min({a}) < list_max({a}) THEN {_moment(a, mu, 3)} / power({_moment(a, mu, 2)}, 1.5) END"
        ),
    ),
    "kurtosis": (
        lambda v, f: _doubles(v),
        lambda a, mu, f: (
            f"CASE WHEN list_min({a}) < list_max({a}) THEN {_moment(a, mu, 4)} / power({_moment(a, mu, 2)}, 2) - 3 END"
        ),
    ),
    "approx_count_distinct": (lambda v, f: f"approx_count_distinct({v})", lambda a, mu, f: a),
    "approx_percentile": (
        lambda v, f: f"list({v} ORDER BY {v}) FILTER (WHERE {v} IS NOT NULL)",
        lambda a, mu, f: (
            f"{a}[greatest(1, CAST(ceil(CAST({float(f.q or 0)!r} AS DOUBLE) * CAST(len({a}) AS DOUBLE)) AS BIGINT))]"
        ),
    ),
    "histogram": (
        lambda v, f: f"histogram(CAST({v} AS VARCHAR)) FILTER (WHERE {v} IS NOT NULL)",
        lambda a, mu, f: _hist(a, f),
    ),
    "time_since_last": (
        lambda v, f: f"max(__ets) FILTER (WHERE {v} IS NOT NULL)",
        lambda a, mu, f: f"CAST(epoch_us(__qts) - epoch_us({a}) AS DOUBLE) / 1000000.0",
    ),
    "exp_decay_sum": (
        lambda v, f: _ordered(
            f"CAST({v} AS DOUBLE) * pow(0.5, CAST(epoch_us(__qts) - epoch_us(__ets) AS DOUBLE) / {_half_life_us(f)!r})"
        ),
        lambda a, mu, f: f"list_sum({a})",
    ),
}
MOMENTS = ("variance", "stddev", "skew", "kurtosis")
SUPPORTED = set(FRAME) | set(RANKED) | set(JOINED)


def _bucket_sum(v: str, f: WindowFeature, t: str | None) -> str:
    if _is_float(t):
        return f"list_sum({_doubles(v)})"
    return f"CAST(sum(CAST({v} AS BIGINT)) AS BIGINT)"


# The aggregate over one bucket's events (of a query point's window) and its post expression,
# for the functions with a scalar value: a bucket map (`bucket_by` without `buckets`) holds one
# per bucket. `t` is the value's DuckDB type.
BucketAgg = tuple[Callable[[str, WindowFeature, str | None], str], Callable[[str, str, WindowFeature], str]]
BUCKETED: dict[str, BucketAgg] = {
    "count": (lambda v, f, t: f"count({v})", lambda a, mu, f: a),
    "count_distinct": (lambda v, f, t: f"count(DISTINCT {v})", lambda a, mu, f: a),
    "sum": (_bucket_sum, lambda a, mu, f: a),
    "mean": (lambda v, f, t: f"list_avg({_doubles(v)})", lambda a, mu, f: a),
    "min": (lambda v, f, t: f"min({v})", lambda a, mu, f: a),
    "max": (lambda v, f, t: f"max({v})", lambda a, mu, f: a),
    "first": (lambda v, f, t: _ordered(v), lambda a, mu, f: f"{a}[1]"),
    "last": (lambda v, f, t: _ordered(v, desc=True), lambda a, mu, f: f"{a}[1]"),
    **{
        name: ((lambda agg: lambda v, f, t: agg(v, f))(JOINED[name][0]), JOINED[name][1])
        for name in (*MOMENTS, "approx_count_distinct", "approx_percentile", "time_since_last", "exp_decay_sum")
    },
}
BUCKET_MAP_SUPPORTED = set(BUCKETED)


def _bucketed_windows(
    ctx: DayContext,
    p: WindowAggParams,
    feats: list[tuple[int, WindowFeature]],
    w: int,
    qp: str,
    ev: str,
    name: str,
    types: dict[str, str],
) -> None:
    """Bucket maps of one window length and bucket column: each query point joined with its
    group's events in [t - w, t), aggregated per (query point, bucket), then one map per
    query point of the buckets that have a value (keys in text order)."""
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    bkey = feats[0][1].bucket_key or ""
    keys = sorted({f.value or "" for _, f in feats})
    vals = "".join(f", e.{sql_ident('v:' + k)}" for k in keys)
    on = " AND ".join(f"q.{g} = e.{g}" for g in groups)
    aggs = ", ".join(
        f"{BUCKETED[f.function][0](sql_ident('v:' + (f.value or '')), f, types.get(f.value or ''))} AS __a{i}, "
        f"count({sql_ident('v:' + (f.value or ''))}) AS __n{i}"
        for i, f in feats
    )
    mus = "".join(f", list_avg(__a{i}) AS __mu{i}" for i, f in feats if f.function in MOMENTS)
    posts = ", ".join(f"{BUCKETED[f.function][1](f'__a{i}', f'__mu{i}', f)} AS __p{i}, __n{i}" for i, f in feats)
    maps = ", ".join(
        f"map_from_entries(coalesce(list({{'key': __b, 'value': __p{i}}} ORDER BY __b) "
        f"FILTER (WHERE __n{i} > 0), [])) AS {sql_ident(f.output)}"
        for i, f in feats
    )
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(name)} AS
        SELECT {gl}, __qts AS __ts, {maps} FROM (
            SELECT {gl}, __qts, __b, {posts} FROM (
                SELECT *{mus} FROM (
                    SELECT {gl}, __qts, __b, {aggs} FROM (
                        SELECT q.{", q.".join(groups)}, q.__ts AS __qts, e.__ts AS __ets, e.__file, e.__row,
                               e.{sql_ident("v:" + bkey)} AS __b{vals}
                        FROM {qp} q LEFT JOIN {ev} e
                          ON {on} AND e.__ts >= q.__ts - {interval_sql(w)} AND e.__ts < q.__ts
                             AND e.{sql_ident("v:" + bkey)} IS NOT NULL
                    ) GROUP BY {gl}, __qts, __b
                )
            )
        ) GROUP BY {gl}, __qts
    """)


def _joined_windows(
    ctx: DayContext, p: WindowAggParams, feats: list[tuple[int, WindowFeature]], w: int, qp: str, ev: str, name: str
) -> None:
    """The `JOINED` features of one window length: each query point joined with its group's
    events in [t - w, t), aggregated per query point."""
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    keys = sorted({f.value or "" for _, f in feats})
    vals = "".join(f", e.{sql_ident('v:' + k)}" if k else ', 1 AS "v:"' for k in keys)
    # The newest event of each distinct value (last_distinct_k), per query point.
    flags = "".join(
        f", row_number() OVER (PARTITION BY {gl}, __qts, {sql_ident('v:' + k)} "
        f"ORDER BY __ets DESC, __file DESC, __row DESC) = 1 AS {sql_ident('nv:' + k)}"
        for k in sorted({f.value or "" for _, f in feats if f.function == "last_distinct_k"})
    )
    on = " AND ".join(f"q.{g} = e.{g}" for g in groups)
    aggs = ", ".join(f"{JOINED[f.function][0](sql_ident('v:' + (f.value or '')), f)} AS __a{i}" for i, f in feats)
    mus = "".join(f", list_avg(__a{i}) AS __mu{i}" for i, f in feats if f.function in MOMENTS)
    posts = ", ".join(f"{JOINED[f.function][1](f'__a{i}', f'__mu{i}', f)} AS {sql_ident(f.output)}" for i, f in feats)
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(name)} AS
        SELECT {gl}, __qts AS __ts, {posts} FROM (
            SELECT *{mus} FROM (
                SELECT {gl}, __qts, {aggs} FROM (
                    SELECT *{flags} FROM (
                        SELECT q.{", q.".join(groups)}, q.__ts AS __qts, e.__ts AS __ets, e.__file, e.__row{vals}
                        FROM {qp} q JOIN {ev} e
                          ON {on} AND e.__ts >= q.__ts - {interval_sql(w)} AND e.__ts < q.__ts
                    )
                ) GROUP BY {gl}, __qts
            )
        )
    """)


def _agg_expr(f: WindowFeature, ctype: str | None, w: str) -> str:
    v = sql_ident("v:" + f.value) if f.value else "__ev"
    return FRAME[f.function](v, ctype, f"OVER {w}")


def _row_join(table_sql: str, alias: str, groups: list[str], *, by_ts: bool = True) -> str:
    """The join of a per-query-row table (one row per group and query timestamp, or per
    group with by_ts=False) onto the query rows `q`."""
    on = [f"q.{g} = {alias}.{g}" for g in groups] + ([f"q.__ts = {alias}.__ts"] if by_ts else [])
    return f"LEFT JOIN {table_sql} {alias} ON {' AND '.join(on)}"


def _mergeable(ctx: DayContext, p: WindowAggParams, f: WindowFeature) -> bool:
    """Whether the feature's value over a window is exactly that over merged partial aggregates."""
    return state.mergeable(ctx.plan, p, f)


def _collapsed_runs(ctx: DayContext, windows: list[int]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Runs of whole days that every window of every row of the day sees entirely or not at all.

    A window w of a row at t in day D starts at t - w, somewhere in the (at most two) calendar
    days of [D - w, D + 1 - w); those days and D are the only ones a window cuts. Any other day
    of the look-back lies wholly inside [t - w, t) for every row, or wholly before it, so its
    events per group can be merged into one event at the start of their run of such days.
    """
    cut = {ctx.day}
    first = ctx.day
    for w in windows:
        lo = (ctx.start - dt.timedelta(microseconds=w)).date()
        hi = (ctx.end - dt.timedelta(microseconds=w + 1)).date()
        cut |= {lo, hi}
        first = min(first, lo)
    runs, d = [], first
    while d < ctx.day:
        if d in cut:
            d += DAY
            continue
        a = d
        while d < ctx.day and d not in cut:
            d += DAY
        runs.append((dt.datetime.combine(a, dt.time()), dt.datetime.combine(d, dt.time())))
    return runs


def _merged_windows(
    ctx: DayContext, p: WindowAggParams, feats: list[WindowFeature], queries: str, name: str, op_name: str
) -> None:
    """count/sum/mean/min/max over partial aggregates: windows of whole days from the state
    files' running aggregates (`_asof_windows`), the others by RANGE frames."""
    states = ctx.states.get(op_name, {})
    asof: list[WindowFeature] = []
    if states and not ctx.no_rows and not any(state.outside_rows(f) for f in states.values()):
        asof = [f for f in feats if duration_micros(f.window) % DAY_MICROS == 0]
    frame = [f for f in feats if f not in asof]
    if not frame:
        _asof_windows(ctx, p, asof, queries, name, states)
        return
    if not asof:
        _frame_windows(ctx, p, frame, queries, name, op_name)
        return
    a, b = table(name + ":asof"), table(name + ":frame")
    _asof_windows(ctx, p, asof, queries, name + ":asof", states)
    _frame_windows(ctx, p, frame, queries, name + ":frame", op_name)
    on = " AND ".join(f"a.{sql_ident(g)} = b.{sql_ident(g)}" for g in p.group_by) + " AND a.__ts = b.__ts"
    cols = ", ".join(f"{'a' if f in asof else 'b'}.{sql_ident(f.output)}" for f in feats)
    gl = ", ".join(f"a.{sql_ident(g)}" for g in p.group_by)
    ctx.con.execute(f"CREATE TEMP TABLE {table(name)} AS SELECT {gl}, a.__ts, {cols} FROM {a} a JOIN {b} b ON {on}")
    ctx.con.execute(f"DROP TABLE {a}")
    ctx.con.execute(f"DROP TABLE {b}")


DAY_MICROS = 86_400_000_000


def _asof_windows(
    ctx: DayContext,
    p: WindowAggParams,
    feats: list[WindowFeature],
    queries: str,
    name: str,
    states: dict[dt.date, Path],
) -> None:
    """Windows of whole days w for a row at t of day D: the rows of day D before t, the rows
    of day lo = D - w at or after t - w, and every day strictly between, whole.

    The state file of each day holds, per (group, ts), the day's running aggregate up to and
    including ts (`pre:`) and from ts on (`suf:`), and one row per group for the whole day:
    an ASOF join (greatest ts < t) gives the first part, another (least ts >= t - w) the
    second, a hash aggregate of the day rows the third. Exact for count, sum and mean of
    exact types, min and max, like the frames they replace.
    """
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    parts = state.partial_columns(ctx.plan, p)
    need = sorted(_parts_of(f, parts) for f in feats)
    needed = sorted({k for ks in need for k in ks})
    temps: list[str] = []

    def read(day: dt.date, cond: str, cols: list[str]) -> str | None:
        path = states.get(day)
        if path is None:
            return None
        sel = ", ".join([gl, "__ts", *(sql_ident(c) for c in cols)])
        return f"SELECT {sel} FROM read_parquet({sql_str(path.as_posix())}) WHERE {cond}"

    on_g = " AND ".join(f"q.{g} = f.{g}" for g in groups)
    # Each ASOF join adds its columns to the query rows it is given (one row per query
    # point in and out), so no join back on (group, ts) is needed.
    cur = queries
    n_asof = 0

    def asof(sql: str, cols: list[tuple[str, str]], cond: str) -> None:
        nonlocal cur, n_asof
        t = table(f"{name}:asof{n_asof}")
        n_asof += 1
        sel = ", ".join(f"f.{sql_ident(c)} AS {sql_ident(alias)}" for c, alias in cols)
        ctx.con.execute(
            f"CREATE TEMP TABLE {t} AS SELECT q.*, {sel} FROM {cur} q ASOF LEFT JOIN ({sql}) f ON {on_g} AND {cond}"
        )
        if cur != queries:
            ctx.con.execute(f"DROP TABLE {cur}")
        cur = t

    # Rows of day D strictly before t: the running aggregate of the greatest ts < t.
    pre = read(ctx.day, "NOT __whole", [f"pre:{k}" for k in needed])
    joins: list[str] = []
    base: list[str] = []
    own = states.get(ctx.day)
    sums = [k for k in needed if state.part_merge(k) == "sum"]
    if own is not None and sums and p.source == ctx.plan.spine.params.source:
        # Over the spine's own source, day D's fine rows are the query points themselves
        # (the (group, ts) of the same partition's rows of day D), so a sum before t is
        # the running sum at t less t's own; sums read as 0 where NULL (`total` below).
        cur = table(f"{name}:asof{n_asof}")
        n_asof += 1
        cols = ", ".join(
            f"coalesce({sql_ident('pre:' + k)}, 0) - coalesce({sql_ident(k)}, 0) AS {sql_ident('pre:' + k)}"
            for k in sums
        )
        ctx.con.execute(
            f"CREATE TEMP TABLE {cur} AS SELECT {gl}, __ts, {cols} "
            f"FROM read_parquet({sql_str(own.as_posix())}) WHERE NOT __whole"
        )
        rest = [k for k in needed if k not in sums]
        pre = read(ctx.day, "NOT __whole", [f"pre:{k}" for k in rest]) if rest else None
    else:
        rest = needed
    if pre is not None:
        # The others (min, max): the running aggregate of the greatest ts < t.
        asof(pre, [(f"pre:{k}", f"pre:{k}") for k in rest], "q.__ts > f.__ts")
    if cur != queries:
        base = [f"q.{sql_ident('pre:' + k)}" for k in needed]
    windows = sorted({duration_micros(f.window) for f in feats})
    terms: dict[int, dict[str, list[str]]] = {}
    for w in windows:
        days = w // DAY_MICROS
        lo = ctx.day - dt.timedelta(days=days)
        terms[w] = {k: [base[i]] if base else [] for i, k in enumerate(needed)}
        suf = read(lo, "NOT __whole", [f"suf:{k}" for k in needed])
        if suf is not None:
            asof(suf, [(f"suf:{k}", f"suf{w}:{k}") for k in needed], f"f.__ts >= q.__ts - {interval_sql(w)}")
            for k in needed:
                terms[w][k].append(f"q.{sql_ident(f'suf{w}:{k}')}")
        whole = [s for s in (read(lo + dt.timedelta(days=i), "__whole", needed) for i in range(1, days)) if s]
        if whole:
            t = table(f"{name}:whole{w}")
            alias = f"c{w}"
            temps.append(t)
            aggs = ", ".join(f"{state.part_merge(k)}({sql_ident(k)}) AS {sql_ident(k)}" for k in needed)
            ctx.con.execute(
                f"CREATE TEMP TABLE {t} AS SELECT {gl}, {aggs} FROM ({' UNION ALL '.join(whole)}) GROUP BY {gl}"
            )
            joins.append(_row_join(t, alias, groups, by_ts=False))
            for k in needed:
                terms[w][k].append(f"{alias}.{sql_ident(k)}")
    if cur != queries:
        temps.append(cur)

    def total(w: int, k: str) -> str:
        xs = terms[w][k]
        if not xs:
            return "NULL"
        if state.part_merge(k) == "sum":
            return "(" + " + ".join(f"coalesce({x}, 0)" for x in xs) + ")"
        return f"{'least' if state.part_merge(k) == 'min' else 'greatest'}({', '.join(xs)})" if len(xs) > 1 else xs[0]

    exprs = []
    for f in feats:
        w, c = duration_micros(f.window), f.value or ""
        merge = functions.get(f.function).merge
        if merge == "count":
            e = f"CAST({total(w, 'n:' + c if f.value else '__n')} AS BIGINT)"
        elif merge == "sum":
            e = f"CAST({total(w, 's:' + c)} AS BIGINT)"
        elif merge == "mean":
            e = f"CAST({total(w, 's:' + c)} AS DOUBLE) / nullif(CAST({total(w, 'n:' + c)} AS DOUBLE), 0)"
        else:
            e = total(w, f"{merge}:{c}")
        exprs.append(f"{e} AS {sql_ident(f.output)}")
    ctx.con.execute(
        f"CREATE TEMP TABLE {table(name)} AS SELECT q.{', q.'.join(groups)}, q.__ts, {', '.join(exprs)} "
        f"FROM {cur} q {' '.join(joins)}"
    )
    for t in temps:
        ctx.con.execute(f"DROP TABLE {t}")


def _parts_of(f: WindowFeature, parts: dict[str, str]) -> tuple[str, ...]:
    """The partial columns a mergeable feature reads."""
    merge = functions.get(f.function).merge
    c = f.value or ""
    if merge == "count":
        return ("n:" + c,) if f.value else ("__n",)
    if merge == "sum":
        return ("s:" + c,)
    if merge == "mean":
        return ("s:" + c, "n:" + c)
    return (f"{merge}:{c}",)


def _frame_windows(
    ctx: DayContext, p: WindowAggParams, feats: list[WindowFeature], queries: str, name: str, op_name: str
) -> None:
    """count/sum/mean/min/max in one pass over per-(group, ts) partial aggregates.

    Events at the same (group, ts) enter and leave every window together, and whole days no
    window cuts merge into one partial per group, so the frames run over far fewer rows than
    the raw look-back (about two days of distinct (group, ts) pairs plus one row per group).
    """
    spec = ctx.plan.sources[p.source]
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    windows = sorted({duration_micros(f.window) for f in feats})
    files = ctx.source_files(p.source, spec.lookback_days)
    runs = _collapsed_runs(ctx, windows)
    parts = state.partial_columns(ctx.plan, p)
    values = sorted(state.partial_values(ctx.plan, p).items())
    aggs = ", ".join(f"{e} AS {sql_ident(k)}" for k, e in parts.items())

    def partials(subset: list[str], conds: list[str], ts_out: str, by: str) -> str:
        rel, empty = ctx.relation(p.source, subset)
        ts = ctx.ts_expr(rel, spec.timestamp_field, spec.path)
        vals = "".join(f", {value_sql(ctx, rel, f)} AS {sql_ident('v:' + k)}" for k, f in values)
        conds = conds + [f"{g} IS NOT NULL" for g in groups] + (["false"] if empty else [])
        return f"""SELECT {gl}, {ts_out} AS __ts, {aggs} FROM (SELECT {gl}, {ts} AS __ts{vals} FROM {rel})
                   WHERE {" AND ".join(conds)} GROUP BY {by}"""

    def in_span(d: dt.date | None, a: dt.datetime, b: dt.datetime) -> bool:
        return d is None or a.date() <= d < b.date()

    # Raw (group, ts) partials for the days windows cut; one partial per group and run otherwise.
    # Each select reads only its days' partitions (a dt=D partition holds only day D's rows).
    lower = f"__ts >= {ts_literal(ctx.start)} - {interval_sql(windows[-1])}"
    outside = [f"NOT (__ts >= {ts_literal(a)} AND __ts < {ts_literal(b)})" for a, b in runs]
    cut_conds = [f"__ts < {ts_literal(ctx.end)}", lower] + outside
    states = ctx.states.get(op_name, {})
    if states and not ctx.no_rows:
        # The per-partition state files (daedalus.skeleton.state) hold both forms already.
        selects = []
        for d, path in sorted(states.items()):
            whole = any(in_span(d, a, b) for a, b in runs)
            cond = "__whole" if whole else " AND ".join(["NOT __whole", *cut_conds])
            selects.append(f"SELECT * EXCLUDE (__whole) FROM read_parquet({sql_str(path.as_posix())}) WHERE {cond}")
    else:
        raw_files = [
            f for f in files if partition_day(f) is None or not any(in_span(partition_day(f), a, b) for a, b in runs)
        ]
        selects = [partials(raw_files, cut_conds, "__ts", f"{gl}, __ts")]
        for a, b in runs:
            selects.append(
                partials(
                    [f for f in files if in_span(partition_day(f), a, b)],
                    [f"__ts >= {ts_literal(a)}", f"__ts < {ts_literal(b)}", lower],
                    ts_literal(a),
                    gl,
                )
            )
    agg = table(name + ":partials")
    ctx.con.execute(f"CREATE TEMP TABLE {agg} AS {' UNION ALL '.join(selects)}")
    exprs = []
    for f in feats:
        w = f"w{duration_micros(f.window)}"
        c = f.value or ""
        merge = functions.get(f.function).merge
        if merge == "count":
            e = f"CAST(coalesce(sum({sql_ident('n:' + c) if f.value else '__n'}) OVER {w}, 0) AS BIGINT)"
        elif merge == "sum":
            e = f"CAST(coalesce(sum({sql_ident('s:' + c)}) OVER {w}, 0) AS BIGINT)"
        elif merge == "mean":
            e = (
                f"CAST(sum({sql_ident('s:' + c)}) OVER {w} AS DOUBLE) / "
                f"nullif(CAST(sum({sql_ident('n:' + c)}) OVER {w} AS DOUBLE), 0)"
            )
        else:
            e = f"{merge}({sql_ident(f'{merge}:{c}')}) OVER {w}"
        exprs.append(f"{e} AS {sql_ident(f.output)}")
    nulls = "".join(f", NULL AS {sql_ident(k)}" for k in parts)
    frames = ", ".join(
        f"w{w} AS (PARTITION BY {gl} ORDER BY __ts RANGE BETWEEN {interval_sql(w)} PRECEDING "
        f"AND {interval_sql(1)} PRECEDING)"
        for w in windows
    )
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(name)} AS
        SELECT * EXCLUDE (__q) FROM (
            SELECT {gl}, __ts, __q, {", ".join(exprs)}
            FROM (SELECT *, false AS __q FROM {agg} UNION ALL BY NAME SELECT {gl}, __ts, true AS __q{nulls} FROM {queries})
            WINDOW {frames}
        ) WHERE __q
    """)
    ctx.con.execute(f"DROP TABLE {agg}")


def _events(ctx: DayContext, op: WindowAggOp) -> tuple[str, list[str], dict[str, str]]:
    """events_sql, or the same rows the raw-path features can need: the events state after
    the day before (daedalus.skeleton.state, the `REDUCED` functions) and the day's own
    partition."""
    p: WindowAggParams = op.params
    before = ctx.states.get(op.name + state.EVENTS, {}).get(ctx.day - DAY)
    if before is None or ctx.no_rows:
        return events_sql(ctx, p)
    own, value_cols, types = events_sql(ctx, p, ctx.source_files(p.source, 0))
    max_w = max(duration_micros(f.window) for f in p.features)
    bounds = f"__ts < {ts_literal(ctx.end)} AND __ts >= {ts_literal(ctx.start)} - {interval_sql(max_w)}"
    kept = f"SELECT * FROM read_parquet({sql_str(before.as_posix())}) WHERE {bounds}"
    return f"({own}) UNION ALL BY NAME ({kept})", value_cols, types


def window_agg_sql(ctx: DayContext, op: WindowAggOp) -> None:
    """Windows as RANGE frames: mergeable functions over partials, the others over raw events.

    The raw path runs one window length at a time over only the events it can see.
    `last`/`last_k` go by rank, since ordered list aggregates over long frames cost a sort
    per row: for column c, `hi` = non-null c events with ts < t (a running count) and `n` =
    those inside the window; the answer is the events of rank hi, hi-1, ... (at most
    min(n, k)) in the group's (ts, source order) ranking of the non-null c events.
    """
    p: WindowAggParams = op.params
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    not_null = " AND ".join(f"{g} IS NOT NULL" for g in groups)
    qp = table(op.name + ":queries")
    spine = table(ctx.plan.input_of(op, "spine").name)
    ctx.con.execute(f"CREATE TEMP TABLE {qp} AS SELECT DISTINCT {gl}, __ts FROM {spine} WHERE {not_null}")
    temps = [qp]
    select: dict[str, str] = {}
    joins: list[str] = []
    merged = [f for f in p.features if _mergeable(ctx, p, f)]
    if merged:
        mt = table(op.name + ":merged")
        temps.append(mt)
        _merged_windows(ctx, p, merged, qp, op.name + ":merged", op.name)
        joins.append(_row_join(mt, "m", groups))
        select.update({f.output: f"m.{sql_ident(f.output)}" for f in merged})
    by_window: dict[int, list[tuple[int, WindowFeature]]] = {}
    joined: dict[int, list[tuple[int, WindowFeature]]] = {}
    bucketed: dict[tuple[int, str], list[tuple[int, WindowFeature]]] = {}
    for i, f in enumerate(p.features):
        if f.output in select:
            continue
        if f.bucket_map:
            bucketed.setdefault((duration_micros(f.window), f.bucket_key or ""), []).append((i, f))
            continue
        (joined if f.function in JOINED else by_window).setdefault(duration_micros(f.window), []).append((i, f))
    ev = table(op.name + ":events")
    value_cols: list[str] = []
    types: dict[str, str] = {}
    if by_window or joined or bucketed:
        # Only the features partials cannot give read events: the day's own partition and
        # the kept events of the days before it when there is that state, else the raw
        # look-back.
        ev_sql, value_cols, types = _events(ctx, op)
        ctx.con.execute(f"CREATE TEMP TABLE {ev} AS {ev_sql}")
        temps.append(ev)
    vals_null = "".join(f", NULL AS {sql_ident('v:' + c)}" for c in value_cols)
    vals = "".join(f", {sql_ident('v:' + c)}" for c in value_cols)
    for w, feats in sorted(by_window.items()):
        lower = f"{ts_literal(ctx.start)} - {interval_sql(w)}"
        win = table(f"{op.name}:w{w}")
        temps.append(win)
        exprs = []
        for i, f in feats:
            if f.function in RANKED:
                v = sql_ident("v:" + (f.value or ""))
                exprs.append(f"count({v}) OVER wall AS __hi{i}, count({v}) OVER w AS __n{i}")
            else:
                exprs.append(f"{_agg_expr(f, types.get(f.value or ''), 'w')} AS {sql_ident(f.output)}")
        ctx.con.execute(f"""
            CREATE TEMP TABLE {win} AS
            SELECT * EXCLUDE (__q) FROM (
                SELECT {gl}, __ts, __q, {", ".join(exprs)}
                FROM (
                    SELECT {gl}, __ts, __file, __row, 1 AS __ev, false AS __q{vals} FROM {ev} WHERE __ts >= {lower}
                    UNION ALL
                    SELECT {gl}, __ts, NULL, NULL, NULL, true{vals_null} FROM {qp}
                )
                WINDOW w AS (PARTITION BY {gl} ORDER BY __ts RANGE BETWEEN {interval_sql(w)} PRECEDING AND {interval_sql(1)} PRECEDING),
                       wall AS (PARTITION BY {gl} ORDER BY __ts RANGE BETWEEN UNBOUNDED PRECEDING AND {interval_sql(1)} PRECEDING)
            ) WHERE __q
        """)
        alias = f"w{w}"
        joins.append(_row_join(win, alias, groups))
        for i, f in feats:
            if f.function not in RANKED:
                select[f.output] = f"{alias}.{sql_ident(f.output)}"
                continue
            v = sql_ident("v:" + (f.value or ""))
            rk = table(f"{op.name}:rank:{w}:{f.value}")
            if rk not in temps:
                temps.append(rk)
                ctx.con.execute(f"""
                    CREATE TEMP TABLE {rk} AS
                    SELECT {gl}, row_number() OVER (PARTITION BY {gl} ORDER BY __ts, __file, __row) AS __rank, {v} AS __v
                    FROM {ev} WHERE {v} IS NOT NULL AND __ts >= {lower}
                """)
            on_g = " AND ".join(f"m.{g} = r.{g}" for g in groups)
            end, one = RANKED[f.function]
            take = one or int(f.k or 0)
            if one:
                rank = f"m.__hi{i}" if end == "newest" else f"m.__hi{i} - m.__n{i} + 1"
                sub = f"""SELECT m.{", m.".join(groups)}, m.__ts, r.__v AS x FROM {win} m JOIN {rk} r
                          ON {on_g} AND r.__rank = {rank} WHERE m.__n{i} > 0"""
            else:
                sub = f"""SELECT m.{", m.".join(groups)}, m.__ts, list(r.__v ORDER BY r.__rank DESC) AS x FROM {win} m JOIN {rk} r
                          ON {on_g} AND r.__rank > m.__hi{i} - least(m.__n{i}, {take}) AND r.__rank <= m.__hi{i}
                          GROUP BY ALL"""
            la = f"l{i}"
            joins.append(_row_join(f"({sub})", la, groups))
            select[f.output] = f"{la}.x" if one else f"coalesce({la}.x, {functions.get(f.function).empty_sql})"
    for w, feats in sorted(joined.items()):
        jt = table(f"{op.name}:j{w}")
        temps.append(jt)
        _joined_windows(ctx, p, feats, w, qp, ev, f"{op.name}:j{w}")
        alias = f"j{w}"
        joins.append(_row_join(jt, alias, groups))
        for _, f in feats:
            empty = f.empty_sql
            col = f"{alias}.{sql_ident(f.output)}"
            select[f.output] = f"coalesce({col}, {empty})" if empty is not None else col
    for n, ((w, _), feats) in enumerate(sorted(bucketed.items())):
        bt = table(f"{op.name}:b{n}")
        temps.append(bt)
        _bucketed_windows(ctx, p, feats, w, qp, ev, f"{op.name}:b{n}", types)
        alias = f"b{n}"
        joins.append(_row_join(bt, alias, groups))
        for _, f in feats:
            select[f.output] = f"{alias}.{sql_ident(f.output)}"
    if len(merged) == len(p.features):
        # The merged table has the query points' rows and the features in order already.
        temps.remove(mt)
        ctx.con.execute(f"ALTER TABLE {mt} RENAME TO {table(op.name)}")
    else:
        cols = ", ".join(f"{select[f.output]} AS {sql_ident(f.output)}" for f in p.features)
        ctx.con.execute(f"""
            CREATE TEMP TABLE {table(op.name)} AS
            SELECT q.{", q.".join(groups)}, q.__ts, {cols} FROM {qp} q {" ".join(joins)}
        """)
    for t in temps:
        ctx.con.execute(f"DROP TABLE {t}")
