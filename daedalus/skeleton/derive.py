"""Feature values from the chosen source row: columns and `expr` in SQL, `udf` as Arrow UDFs.

Both are computed on the chosen row and masked by `__hit`, so a row with no match has every
feature of the view null whatever the expression would give for nulls.
"""

from __future__ import annotations

import hashlib

from daedalus import arrowtypes as at
from daedalus.errors import DaedalusError
from daedalus.udfs import import_udf
from daedalus.plan import DeriveParams, Operator, UdfParams
from daedalus.skeleton.context import DayContext, table
from daedalus.sources import sql_ident


def _key_cols(ctx: DayContext, view: str) -> str:
    p = ctx.plan.op(f"pit_join.{view}").typed_params()
    return ", ".join(sql_ident(e) for e in p.entities) + ", __ts"


def derive_sql(ctx: DayContext, op: Operator) -> None:
    p: DeriveParams = op.typed_params()
    exprs = []
    for f in p.features:
        value = f"({f.expr})" if f.expr is not None else sql_ident(f.column or "")
        exprs.append(f"CASE WHEN __hit THEN CAST({value} AS {at.DTYPE_DUCKDB[f.dtype]}) END AS {sql_ident(f.output)}")
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT {_key_cols(ctx, p.view)}, {', '.join(exprs)} FROM {table('pit_join.' + p.view)}
    """)


def load_udf(function: str):
    try:
        return import_udf(function)
    except Exception as e:
        raise DaedalusError(function, f"cannot load udf: {e}") from None


def udf_arrow(ctx: DayContext, op: Operator) -> None:
    p: UdfParams = op.typed_params()
    fn = load_udf(p.function)
    src = table("pit_join." + p.view)
    types = {r[0]: r[1] for r in ctx.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    name = "udf_" + hashlib.sha1(op.name.encode()).hexdigest()[:12]
    ctx.con.create_function(name, fn, [types[c] for c in p.inputs], at.DTYPE_DUCKDB[p.dtype],
                            type="arrow", null_handling="special", side_effects=False)
    args = ", ".join(sql_ident(c) for c in p.inputs)
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT {_key_cols(ctx, p.view)},
               CASE WHEN __hit THEN CAST({name}({args}) AS {at.DTYPE_DUCKDB[p.dtype]}) END AS {sql_ident(p.output)}
        FROM {src}
    """)
