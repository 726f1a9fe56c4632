"""Definitions -> operator DAG (the plan) and the per-day Snakemake targets.

Compile checks everything against the data it will read (columns, types, expressions,
UDFs), so a bad definition fails here with a one-line error before any output is touched.
Its outputs are byte-for-byte deterministic and written only when their content changes,
so recompiling an unchanged definition never makes Snakemake rerun anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from daedalus import arrowtypes as at
from daedalus.definitions import Aggregation, FeatureView, Source
from daedalus.errors import DaedalusError
from daedalus.expressions import ExprError, referenced_columns
from daedalus.loading import DefinitionPaths, Definitions, load_definitions
from daedalus.plan import Column, Operator, Plan, SourceSpec, load_plan, validate_plan
from daedalus.sources import SourceFiles, footer_columns, read_schema
from daedalus.udfs import import_udf
from daedalus.timeutil import day_range, lookback_days, parse_duration

SPINE = "spine"


@dataclass
class Compiled:
    definitions: Definitions
    plan: Plan              # the plan `train` runs (the hand-edited one when present)
    plan_path: Path         # where that plan lives
    generated_yaml: str     # the generated plan's text
    digest: str             # changes exactly when what a day job computes changes
    days: list[dt.date]
    sources: dict[str, SourceFiles]


def view_source_id(view: str) -> str:
    return f"view.{view}"


def agg_source_id(agg: Aggregation) -> str:
    return SPINE if agg.source == "spine" else f"agg.{agg.name}"


class _Checker:
    """Source schemas, read once, with checks that name the definition file."""

    def __init__(self) -> None:
        self.files: dict[str, SourceFiles] = {}
        self.schemas: dict[str, pa.Schema] = {}

    def add(self, sid: str, source: Source, where: Path) -> pa.Schema:
        files = SourceFiles.scan(source.path)
        if not files.files:
            raise DaedalusError(where, f"source.path: {source.path!r} does not exist or holds no parquet files")
        schema = read_schema(source.path, files.files, str(where))
        self.files[sid], self.schemas[sid] = files, schema
        self.require(sid, source.timestamp_field, where, "source.timestamp_field")
        _check_timestamp(schema, source.timestamp_field, where, "source.timestamp_field")
        if source.created_timestamp_field:
            self.require(sid, source.created_timestamp_field, where, "source.created_timestamp_field")
            _check_timestamp(schema, source.created_timestamp_field, where, "source.created_timestamp_field")
        return schema

    def require(self, sid: str, column: str, where: Path, field: str) -> pa.DataType:
        schema = self.schemas[sid]
        if column not in schema.names:
            raise DaedalusError(where, f"{field}: column {column!r} not found in source "
                                f"{self.files[sid].path!r} (columns: {', '.join(schema.names)})")
        return schema.field(column).type


def _check_timestamp(schema: pa.Schema, col: str, where: Path, field: str) -> None:
    t = schema.field(col).type
    if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
        raise DaedalusError(where, f"{field}: column {col!r} has type {t}, expected a timestamp")


def _type_str(t: pa.DataType, where: Path, what: str) -> str:
    try:
        return at.to_str(t)
    except ValueError:
        raise DaedalusError(where, f"{what}: type {t} is not supported") from None


def _check_expr(view: FeatureView, feature_name: str, expr: str, dtype: str, schema: pa.Schema, where: Path) -> list[str]:
    try:
        cols = referenced_columns(expr)
    except ExprError as e:
        raise DaedalusError(where, f"feature {feature_name!r}: expr {e}") from None
    for c in cols:
        if c not in schema.names:
            raise DaedalusError(where, f"feature {feature_name!r}: expr reads column {c!r}, not a column of "
                                f"source {view.source.path!r}")
    # Bind against an empty table of the source's columns: unknown functions and type
    # errors surface here rather than in a day job.
    con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone='UTC'")
    empty = pa.schema([schema.field(c) for c in cols]).empty_table() if cols else pa.table({"__dummy": pa.array([], pa.int8())})
    con.register("__source", empty)
    try:
        con.execute(f"DESCRIBE SELECT CAST(({expr}) AS {at.DTYPE_DUCKDB[dtype]}) FROM __source")
    except duckdb.Error as e:
        first = str(e).splitlines()[0]
        raise DaedalusError(where, f"feature {feature_name!r}: expr does not compile: {first}") from None
    return cols


def _check_plan_exprs(plan: Plan, where: Path) -> None:
    """A hand-edited plan's expressions pass the same check as a view's."""
    for i, op in enumerate(plan.operators):
        if op.kind != "derive":
            continue
        for f in op.typed_params().features:
            if f.expr is None:
                continue
            try:
                referenced_columns(f.expr)
            except ExprError as e:
                raise DaedalusError(where, f"operators[{i}] ({op.name}): feature {f.output!r}: expr {e}") from None


def _check_udf(function: str, feature_name: str, where: Path) -> Path | None:
    try:
        fn = import_udf(function)
    except Exception as e:
        raise DaedalusError(where, f"feature {feature_name!r}: udf {function!r} cannot be loaded: {e}") from None
    origin = getattr(sys.modules.get(fn.__module__), "__file__", None)
    return Path(origin) if origin else None


def build_plan(defs: Definitions) -> tuple[Plan, dict[str, SourceFiles], list[Path]]:
    svc, spath = defs.service, defs.service_path
    chk = _Checker()
    spine_schema = chk.add(SPINE, svc.spine.source, spath)
    for c in svc.spine.columns:
        chk.require(SPINE, c, spath, "spine")

    ops: list[Operator] = []
    columns: list[Column] = [Column(name="event_timestamp", type=at.to_str(at.UTC_TS))]
    spine_cols: list[Column] = []
    for c in svc.spine.columns:
        spine_cols.append(Column(name=c, type=_type_str(spine_schema.field(c).type, spath, f"spine column {c!r}")))
        if c == svc.spine.session_field:
            spine_cols.append(Column(name="qid", type="int64"))
    sources: dict[str, SourceSpec] = {}
    spine_lookback = 0
    ops.append(Operator(
        name="spine", kind="spine", engine="sql", inputs=[f"source:{SPINE}"],
        params={"source": SPINE, "entities": list(svc.spine.entities), "session_field": svc.spine.session_field,
                "labels": list(svc.spine.labels), "passthrough": list(svc.spine.passthrough)},
        outputs=[columns[0]] + [c for c in spine_cols if c.name != "qid"],
    ))
    columns += spine_cols

    udf_files: list[Path] = []
    feature_ops: list[Operator] = []
    for ref in svc.refs:
        view, vpath = defs.views[ref.view], defs.view_paths[ref.view]
        sid = view_source_id(view.name)
        schema = chk.add(sid, view.source, vpath)
        for e in view.entities:
            if e not in svc.spine.entities:
                raise DaedalusError(vpath, f"entities: {e!r} is not an entity of the spine of service {svc.name!r} "
                                    f"(spine entities: {', '.join(svc.spine.entities)})")
            chk.require(sid, e, vpath, "entities")
        by_name = {f.name: f for f in view.features}
        chosen = [by_name[n] for n in ref.features] if ref.features is not None else list(view.features)
        needed: list[str] = []

        def need(col: str) -> None:
            if col not in needed and col not in view.entities:
                needed.append(col)

        derived: list[dict] = []
        udfs: list[Operator] = []
        for f in view.features:  # check every feature of the view, not only the chosen ones
            if f.kind == "column":
                chk.require(sid, f.source_column, vpath, f"feature {f.name!r}: column")
            elif f.kind == "expr":
                _check_expr(view, f.name, f.expr or "", f.dtype, schema, vpath)
            else:
                for c in f.inputs or []:
                    chk.require(sid, c, vpath, f"feature {f.name!r}: inputs")
                origin = _check_udf(f.udf or "", f.name, vpath)
                if origin is not None and origin not in udf_files:
                    udf_files.append(origin)
        for f in chosen:
            out = f"{view.name}__{f.name}"
            columns.append(Column(name=out, type=at.to_str(at.DTYPE_ARROW[f.dtype])))
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
                udfs.append(Operator(
                    name=f"udf.{view.name}.{f.name}", kind="udf", engine="sql_arrow_udf",
                    inputs=[f"pit_join.{view.name}"],
                    params={"view": view.name, "output": out, "dtype": f.dtype, "function": f.udf, "inputs": list(f.inputs or [])},
                    outputs=[Column(name=out, type=at.to_str(at.DTYPE_ARROW[f.dtype]))],
                ))
        ttl_days = lookback_days(parse_duration(view.ttl)) if view.ttl else None
        sources[sid] = SourceSpec(path=view.source.path, timestamp_field=view.source.timestamp_field,
                                  created_timestamp_field=view.source.created_timestamp_field, lookback_days=ttl_days)
        feature_ops.append(Operator(
            name=f"pit_join.{view.name}", kind="pit_join", engine="sql", inputs=["spine", f"source:{sid}"],
            params={"view": view.name, "source": sid, "entities": list(view.entities), "ttl": view.ttl, "columns": needed},
            outputs=[],
        ))
        if derived:
            feature_ops.append(Operator(
                name=f"derive.{view.name}", kind="derive", engine="sql", inputs=[f"pit_join.{view.name}"],
                params={"view": view.name, "features": derived},
                outputs=[Column(name=d["output"], type=at.to_str(at.DTYPE_ARROW[d["dtype"]])) for d in derived],
            ))
        feature_ops.extend(udfs)

    aggs = {a.name: a for a in defs.aggregations.aggregations}
    agg_path = defs.paths.aggregation_config_path
    for name in svc.aggregations:
        agg = aggs[name]
        sid = agg_source_id(agg)
        if agg.source != "spine":
            chk.add(sid, agg.source, agg_path)
        for g in agg.group_by:
            if g not in spine_schema.names:
                raise DaedalusError(agg_path, f"aggregation {name!r}: group_by: {g!r} is not a column of the spine "
                                    f"source {svc.spine.source.path!r}")
            chk.require(sid, g, agg_path, f"aggregation {name!r}: group_by")
        feats: list[dict] = []
        max_days = 0
        for f in agg.features:
            ctype = chk.require(sid, f.column, agg_path, f"aggregation {name!r}: feature {f.name!r}: column") if f.column else None
            if f.function in ("sum", "mean") and not at.is_numeric_or_bool(ctype):
                raise DaedalusError(agg_path, f"aggregation {name!r}: feature {f.name!r}: {f.function} needs a numeric "
                                    f"or bool column, {f.column!r} is {ctype}")
            out_type = _agg_type(f.function, ctype, agg_path, f"aggregation {name!r}: feature {f.name!r}")
            for w in agg.windows_of(f):
                out = f"{name}__{f.name}_{w}"
                max_days = max(max_days, lookback_days(parse_duration(w)))
                feats.append({"output": out, "function": f.function, "column": f.column, "window": w, "k": f.k})
                columns.append(Column(name=out, type=at.to_str(out_type)))
        if agg.source == "spine":
            spine_lookback = max(spine_lookback, max_days)
        else:
            sources[sid] = SourceSpec(path=agg.source.path, timestamp_field=agg.source.timestamp_field,
                                      created_timestamp_field=agg.source.created_timestamp_field, lookback_days=max_days)
        feature_ops.append(Operator(
            name=f"window_agg.{name}", kind="window_agg", engine="sql", inputs=["spine", f"source:{sid}"],
            params={"aggregation": name, "source": sid, "group_by": list(agg.group_by), "features": feats},
            outputs=[Column(name=f["output"], type=c.type) for f, c in zip(feats, columns[-len(feats):])],
        ))

    ops.extend(feature_ops)
    if svc.spine.session_field:
        ops.append(Operator(name="qid", kind="qid", engine="sql", inputs=["spine"],
                            params={"session_field": svc.spine.session_field},
                            outputs=[Column(name="qid", type="int64")]))
    ops.append(Operator(name="write_parts", kind="write_parts", engine="sql",
                        inputs=[o.name for o in ops if o.kind != "pit_join"],
                        params={}, outputs=columns))
    sources = {SPINE: SourceSpec(path=svc.spine.source.path, timestamp_field=svc.spine.source.timestamp_field,
                                 created_timestamp_field=svc.spine.source.created_timestamp_field,
                                 lookback_days=spine_lookback), **sources}
    ops.extend(_embed_operators(defs, columns))
    plan = Plan(service=svc.name, sources=sources, operators=ops)
    return plan, chk.files, udf_files


def _agg_type(function: str, ctype: pa.DataType | None, where: Path, what: str) -> pa.DataType:
    if function in ("count", "count_distinct"):
        return pa.int64()
    assert ctype is not None
    if function == "sum":
        return at.sum_type(ctype)
    if function == "mean":
        return pa.float64()
    base = at.normalize(ctype)
    _type_str(base, where, what)
    return pa.list_(base) if function == "last_k" else base


def store_schema(uri: str, where: Path) -> tuple[pa.Schema, int]:
    """The Lance store's schema and latest version; errors name the config file."""
    if not Path(uri).exists():
        raise DaedalusError(where, f"embedding_store.uri: {uri!r} does not exist (run `daeda demo` for the demo store)")
    import lance

    try:
        ds = lance.dataset(uri)
        return ds.schema, int(ds.version)
    except Exception as e:
        raise DaedalusError(where, f"embedding_store.uri: {uri!r} is not a readable Lance dataset: {e}") from None


def _embed_operators(defs: Definitions, columns: list[Column]) -> list[Operator]:
    """One `embed` operator per embedding of the service (the enrich stage)."""
    if not defs.service.embeddings:
        return []
    where = defs.paths.aggregation_config_path
    store = defs.aggregations.embedding_store
    assert store is not None
    schema, _ = store_schema(store.uri, where)
    for col, want in ((store.key, "key"), (store.vector, "vector")):
        if col not in schema.names:
            raise DaedalusError(where, f"embedding_store.{want}: column {col!r} not found in {store.uri!r} "
                                f"(columns: {', '.join(schema.names)})")
    if schema.field(store.key).type != pa.int64():
        raise DaedalusError(where, f"embedding_store.key: column {store.key!r} of {store.uri!r} is "
                            f"{schema.field(store.key).type}, expected int64")
    vt = schema.field(store.vector).type
    if not (pa.types.is_fixed_size_list(vt) and vt.value_type == pa.float32()):
        raise DaedalusError(where, f"embedding_store.vector: column {store.vector!r} of {store.uri!r} is {vt}, "
                            "expected fixed_size_list<float32>[dim]")
    types = {c.name: c.type for c in columns}
    embs = {e.name: e for e in defs.aggregations.embeddings}
    ops = []
    for name in defs.service.embeddings:
        e = embs[name]
        if e.ids not in types:
            raise DaedalusError(where, f"embedding {name!r}: ids: {e.ids!r} is not a column of the skeleton output "
                                f"of service {defs.service.name!r}")
        if types[e.ids] not in ("int64", "list<int64>"):
            raise DaedalusError(where, f"embedding {name!r}: ids: column {e.ids!r} is {types[e.ids]}, "
                                "expected int64 or list<int64>")
        ops.append(Operator(
            name=f"embed.{name}", kind="embed", engine="pythonic", inputs=["write_parts"],
            params={"embedding": name, "ids": e.ids, "store_uri": store.uri, "key": store.key, "vector": store.vector},
            outputs=[Column(name=name, type=at.to_str(pa.list_(pa.float32(), vt.list_size))),
                     Column(name=f"{name}_count", type="int32")],
        ))
    return ops


def digest_of(plan: Plan, udf_files: list[Path]) -> str:
    """Changes exactly when what a skeleton day computes changes (not with the enrich part)."""
    skeleton = plan.model_copy(update={"operators": plan.skeleton_operators})
    h = hashlib.sha256(skeleton.to_yaml().encode())
    for f in sorted(udf_files):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def enrich_digest_of(plan: Plan) -> str:
    """Changes when the embeddings, the store, or its latest version change."""
    h = hashlib.sha256()
    for op in plan.ops("embed"):
        h.update(op.model_dump_json().encode())
        p = op.typed_params()
        if Path(p.store_uri).exists():
            h.update(str(store_schema(p.store_uri, Path(p.store_uri))[1]).encode())
    return h.hexdigest()[:16]


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically write `text`; leave the file (and its mtime) alone when unchanged."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _check_files_readable(plan: Plan, files: dict[str, SourceFiles], days: list[dt.date]) -> None:
    """Every file the run's days will read has a parquet footer with the columns used.

    Footers only (cheap), so a corrupt or truncated partition fails here with its name
    rather than inside a day job after Snakemake has removed that day's old output.
    """
    lo, hi = min(days), max(days)
    for sid, spec in plan.sources.items():
        sf = files.get(sid)
        if sf is None:
            continue
        if sf.partitioned:
            first = None if spec.lookback_days is None else lo - dt.timedelta(days=spec.lookback_days)
            needed = [f for f, d in zip(sf.files, sf.days) if d is not None and d <= hi and (first is None or d >= first)]
        else:
            needed = list(sf.files)
        reference, ref_file = None, None
        for f, columns in footer_columns(needed):
            if reference is None:
                reference, ref_file = columns, f
                continue
            if spec.timestamp_field not in columns:
                raise DaedalusError(f, f"column {spec.timestamp_field!r} is missing (source {spec.path!r})")
            for name, (kind, type_) in columns.items():
                if name in reference and kind != reference[name][0]:
                    raise DaedalusError(f, f"column {name!r} has type {type_} here but "
                                        f"{reference[name][1]} in {ref_file} (source {spec.path!r})")


def override_path(service: str) -> Path:
    return Path("config/pipelines") / f"{service}.yaml"


def compile_service(service: str, paths: DefinitionPaths, *, output_dir: Path | None = Path("config/pipelines"),
                    output_root: str | None = None, target_date: dt.date | None = None) -> Compiled:
    """Validate the definitions, build the plan, and (unless output_dir is None) write it."""
    defs = load_definitions(service, paths)
    plan, files, udf_files = build_plan(defs)
    generated = plan.to_yaml()
    days = day_range(defs.runtime.start_date, defs.runtime.end_date)
    if target_date is not None:
        if target_date not in days:
            raise DaedalusError("--target-date", f"{target_date} is outside the configured range "
                                f"{days[0]}..{days[-1]} ({paths.runtime_config_path})")
        days = [target_date]
    _check_files_readable(plan, files, days)
    plan_path = (output_dir or Path("config/pipelines")) / f"{service}.generated.yaml"
    effective = plan
    ov = override_path(service)
    if ov.exists():
        effective = load_plan(ov)
        _check_plan_exprs(effective, ov)
        if effective.service != service:
            raise DaedalusError(ov, f"service: {effective.service!r} does not match {service!r}")
        plan_path = ov
        for sid, spec in effective.sources.items():
            if sid not in files:
                files[sid] = SourceFiles.scan(spec.path)
    if output_dir is not None:
        write_if_changed(output_dir / f"{service}.generated.yaml", generated)
        root = output_root or defs.runtime.output_root
        targets = {
            "service": service,
            "plan": plan_path.as_posix(),
            "output_root": root,
            "days": [d.isoformat() for d in days],
            "targets": {"skeleton": [f"{root}/dt={d.isoformat()}" for d in days]},
        }
        write_if_changed(output_dir / f"{service}.targets.yaml", yaml.safe_dump(targets, sort_keys=False))
    return Compiled(defs, effective, plan_path, generated, digest_of(effective, udf_files), days, files)
