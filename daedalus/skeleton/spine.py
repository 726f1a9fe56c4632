"""The spine: the day's feed rows in output order (event_timestamp, then source order)."""

from __future__ import annotations

from daedalus.plan import SpineOp, SpineParams
from daedalus.skeleton.context import DayContext, table, ts_literal
from daedalus.sources import sql_ident


def spine_sql(ctx: DayContext, op: SpineOp) -> None:
    p: SpineParams = op.params
    spec = ctx.plan.sources[p.source]
    rel, empty = ctx.relation(p.source, ctx.source_files(p.source, 0))
    ts = ctx.ts_expr(rel, spec.timestamp_field, spec.path)
    cols = list(p.entities) + ([p.session_field] if p.session_field else []) + p.labels + p.passthrough
    # Spine columns keep their logical type: a timestamp passthrough is UTC microseconds too.
    select = ", ".join(f"{ctx.value_expr(rel, c)} AS {sql_ident(c)}" for c in cols)
    where = "false" if empty else f"__ts >= {ts_literal(ctx.start)} AND __ts < {ts_literal(ctx.end)}"
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT CAST(row_number() OVER (ORDER BY __ts, __file, __row) - 1 AS BIGINT) AS __rid, *
        FROM (
            SELECT {ts} AS __ts, filename AS __file, file_row_number AS __row, {select}
            FROM {rel}
        ) WHERE {where}
        ORDER BY __rid
    """)
