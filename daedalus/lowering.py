"""Lowering definitions to the operator DAG (the plan), one function per definition kind.

The spine becomes the `spine` operator; each view of the service a `pit_join` (and a
`derive` for its column and `expr` features, a `udf` per Python feature); each aggregation a
`window_agg`; each label window a `label_window` (read forward, daedalus.skeleton.labels);
the session field a `qid`; the outputs a `write_parts`; each embedding an `embed`. Every column is checked against the data as it is lowered (daedalus.checks).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from daedalus import arrowtypes as at
from daedalus import functions
from daedalus.checks import SourceChecker, check_expr, check_scalar, check_udf, store_schema, type_str
from daedalus.definitions import Aggregation
from daedalus.errors import DaedalusError
from daedalus.expressions import referenced_columns
from daedalus.loading import Definitions
from daedalus.plan import Column, Operator, Plan, SourceSpec, make_op
from daedalus.timeutil import lookback_days, parse_duration

SPINE = "spine"


def view_source_id(view: str) -> str:
    return f"view.{view}"


def agg_source_id(agg: Aggregation) -> str:
    return SPINE if agg.source == "spine" else f"agg.{agg.name}"


def label_source_id(agg: Aggregation) -> str:
    """A label window's source (its own id: it is read forward, not back)."""
    return SPINE if agg.source == "spine" else f"label.{agg.name}"


def source_lookaheads(defs: Definitions) -> dict[str, int]:
    """Per source read by label windows, the days after a day its job reads (ceil(w / 1 day))."""
    out: dict[str, int] = {}
    aggs = {a.name: a for a in defs.aggregations.aggregations}
    for name in defs.service.label_windows:
        agg = aggs[name]
        longest = max(lookback_days(parse_duration(w)) for f in agg.features for w in agg.windows_of(f))
        sid = label_source_id(agg)
        out[sid] = max(out.get(sid, 0), longest)
    return out


def source_lookbacks(defs: Definitions) -> dict[str, int | None]:
    """Per source, the days before a day its job reads (None: every earlier partition)."""
    out: dict[str, int | None] = {SPINE: 0}
    for ref in defs.service.refs:
        view = defs.views[ref.view]
        out[view_source_id(view.name)] = lookback_days(parse_duration(view.ttl)) if view.ttl else None
    aggs = {a.name: a for a in defs.aggregations.aggregations}
    for name in defs.service.aggregations:
        agg = aggs[name]
        longest = max(lookback_days(parse_duration(w)) for f in agg.features for w in agg.windows_of(f))
        sid = agg_source_id(agg)
        out[sid] = max(out.get(sid) or 0, longest)
    for name in defs.service.label_windows:
        out.setdefault(label_source_id(aggs[name]), 0)  # read forward from the day itself
    return out


@dataclass
class _Lowering:
    """The plan as it is built: operators, output columns in contract order, sources."""

    defs: Definitions
    chk: SourceChecker
    ops: list[Operator] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    udf_files: list[Path] = field(default_factory=list)


def lower_spine(lw: _Lowering) -> None:
    svc, spath, chk = lw.defs.service, lw.defs.service_path, lw.chk
    chk.add(SPINE, svc.spine.source, spath, chk.lookbacks[SPINE])
    spine_types = {c: chk.require(SPINE, c, spath, "spine") for c in svc.spine.columns}
    lw.columns.append(Column(name="event_timestamp", type=at.to_str(at.UTC_TS)))
    spine_cols: list[Column] = []
    for c in svc.spine.columns:
        spine_cols.append(Column(name=c, type=type_str(spine_types[c], spath, f"spine column {c!r}")))
        if c == svc.spine.session_field:
            spine_cols.append(Column(name="qid", type="int64"))
    lw.ops.append(
        make_op(
            name="spine",
            kind="spine",
            engine="sql",
            inputs=[f"source:{SPINE}"],
            params={
                "source": SPINE,
                "entities": list(svc.spine.entities),
                "session_field": svc.spine.session_field,
                "labels": list(svc.spine.labels),
                "passthrough": list(svc.spine.passthrough),
            },
            outputs=[lw.columns[0]] + [c for c in spine_cols if c.name != "qid"],
        )
    )
    lw.columns += spine_cols


def lower_view(lw: _Lowering, ref: object) -> None:
    svc, chk = lw.defs.service, lw.chk
    view, vpath = lw.defs.views[ref.view], lw.defs.view_paths[ref.view]  # type: ignore[attr-defined]
    sid = view_source_id(view.name)
    chk.add(sid, view.source, vpath, chk.lookbacks[sid])
    for e in view.entities:
        if e not in svc.spine.entities:
            raise DaedalusError(
                vpath,
                f"entities: {e!r} is not an entity of the spine of service {svc.name!r} "
                f"(spine entities: {', '.join(svc.spine.entities)})",
            )
        chk.require(sid, e, vpath, "entities")
    by_name = {f.name: f for f in view.features}
    chosen = [by_name[n] for n in ref.features] if ref.features is not None else list(view.features)  # type: ignore[attr-defined]
    needed: list[str] = []

    def need(col: str) -> None:
        if col not in needed and col not in view.entities:
            needed.append(col)

    derived: list[dict] = []
    udfs: list[Operator] = []
    for f in view.features:  # check every feature of the view, not only the chosen ones
        if f.kind == "column":
            ctype = chk.require(sid, f.source_column, vpath, f"feature {f.name!r}: column")
            takes = at.readable_as(ctype, f.dtype)
            if takes is not None:
                raise DaedalusError(
                    vpath,
                    f"feature {f.name!r}: column {f.source_column!r} is {at.to_str(ctype)}, "
                    f"which is not read as dtype {f.dtype} (a {f.dtype} feature reads {takes} columns)",
                )
        elif f.kind == "expr":
            check_expr(view, f.name, f.expr or "", f.dtype, chk, sid, vpath)
        else:
            for c in f.inputs or []:
                chk.require(sid, c, vpath, f"feature {f.name!r}: inputs")
            origin = check_udf(f.udf or "", f.name, vpath)
            if origin is not None and origin not in lw.udf_files:
                lw.udf_files.append(origin)
    for f in chosen:
        out = f"{view.name}__{f.name}"
        lw.columns.append(Column(name=out, type=at.to_str(at.DTYPE_ARROW[f.dtype])))
        if f.kind == "column":
            need(f.source_column)
            derived.append({"output": out, "dtype": f.dtype, "column": f.source_column})
        elif f.kind == "expr":
            for c in referenced_columns(f.expr or ""):
                need(c)
            derived.append({"output": out, "dtype": f.dtype, "expr": f.expr})
        else:
            for c in f.inputs or []:
                need(c)
            udfs.append(
                make_op(
                    name=f"udf.{view.name}.{f.name}",
                    kind="udf",
                    engine="sql_arrow_udf",
                    inputs=[f"pit_join.{view.name}"],
                    params={
                        "view": view.name,
                        "output": out,
                        "dtype": f.dtype,
                        "function": f.udf,
                        "inputs": list(f.inputs or []),
                    },
                    outputs=[Column(name=out, type=at.to_str(at.DTYPE_ARROW[f.dtype]))],
                )
            )
    lw.sources[sid] = chk.spec(sid, view.source)
    lw.ops.append(
        make_op(
            name=f"pit_join.{view.name}",
            kind="pit_join",
            engine="sql",
            inputs=["spine", f"source:{sid}"],
            params={
                "view": view.name,
                "source": sid,
                "entities": list(view.entities),
                "ttl": view.ttl,
                "columns": needed,
            },
            outputs=[],
        )
    )
    if derived:
        lw.ops.append(
            make_op(
                name=f"derive.{view.name}",
                kind="derive",
                engine="sql",
                inputs=[f"pit_join.{view.name}"],
                params={"view": view.name, "features": derived},
                outputs=[Column(name=d["output"], type=at.to_str(at.DTYPE_ARROW[d["dtype"]])) for d in derived],
            )
        )
    lw.ops.extend(udfs)


def lower_aggregation(lw: _Lowering, agg: Aggregation) -> None:
    svc, chk, agg_path, name = lw.defs.service, lw.chk, lw.defs.paths.aggregation_config_path, agg.name
    sid = agg_source_id(agg)
    if agg.source != "spine":
        chk.add(sid, agg.source, agg_path, chk.lookbacks[sid])
    for g in agg.group_by:
        if not chk.has(SPINE, g):
            raise DaedalusError(
                agg_path,
                f"aggregation {name!r}: group_by: {g!r} is not a column of the spine source {svc.spine.source.path!r}",
            )
        chk.require(sid, g, agg_path, f"aggregation {name!r}: group_by")
    feats: list[dict] = []
    outputs: list[Column] = []
    for f in agg.features:
        what = f"aggregation {name!r}: feature {f.name!r}"
        ctype = chk.require(sid, f.column, agg_path, f"{what}: column") if f.column else None
        fn = functions.get(f.function)
        if ctype is not None and not fn.accepts(ctype):
            raise DaedalusError(
                agg_path, f"{what}: {f.function} needs {fn.accepts_text}, {f.column!r} is {at.to_str(ctype)}"
            )
        out_type = fn.output(ctype)
        type_str(out_type, agg_path, what)
        if f.where is not None:
            src_path = svc.spine.source.path if agg.source == "spine" else agg.source.path
            check_scalar(f.where, "BOOLEAN", f"{what}: where", src_path, chk, sid, agg_path)
        params = {p: getattr(f, p) for p in (*functions.PARAMS, "where", "bucket_by") if getattr(f, p) is not None}
        buckets: list[str | None] = [None]
        if f.bucket_by is not None:
            btype = chk.require(sid, f.bucket_by, agg_path, f"{what}: bucket_by")
            if not functions.categorical(btype):
                raise DaedalusError(
                    agg_path,
                    f"{what}: bucket_by: column {f.bucket_by!r} is {at.to_str(btype)}, "
                    "expected a string, integer or bool column",
                )
            if f.buckets is not None:
                buckets = list(f.bucket_texts)
            elif pa.types.is_list(out_type) or pa.types.is_map(out_type):
                raise DaedalusError(
                    agg_path,
                    f"{what}: bucket_by: {f.function} has a {at.to_str(out_type)} value, a bucket map "
                    "holds one value per bucket (list 'buckets' for fixed columns instead)",
                )
            else:
                out_type = pa.map_(pa.string(), out_type)
        for w in agg.windows_of(f):
            for b in buckets:
                out = f"{name}__{f.name}_{w}" if b is None else f"{name}__{f.name}_{b}_{w}"
                bucket = {} if b is None else {"bucket": b}
                feats.append(
                    {"output": out, "function": f.function, "column": f.column, "window": w, **params, **bucket}
                )
                outputs.append(Column(name=out, type=at.to_str(out_type)))
    lw.columns += outputs
    if not isinstance(agg.source, str):
        lw.sources[sid] = chk.spec(sid, agg.source)
    lw.ops.append(
        make_op(
            name=f"window_agg.{name}",
            kind="window_agg",
            engine="sql",
            inputs=["spine", f"source:{sid}"],
            params={"aggregation": name, "source": sid, "group_by": list(agg.group_by), "features": feats},
            outputs=outputs,
        )
    )


# The AggFeature keys a label window understands; any other one set is a compile error (a
# filter or parameter the forward engine would otherwise ignore).
LABEL_FEATURE_KEYS = {"name", "function", "column", "k", "windows"}


def lower_label_window(lw: _Lowering, agg: Aggregation) -> None:
    """A label window (contract section 9): the aggregation computed forward, `(t, t + w]`."""
    from daedalus.skeleton.labels import SUPPORTED

    svc, chk, agg_path, name = lw.defs.service, lw.chk, lw.defs.paths.aggregation_config_path, agg.name
    sid = label_source_id(agg)
    if agg.source != "spine":
        chk.add(sid, agg.source, agg_path, chk.lookbacks[sid])
    for g in agg.group_by:
        if not chk.has(SPINE, g):
            raise DaedalusError(
                agg_path,
                f"label window {name!r}: group_by: {g!r} is not a column of the spine source {svc.spine.source.path!r}",
            )
        chk.require(sid, g, agg_path, f"label window {name!r}: group_by")
    feats: list[dict] = []
    outputs: list[Column] = []
    for f in agg.features:
        what = f"label window {name!r}: feature {f.name!r}"
        if f.function not in SUPPORTED:
            raise DaedalusError(
                agg_path,
                f"{what}: function {f.function!r} is not supported in a label window "
                f"(label windows compute: {', '.join(sorted(SUPPORTED))})",
            )
        extra = sorted(k for k in f.model_fields_set - LABEL_FEATURE_KEYS if getattr(f, k) is not None)
        if extra:
            raise DaedalusError(agg_path, f"{what}: {extra[0]!r} is not supported in a label window")
        ctype = chk.require(sid, f.column, agg_path, f"{what}: column") if f.column else None
        fn = functions.get(f.function)
        if ctype is not None and not fn.accepts(ctype):
            raise DaedalusError(
                agg_path, f"{what}: {f.function} needs {fn.accepts_text}, {f.column!r} is {at.to_str(ctype)}"
            )
        out_type = fn.output(ctype)
        type_str(out_type, agg_path, what)
        for w in agg.windows_of(f):
            out = f"{name}__{f.name}_{w}"
            feats.append({"output": out, "function": f.function, "column": f.column, "window": w, "k": f.k})
            outputs.append(Column(name=out, type=at.to_str(out_type)))
    taken = {c.name for c in lw.columns}
    for c in outputs:
        if c.name in taken:
            raise DaedalusError(agg_path, f"label window {name!r}: output column {c.name!r} is already a column")
    lw.columns += outputs
    if not isinstance(agg.source, str):
        lw.sources[sid] = chk.spec(sid, agg.source)
    lw.ops.append(
        make_op(
            name=f"label_window.{name}",
            kind="label_window",
            engine="sql",
            inputs=["spine", f"source:{sid}"],
            params={"aggregation": name, "source": sid, "group_by": list(agg.group_by), "features": feats},
            outputs=outputs,
        )
    )


def lower_outputs(lw: _Lowering) -> None:
    svc = lw.defs.service
    if svc.spine.session_field:
        lw.ops.append(
            make_op(
                name="qid",
                kind="qid",
                engine="sql",
                inputs=["spine"],
                params={"session_field": svc.spine.session_field},
                outputs=[Column(name="qid", type="int64")],
            )
        )
    lw.ops.append(
        make_op(
            name="write_parts",
            kind="write_parts",
            engine="sql",
            inputs=[o.name for o in lw.ops if o.kind != "pit_join"],
            params={},
            outputs=lw.columns,
        )
    )


def lower_embeddings(defs: Definitions, columns: list[Column]) -> list[Operator]:
    """One `embed` operator per embedding of the service (the enrich stage)."""
    if not defs.service.embeddings:
        return []
    where = defs.paths.aggregation_config_path
    store = defs.aggregations.embedding_store
    assert store is not None
    schema, _ = store_schema(store.uri, where)
    for col, want in ((store.key, "key"), (store.vector, "vector")):
        if col not in schema.names:
            raise DaedalusError(
                where,
                f"embedding_store.{want}: column {col!r} not found in {store.uri!r} "
                f"(columns: {', '.join(schema.names)})",
            )
    if schema.field(store.key).type != pa.int64():
        raise DaedalusError(
            where,
            f"embedding_store.key: column {store.key!r} of {store.uri!r} is "
            f"{schema.field(store.key).type}, expected int64",
        )
    vt = schema.field(store.vector).type
    if not (pa.types.is_fixed_size_list(vt) and vt.value_type == pa.float32()):
        raise DaedalusError(
            where,
            f"embedding_store.vector: column {store.vector!r} of {store.uri!r} is {vt}, "
            "expected fixed_size_list<float32>[dim]",
        )
    types = {c.name: c.type for c in columns}
    embs = {e.name: e for e in defs.aggregations.embeddings}
    ops = []
    for name in defs.service.embeddings:
        e = embs[name]
        if e.ids not in types:
            raise DaedalusError(
                where,
                f"embedding {name!r}: ids: {e.ids!r} is not a column of the skeleton output "
                f"of service {defs.service.name!r}",
            )
        if types[e.ids] not in ("int64", "list<int64>"):
            raise DaedalusError(
                where, f"embedding {name!r}: ids: column {e.ids!r} is {types[e.ids]}, expected int64 or list<int64>"
            )
        ops.append(
            make_op(
                name=f"embed.{name}",
                kind="embed",
                engine="pythonic",
                inputs=["write_parts"],
                params={
                    "embedding": name,
                    "ids": e.ids,
                    "store_uri": store.uri,
                    "key": store.key,
                    "vector": store.vector,
                },
                outputs=[
                    Column(name=name, type=at.to_str(pa.list_(pa.float32(), vt.list_size))),
                    Column(name=f"{name}_count", type="int32"),
                ],
            )
        )
    return ops


def build_plan(defs: Definitions, days: list[dt.date]) -> tuple[Plan, SourceChecker, list[Path]]:
    """The plan of the service for a run over `days`, checked against the partitions those
    days read (and only those: an unreadable partition outside them is never opened)."""
    lw = _Lowering(defs, SourceChecker(days, source_lookbacks(defs), source_lookaheads(defs)))
    lower_spine(lw)
    for ref in defs.service.refs:
        lower_view(lw, ref)
    aggs = {a.name: a for a in defs.aggregations.aggregations}
    for name in defs.service.aggregations:
        lower_aggregation(lw, aggs[name])
    for name in defs.service.label_windows:  # labels last: after every feature column
        lower_label_window(lw, aggs[name])
    lower_outputs(lw)
    # Last: `source: spine` aggregations add spine columns the plan reads.
    sources = {SPINE: lw.chk.spec(SPINE, defs.service.spine.source), **lw.sources}
    ops = lw.ops + lower_embeddings(defs, lw.columns)
    return Plan(service=defs.service.name, sources=sources, operators=ops), lw.chk, lw.udf_files
