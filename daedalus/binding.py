"""Binding a plan at compile time: every error a day job could meet from the plan, first.

`bind_plan` runs every skeleton operator of a plan (generated or hand-edited) the way a day
job does, on empty tables of its sources' column types (`sources.<id>.columns`): the same
implementations, engines and SQL, so an operator that reads a column its input does not
have, a derive over the wrong join, an output type the values cannot take, an aggregation
function an engine lacks, or a write_parts output no input makes, fails here as one line
naming the plan file and the operator, before Snakemake starts or any output is touched.
The embed operators are checked against the skeleton output and the store.

A plan that bound once is remembered by its digest (`.daedalus_tmp/bound/`), so compiling
again (each Snakemake invocation does) costs nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from daedalus import arrowtypes as at
from daedalus.errors import DaedalusError
from daedalus.plan import LabelWindowOp, Plan, WindowAggOp

BOUND = Path(".daedalus_tmp/bound")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def bind_plan(plan: Plan, where: Path | str, day: dt.date, key: str = "") -> None:
    """Check the plan by running it on empty tables; raises DaedalusError naming the operator."""
    marker = BOUND / hashlib.sha256((plan.model_dump_json() + key).encode()).hexdigest()[:24]
    if marker.exists():
        return
    from daedalus.quality import SkeletonStats
    from daedalus.skeleton.context import DayContext
    from daedalus.skeleton.stage import BUCKET_MAP_SUPPORT, FUNCTION_SUPPORT, IMPLEMENTATIONS
    from daedalus.skeleton.writer import assemble_sql, output_schema

    def fail(i: int, op_name: str, problem: str) -> DaedalusError:
        return DaedalusError(where, f"operators[{i}] ({op_name}): {problem}")

    con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone = 'UTC'")
    try:
        with tempfile.TemporaryDirectory(prefix="daeda-bind-") as tmp:
            ctx = DayContext(con=con, plan=plan, day=day, files={}, output_root=Path(tmp), run_days=[day])
            for i, op in enumerate(plan.operators):
                if op.kind == "embed":
                    continue
                support = FUNCTION_SUPPORT.get((op.kind, op.engine))
                if support is not None and isinstance(op, (WindowAggOp, LabelWindowOp)):
                    for f in op.params.features:
                        if f.function not in support:
                            raise fail(
                                i,
                                op.name,
                                f"engine {op.engine!r} has no {f.function!r} (it has: {', '.join(sorted(support))})",
                            )
                        per_bucket = BUCKET_MAP_SUPPORT.get((op.kind, op.engine), set())
                        if f.bucket_map and f.function not in per_bucket:
                            has = f" (it has: {', '.join(sorted(per_bucket))})" if per_bucket else ""
                            raise fail(i, op.name, f"engine {op.engine!r} has no bucket map of {f.function!r}{has}")
                        if f.filtered and isinstance(op, LabelWindowOp):
                            raise fail(i, op.name, f"feature {f.output!r}: a label window takes no where or bucket_by")
                try:
                    if op.kind == "write_parts":
                        result = con.sql(assemble_sql(ctx, op)).to_arrow_table()
                        for field in output_schema(op):
                            try:
                                result[field.name].cast(field.type)
                            except pa.ArrowException:
                                raise fail(
                                    i,
                                    op.name,
                                    f"output {field.name!r} is {result.schema.field(field.name).type}, "
                                    f"which cannot be written as {at.to_str(field.type)}",
                                ) from None
                        SkeletonStats(plan).result(con, day.isoformat())
                    else:
                        IMPLEMENTATIONS[(op.kind, op.engine)](ctx, op)
                except DaedalusError as e:
                    raise fail(i, op.name, e.problem) from None
                except (duckdb.Error, pa.ArrowException, KeyError, ValueError, TypeError, AttributeError) as e:
                    raise fail(i, op.name, _first_line(e)) from None
    finally:
        con.close()
    _check_embeds(plan, where)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a cache only: the next compile binds again


def _check_embeds(plan: Plan, where: Path | str) -> None:
    embeds = plan.ops("embed")
    if not embeds:
        return
    stores = sorted({(op.params.store_uri, op.params.key, op.params.vector) for op in embeds})
    if len(stores) > 1:
        raise DaedalusError(
            where,
            f"embed operators read {len(stores)} embedding stores "
            f"({', '.join(s[0] for s in stores)}): a service enriches from one store",
        )
    columns = {c.name: c.type for c in plan.columns}
    for op in embeds:
        i = plan.operators.index(op)
        if op.params.ids not in columns:
            raise DaedalusError(
                where, f"operators[{i}] ({op.name}): ids: {op.params.ids!r} is not a column of the skeleton output"
            )
        t = at.from_str(columns[op.params.ids])
        if not (pa.types.is_integer(t) or (pa.types.is_list(t) and pa.types.is_integer(t.value_type))):
            raise DaedalusError(
                where,
                f"operators[{i}] ({op.name}): ids: column {op.params.ids!r} is "
                f"{columns[op.params.ids]}, expected an integer or a list of integers",
            )
