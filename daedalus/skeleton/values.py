"""A window feature's value over its source's events (`WindowFeature.value`): the column,
null where the feature's `where` is not true or the event is outside its bucket.

Shared by the window engines and the per-day partials, so a filtered feature's partials hold
exactly the values its window would read.
"""

from __future__ import annotations

from daedalus.expressions import referenced_columns
from daedalus.plan import WindowFeature
from daedalus.skeleton.context import DayContext
from daedalus.sources import sql_str


def bucket_text(expr: str) -> str:
    """A bucket value as the text of map keys and `buckets:` (DuckDB's cast to VARCHAR)."""
    return f"CAST({expr} AS VARCHAR)"


def value_sql(ctx: DayContext, rel: str, f: WindowFeature) -> str:
    """The SQL of the feature's value over the source relation (no column: 1 where it counts)."""
    col = ctx.value_expr(rel, f.column) if f.column else "1"
    conds = []
    if f.where is not None:
        conds.append(f"coalesce(CAST(({f.where}) AS BOOLEAN), false)")
    if f.bucket_by is not None:
        b = ctx.value_expr(rel, f.bucket_by)
        conds.append(f"{b} IS NOT NULL" if f.bucket is None else f"{bucket_text(b)} = {sql_str(f.bucket)}")
    if not conds:
        return col
    return f"CASE WHEN {' AND '.join(conds)} THEN {col} END"


def source_columns(f: WindowFeature) -> set[str]:
    """The source columns the feature's value reads."""
    cols = {c for c in (f.column, f.bucket_by) if c}
    return cols | set(referenced_columns(f.where)) if f.where else cols
