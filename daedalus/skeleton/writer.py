"""Assemble the day's columns in contract order and write sorted Zstd parts atomically."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from daedalus import arrowtypes as at
from daedalus.atomic import publish_dir, temp_sibling
from daedalus.errors import DaedalusError
from daedalus.plan import WritePartsOp
from daedalus.skeleton.context import DayContext, table
from daedalus.sources import sql_ident


def assemble_sql(ctx: DayContext, op: WritePartsOp) -> str:
    """The day's rows: the spine input, each other input joined on the keys it declares."""
    spine = ctx.plan.input_of(op, "spine")
    exprs: dict[str, str] = {"event_timestamp": "CAST(s.__ts AS TIMESTAMPTZ)"}
    for c in spine.outputs[1:]:
        exprs[c.name] = f"s.{sql_ident(c.name)}"
    joins = []
    for i, name in enumerate(op.inputs):
        src = ctx.plan.op(name)
        if src is spine:
            continue
        alias = f"j{i}"
        on = " AND ".join(f"s.{sql_ident(k)} = {alias}.{sql_ident(k)}" for k in src.keys(ctx.plan))
        joins.append(f"LEFT JOIN {table(name)} {alias} ON {on}")
        defaults = src.empty_values()
        for col in src.outputs:
            e = f"{alias}.{sql_ident(col.name)}"
            exprs[col.name] = f"coalesce({e}, {defaults[col.name]})" if defaults.get(col.name) else e
    missing = [c.name for c in op.outputs if c.name not in exprs]
    if missing:
        raise DaedalusError(op.name, f"output columns no input makes: {', '.join(missing)}")
    select = ", ".join(f"{exprs[c.name]} AS {sql_ident(c.name)}" for c in op.outputs)
    return f"SELECT {select} FROM {table(spine.name)} s {' '.join(joins)} ORDER BY s.__rid"


def output_schema(op: WritePartsOp) -> pa.Schema:
    return pa.schema([pa.field(c.name, at.from_str(c.type)) for c in op.outputs])


def _parts(ctx: DayContext, op: WritePartsOp, chunk_rows: int, schema: pa.Schema):
    """The day's rows in tables of chunk_rows (the last shorter), streamed from DuckDB.

    Streaming keeps the result out of memory as a whole: DuckDB spills the sort and the joins
    to its temp_directory, and only one part is held here at a time. Each part is one chunk
    per column, so its bytes do not depend on where DuckDB's batches happened to end.
    """
    reader = ctx.con.sql(assemble_sql(ctx, op)).to_arrow_reader(chunk_rows)
    buf: list[pa.RecordBatch] = []
    n = 0
    for batch in reader:
        while batch.num_rows:
            take = min(chunk_rows - n, batch.num_rows)
            buf.append(batch.slice(0, take))
            n += take
            batch = batch.slice(take)
            if n == chunk_rows:
                yield pa.Table.from_batches(buf).combine_chunks().cast(schema)
                buf, n = [], 0
    if buf:
        yield pa.Table.from_batches(buf).combine_chunks().cast(schema)


def write_parts(
    ctx: DayContext, op: WritePartsOp, chunk_rows: int, on_part: Callable[[pa.Table], None] | None = None
) -> tuple[int, int]:
    """Write the day; returns (rows, parts). The day directory appears complete or not at all."""
    schema = output_schema(op)
    final = ctx.output_root / f"dt={ctx.day.isoformat()}"
    tmp = temp_sibling(final)
    tmp.mkdir(parents=True)
    try:
        n = parts = 0
        for part in _parts(ctx, op, chunk_rows, schema):
            pq.write_table(part, tmp / f"part-{parts}-0.parquet", compression="zstd")
            if on_part is not None:
                on_part(part)
            n += part.num_rows
            parts += 1
        if parts == 0:
            pq.write_table(schema.empty_table(), tmp / "part-0-0.parquet", compression="zstd")
            if on_part is not None:
                on_part(schema.empty_table())
            parts = 1
        publish_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return n, parts
