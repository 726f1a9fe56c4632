"""The spine: the day's feed rows in output order (event_timestamp, then source order)."""

from __future__ import annotations

from daedalus.plan import SpineOp, SpineParams
from daedalus.skeleton.context import DayContext, table, ts_literal
from daedalus.sources import sql_ident


def spine_sql(ctx: DayContext, op: SpineOp) -> None:
    """The day's rows with `__rid`, their rank in (ts, source order), and `__ts`.

    Source order by file index: the files are in lexical path order, so the index ranks like
    the path does without sorting strings. The table is not kept in `__rid` order (its
    readers join on keys and the writer sorts), which spares a second sort of the day.
    """
    p: SpineParams = op.params
    spec = ctx.plan.sources[p.source]
    rel, empty = ctx.relation(p.source, sorted(ctx.source_files(p.source, 0)))
    ts = ctx.ts_expr(rel, spec.timestamp_field, spec.path)
    cols = list(p.entities) + ([p.session_field] if p.session_field else []) + p.labels + p.passthrough
    # Spine columns keep their logical type: a timestamp passthrough is UTC microseconds too.
    select = ", ".join(f"{ctx.value_expr(rel, c)} AS {sql_ident(c)}" for c in cols)
    names = ", ".join(sql_ident(c) for c in cols)
    where = "false" if empty else f"__ts >= {ts_literal(ctx.start)} AND __ts < {ts_literal(ctx.end)}"
    fi = "0" if empty else "file_index"  # the empty relation is a table, not a scan
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT CAST(row_number() OVER (ORDER BY __ts, __fi, __row) - 1 AS BIGINT) AS __rid, __ts, {names}
        FROM (
            SELECT {ts} AS __ts, {fi} AS __fi, file_row_number AS __row, {select}
            FROM {rel}
        ) WHERE {where}
    """)
