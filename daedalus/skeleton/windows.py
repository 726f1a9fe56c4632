"""Rolling window aggregations (contract section 4): events with t - w <= e.ts < t.

The SQL engine stacks the day's query points (distinct group, ts of the spine) under the
events and evaluates each window as a RANGE frame ending one microsecond before the row,
so events at the row's own timestamp are excluded; query rows carry NULL values and count
for nothing.
"""

from __future__ import annotations

from daedalus.plan import Operator, WindowAggParams, WindowFeature
from daedalus.skeleton.context import DayContext, interval_sql, table, ts_literal
from daedalus.sources import sql_ident
from daedalus.timeutil import duration_micros

def events_sql(ctx: DayContext, p: WindowAggParams) -> tuple[str, list[str], dict[str, str]]:
    """The events that can fall in a window of some row of the day, with source order.

    Returns the SQL, the value columns it carries, and their DuckDB types.
    """
    spec = ctx.plan.sources[p.source]
    max_w = max(duration_micros(f.window) for f in p.features)
    rel, empty = ctx.relation(p.source, ctx.source_files(p.source, spec.lookback_days))
    ts = ctx.ts_expr(rel, spec.timestamp_field, spec.path)
    value_cols = []
    for f in p.features:
        if f.column and f.column not in value_cols:
            value_cols.append(f.column)
    groups = [sql_ident(g) for g in p.group_by]
    vals = [f"{ctx.value_expr(rel, c)} AS {sql_ident('v:' + c)}" for c in value_cols]
    conds = [f"__ts < {ts_literal(ctx.end)}", f"__ts >= {ts_literal(ctx.start)} - {interval_sql(max_w)}"]
    conds += [f"{g} IS NOT NULL" for g in groups]
    if empty:
        conds.append("false")
    sql = f"""
        SELECT * FROM (
            SELECT {', '.join(groups)}, {ts} AS __ts, filename AS __file, file_row_number AS __row
                   {''.join(', ' + v for v in vals)}
            FROM {rel}
        ) WHERE {' AND '.join(conds)}
    """
    types = {}
    if value_cols:
        desc = ctx.con.execute(f"DESCRIBE {sql}").fetchall()
        types = {r[0][2:]: r[1] for r in desc if r[0].startswith("v:")}
    return sql, value_cols, types


def _agg_expr(f: WindowFeature, ctype: str | None, w: str) -> str:
    v = sql_ident("v:" + f.column) if f.column else "__ev"
    over = f"OVER {w}"
    fn = f.function
    if fn == "count":
        return f"count({v}) {over}"
    if fn == "count_distinct":
        return f"count(DISTINCT {v}) {over}"
    if fn == "sum":
        if ctype and (ctype.upper() in ("FLOAT", "DOUBLE") or ctype.upper().startswith("DECIMAL")):
            return f"coalesce(sum(CAST({v} AS DOUBLE)) {over}, 0)"
        return f"CAST(coalesce(sum(CAST({v} AS BIGINT)) {over}, 0) AS BIGINT)"
    if fn == "mean":
        return f"avg(CAST({v} AS DOUBLE)) {over}"
    if fn in ("min", "max"):
        return f"{fn}({v}) {over}"
    raise ValueError(fn)


def window_agg_sql(ctx: DayContext, op: Operator) -> None:
    """Windows as RANGE frames, one window length at a time over only the events it can see.

    `last`/`last_k` go by rank, since ordered list aggregates over long frames cost a sort
    per row: for column c, `hi` = non-null c events with ts < t (a running count) and `n` =
    those inside the window; the answer is the events of rank hi, hi-1, ... (at most
    min(n, k)) in the group's (ts, source order) ranking of the non-null c events.
    """
    p: WindowAggParams = op.typed_params()
    ev_sql, value_cols, types = events_sql(ctx, p)
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    not_null = " AND ".join(f"{g} IS NOT NULL" for g in groups)
    ev = table(op.name + ":events")
    qp = table(op.name + ":queries")
    ctx.con.execute(f"CREATE TEMP TABLE {ev} AS {ev_sql}")
    ctx.con.execute(f"CREATE TEMP TABLE {qp} AS SELECT DISTINCT {gl}, __ts FROM {table('spine')} WHERE {not_null}")
    vals_null = "".join(f", NULL AS {sql_ident('v:' + c)}" for c in value_cols)
    vals = "".join(f", {sql_ident('v:' + c)}" for c in value_cols)
    temps = [ev, qp]
    select: dict[str, str] = {}
    joins: list[str] = []
    by_window: dict[int, list[tuple[int, WindowFeature]]] = {}
    for i, f in enumerate(p.features):
        by_window.setdefault(duration_micros(f.window), []).append((i, f))
    for w, feats in sorted(by_window.items()):
        lower = f"{ts_literal(ctx.start)} - {interval_sql(w)}"
        win = table(f"{op.name}:w{w}")
        temps.append(win)
        exprs = []
        for i, f in feats:
            if f.function in ("last", "last_k"):
                v = sql_ident("v:" + (f.column or ""))
                exprs.append(f"count({v}) OVER wall AS __hi{i}, count({v}) OVER w AS __n{i}")
            else:
                exprs.append(f"{_agg_expr(f, types.get(f.column or ''), 'w')} AS {sql_ident(f.output)}")
        ctx.con.execute(f"""
            CREATE TEMP TABLE {win} AS
            SELECT * EXCLUDE (__q) FROM (
                SELECT {gl}, __ts, __q, {', '.join(exprs)}
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
        joins.append(f"LEFT JOIN {win} {alias} ON " + " AND ".join(f"q.{g} = {alias}.{g}" for g in groups) + f" AND q.__ts = {alias}.__ts")
        for i, f in feats:
            if f.function not in ("last", "last_k"):
                select[f.output] = f"{alias}.{sql_ident(f.output)}"
                continue
            v = sql_ident("v:" + (f.column or ""))
            rk = table(f"{op.name}:rank:{w}:{f.column}")
            if rk not in temps:
                temps.append(rk)
                ctx.con.execute(f"""
                    CREATE TEMP TABLE {rk} AS
                    SELECT {gl}, row_number() OVER (PARTITION BY {gl} ORDER BY __ts, __file, __row) AS __rank, {v} AS __v
                    FROM {ev} WHERE {v} IS NOT NULL AND __ts >= {lower}
                """)
            on_g = " AND ".join(f"m.{g} = r.{g}" for g in groups)
            if f.function == "last":
                sub = f"""SELECT m.{', m.'.join(groups)}, m.__ts, r.__v AS x FROM {win} m JOIN {rk} r
                          ON {on_g} AND r.__rank = m.__hi{i} WHERE m.__n{i} > 0"""
            else:
                sub = f"""SELECT m.{', m.'.join(groups)}, m.__ts, list(r.__v ORDER BY r.__rank DESC) AS x FROM {win} m JOIN {rk} r
                          ON {on_g} AND r.__rank > m.__hi{i} - least(m.__n{i}, {int(f.k or 0)}) AND r.__rank <= m.__hi{i}
                          GROUP BY ALL"""
            la = f"l{i}"
            joins.append(f"LEFT JOIN ({sub}) {la} ON " + " AND ".join(f"q.{g} = {la}.{g}" for g in groups) + f" AND q.__ts = {la}.__ts")
            select[f.output] = f"{la}.x" if f.function == "last" else f"coalesce({la}.x, [])"
    cols = ", ".join(f"{select[f.output]} AS {sql_ident(f.output)}" for f in p.features)
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT q.{', q.'.join(groups)}, q.__ts, {cols} FROM {qp} q {' '.join(joins)}
    """)
    for t in temps:
        ctx.con.execute(f"DROP TABLE {t}")
