"""Feature values from the chosen source row: columns and `expr` in SQL, `udf` as Arrow UDFs.

Both are computed on the chosen row and masked by `__hit`, so a row with no match has every
feature of the view null whatever the expression would give for nulls.
"""

from __future__ import annotations

import hashlib

from daedalus import arrowtypes as at
from daedalus.errors import DaedalusError
from daedalus.plan import DeriveOp, DeriveParams, UdfOp, UdfParams
from daedalus.skeleton.context import DayContext, table
from daedalus.sources import sql_ident
from daedalus.udfs import import_udf


def _joined(ctx: DayContext, op: DeriveOp | UdfOp) -> tuple[str, str]:
    """The operator's pit_join input: (its table, its key columns as SQL)."""
    join = ctx.plan.input_of(op, "pit_join")
    return table(join.name), ", ".join(sql_ident(k) for k in join.keys(ctx.plan))


def derive_sql(ctx: DayContext, op: DeriveOp) -> None:
    p: DeriveParams = op.params
    src, keys = _joined(ctx, op)
    exprs = []
    for f in p.features:
        value = f"({f.expr})" if f.expr is not None else sql_ident(f.column or "")
        exprs.append(f"CASE WHEN __hit THEN CAST({value} AS {at.DTYPE_DUCKDB[f.dtype]}) END AS {sql_ident(f.output)}")
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT {keys}, {", ".join(exprs)} FROM {src}
    """)


def load_udf(function: str):
    try:
        return import_udf(function)
    except Exception as e:
        raise DaedalusError(function, f"cannot load udf: {e}") from None


def udf_arrow(ctx: DayContext, op: UdfOp) -> None:
    p: UdfParams = op.params
    fn = load_udf(p.function)
    src, keys = _joined(ctx, op)
    types = {r[0]: r[1] for r in ctx.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    name = "udf_" + hashlib.sha1(op.name.encode()).hexdigest()[:12]
    # The enums for `type`/`null_handling` live in different modules in DuckDB 1.4 and 2;
    # the strings work in both.
    ctx.con.create_function(  # type: ignore[call-overload]
        name,
        fn,
        [types[c] for c in p.inputs],
        at.DTYPE_DUCKDB[p.dtype],
        type="arrow",
        null_handling="special",
        side_effects=False,
    )
    args = ", ".join(sql_ident(c) for c in p.inputs)
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT {keys},
               CASE WHEN __hit THEN CAST({name}({args}) AS {at.DTYPE_DUCKDB[p.dtype]}) END AS {sql_ident(p.output)}
        FROM {src}
    """)
