"""Definitions -> operator DAG (the plan) and the per-day Snakemake targets.

Compile checks everything against the data it will read (columns, types, expressions,
UDFs), so a bad definition fails here with a one-line error before any output is touched.
Its outputs are byte-for-byte deterministic and written only when their content changes,
so recompiling an unchanged definition never makes Snakemake rerun anything.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from daedalus import arrowtypes as at
from daedalus import functions
from daedalus.definitions import Aggregation, FeatureView, RuntimeConfig, Source
from daedalus.binding import bind_plan
from daedalus.errors import DaedalusError
from daedalus.expressions import ExprError, referenced_columns
from daedalus.loading import DefinitionPaths, Definitions, load_definitions
from daedalus.plan import Column, Operator, Plan, SourceSpec, load_plan, make_op
from daedalus.sources import SourceFiles, SourceSchema, source_schema
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
    warnings: list[str] = field(default_factory=list)  # `daeda: warning:` lines for the user

    def run_files(self, sid: str) -> list[str]:
        """The files of a source that the run's days read (their look-back included)."""
        sf = self.sources.get(sid)
        return [] if sf is None else sf.select(self.days, self.plan.sources[sid].lookback_days)


def view_source_id(view: str) -> str:
    return f"view.{view}"


def agg_source_id(agg: Aggregation) -> str:
    return SPINE if agg.source == "spine" else f"agg.{agg.name}"


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
    return out


class _Checker:
    """Source schemas of the partitions the run reads, read once, with checks that name the
    definition file; remembers which columns the plan reads of each source."""

    def __init__(self, days: list[dt.date], lookbacks: dict[str, int | None]) -> None:
        self.days = days
        self.lookbacks = lookbacks
        self.files: dict[str, SourceFiles] = {}
        self.schemas: dict[str, SourceSchema] = {}
        self.used: dict[str, list[str]] = {}
        self.skipped: list[tuple[str, str]] = []

    def add(self, sid: str, source: Source | SourceSpec, where: Path | str, lookback: int | None) -> SourceSchema:
        files = SourceFiles.scan(source.path)
        if not files.files:
            raise DaedalusError(where, f"source.path: {source.path!r} does not exist or holds no parquet files")
        schema = source_schema(files, files.select(self.days, lookback), self.days, source.timestamp_field)
        self.files[sid], self.schemas[sid], self.used[sid] = files, schema, []
        self.skipped += schema.skipped
        for key, col in (("source.timestamp_field", source.timestamp_field),
                         ("source.created_timestamp_field", source.created_timestamp_field)):
            if col:
                t = self.require(sid, col, where, key)
                if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
                    raise DaedalusError(where, f"{key}: column {col!r} has type {at.to_str(t)}, "
                                        "expected a timestamp or a date")
        return schema

    def has(self, sid: str, column: str) -> bool:
        return column in self.schemas[sid].types

    def require(self, sid: str, column: str, where: Path | str, field: str) -> pa.DataType:
        types = self.schemas[sid].types
        if column not in types:
            hint = difflib.get_close_matches(column, list(types), n=1)
            raise DaedalusError(where, f"{field}: column {column!r} not found in source {self.files[sid].path!r}"
                                + (f" (did you mean {hint[0]!r}?" if hint else " (") + f" columns: {', '.join(types)})")
        t = types[column]
        if t is None:
            raise DaedalusError(where, f"{field}: column {column!r} of source {self.files[sid].path!r} has a type "
                                f"Daedalus cannot read (it reads: {at.TYPE_FORMS})")
        if column not in self.used[sid]:
            self.used[sid].append(column)
        return t

    def columns(self, sid: str) -> dict[str, str]:
        """The columns the plan reads of a source, in the source's order, with their types."""
        types = self.schemas[sid].types
        return {c: at.to_str(t) for c, t in types.items() if c in self.used[sid] and t is not None}

    def spec(self, sid: str, source: Source) -> SourceSpec:
        return SourceSpec(path=source.path, timestamp_field=source.timestamp_field,
                          created_timestamp_field=source.created_timestamp_field,
                          lookback_days=self.lookbacks[sid], columns=self.columns(sid))


def _type_str(t: pa.DataType, where: Path, what: str) -> str:
    try:
        return at.to_str(t)
    except ValueError:
        raise DaedalusError(where, f"{what}: type {t} is not supported") from None


def _check_expr(view: FeatureView, feature_name: str, expr: str, dtype: str, chk: _Checker, sid: str,
                where: Path) -> list[str]:
    try:
        cols = referenced_columns(expr)
    except ExprError as e:
        raise DaedalusError(where, f"feature {feature_name!r}: expr {e}") from None
    for c in cols:
        if not chk.has(sid, c):
            raise DaedalusError(where, f"feature {feature_name!r}: expr reads column {c!r}, not a column of "
                                f"source {view.source.path!r}")
    types = {c: chk.require(sid, c, where, f"feature {feature_name!r}: expr") for c in cols}
    # Bind against an empty table of the source's columns: unknown functions and type
    # errors surface here rather than in a day job.
    con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False})
    con.execute("SET TimeZone='UTC'")
    empty = pa.schema(list(types.items())).empty_table() if cols else pa.table({"__dummy": pa.array([], pa.int8())})
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
        for f in op.params.features:
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


def build_plan(defs: Definitions, days: list[dt.date]) -> tuple[Plan, "_Checker", list[Path]]:
    """The plan of the service for a run over `days`, checked against the partitions those
    days read (and only those: an unreadable partition outside them is never opened)."""
    svc, spath = defs.service, defs.service_path
    chk = _Checker(days, source_lookbacks(defs))
    chk.add(SPINE, svc.spine.source, spath, chk.lookbacks[SPINE])
    spine_types = {c: chk.require(SPINE, c, spath, "spine") for c in svc.spine.columns}

    ops: list[Operator] = []
    columns: list[Column] = [Column(name="event_timestamp", type=at.to_str(at.UTC_TS))]
    spine_cols: list[Column] = []
    for c in svc.spine.columns:
        spine_cols.append(Column(name=c, type=_type_str(spine_types[c], spath, f"spine column {c!r}")))
        if c == svc.spine.session_field:
            spine_cols.append(Column(name="qid", type="int64"))
    sources: dict[str, SourceSpec] = {}
    ops.append(make_op(
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
        chk.add(sid, view.source, vpath, chk.lookbacks[sid])
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
                ctype = chk.require(sid, f.source_column, vpath, f"feature {f.name!r}: column")
                takes = at.readable_as(ctype, f.dtype)
                if takes is not None:
                    raise DaedalusError(vpath, f"feature {f.name!r}: column {f.source_column!r} is {at.to_str(ctype)}, "
                                        f"which is not read as dtype {f.dtype} (a {f.dtype} feature reads {takes} columns)")
            elif f.kind == "expr":
                _check_expr(view, f.name, f.expr or "", f.dtype, chk, sid, vpath)
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
                udfs.append(make_op(
                    name=f"udf.{view.name}.{f.name}", kind="udf", engine="sql_arrow_udf",
                    inputs=[f"pit_join.{view.name}"],
                    params={"view": view.name, "output": out, "dtype": f.dtype, "function": f.udf, "inputs": list(f.inputs or [])},
                    outputs=[Column(name=out, type=at.to_str(at.DTYPE_ARROW[f.dtype]))],
                ))
        sources[sid] = chk.spec(sid, view.source)
        feature_ops.append(make_op(
            name=f"pit_join.{view.name}", kind="pit_join", engine="sql", inputs=["spine", f"source:{sid}"],
            params={"view": view.name, "source": sid, "entities": list(view.entities), "ttl": view.ttl, "columns": needed},
            outputs=[],
        ))
        if derived:
            feature_ops.append(make_op(
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
            chk.add(sid, agg.source, agg_path, chk.lookbacks[sid])
        for g in agg.group_by:
            if not chk.has(SPINE, g):
                raise DaedalusError(agg_path, f"aggregation {name!r}: group_by: {g!r} is not a column of the spine "
                                    f"source {svc.spine.source.path!r}")
            chk.require(sid, g, agg_path, f"aggregation {name!r}: group_by")
        feats: list[dict] = []
        for f in agg.features:
            ctype = chk.require(sid, f.column, agg_path, f"aggregation {name!r}: feature {f.name!r}: column") if f.column else None
            fn = functions.get(f.function)
            if ctype is not None and not fn.accepts(ctype):
                raise DaedalusError(agg_path, f"aggregation {name!r}: feature {f.name!r}: {f.function} needs "
                                    f"{fn.accepts_text}, {f.column!r} is {at.to_str(ctype)}")
            out_type = fn.output(ctype)
            _type_str(out_type, agg_path, f"aggregation {name!r}: feature {f.name!r}")
            for w in agg.windows_of(f):
                out = f"{name}__{f.name}_{w}"
                feats.append({"output": out, "function": f.function, "column": f.column, "window": w, "k": f.k})
                columns.append(Column(name=out, type=at.to_str(out_type)))
        if agg.source != "spine":
            sources[sid] = chk.spec(sid, agg.source)
        feature_ops.append(make_op(
            name=f"window_agg.{name}", kind="window_agg", engine="sql", inputs=["spine", f"source:{sid}"],
            params={"aggregation": name, "source": sid, "group_by": list(agg.group_by), "features": feats},
            outputs=[Column(name=f["output"], type=c.type) for f, c in zip(feats, columns[-len(feats):])],
        ))

    ops.extend(feature_ops)
    if svc.spine.session_field:
        ops.append(make_op(name="qid", kind="qid", engine="sql", inputs=["spine"],
                            params={"session_field": svc.spine.session_field},
                            outputs=[Column(name="qid", type="int64")]))
    ops.append(make_op(name="write_parts", kind="write_parts", engine="sql",
                        inputs=[o.name for o in ops if o.kind != "pit_join"],
                        params={}, outputs=columns))
    # Last: `source: spine` aggregations add spine columns the plan reads.
    sources = {SPINE: chk.spec(SPINE, svc.spine.source), **sources}
    ops.extend(_embed_operators(defs, columns))
    plan = Plan(service=svc.name, sources=sources, operators=ops)
    return plan, chk, udf_files


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
        ops.append(make_op(
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
        p = op.params
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


def bind_sources(plan: Plan, chk: _Checker, where: Path) -> None:
    """Check a hand-edited plan's sources against the files the run reads.

    Each source's `columns` must exist in the data with a type of the same kind (the plan
    keeps its own width or unit); a column list the data no longer matches is a compile
    error here rather than a failure inside a day job.
    """
    for sid, spec in plan.sources.items():
        if sid not in chk.schemas or chk.files[sid].path != spec.path or chk.lookbacks.get(sid) != spec.lookback_days:
            chk.add(sid, spec, where, spec.lookback_days)
        types = chk.schemas[sid].types
        if not spec.columns:
            raise DaedalusError(where, f"sources.{sid}.columns: missing (the columns the plan reads and their types; "
                                "copy them from the generated plan)")
        for c, text in spec.columns.items():
            field = f"sources.{sid}.columns.{c}"
            if c not in types:
                raise DaedalusError(where, f"{field}: column {c!r} not found in source {spec.path!r} "
                                    f"(columns: {', '.join(types)})")
            have, want = types[c], at.from_str(text)
            if have is None or at.kind(have) != at.kind(want):
                shown = at.to_str(have) if have is not None else "a type Daedalus cannot read"
                raise DaedalusError(where, f"{field}: the plan says {text} but source {spec.path!r} holds {shown}; "
                                    "recompile and copy the new types from the generated plan")


def run_days(runtime: RuntimeConfig, runtime_path: Path, target_date: dt.date | None) -> list[dt.date]:
    days = day_range(runtime.start_date, runtime.end_date)
    if target_date is None:
        return days
    if target_date not in days:
        raise DaedalusError("--target-date", f"{target_date} is outside the configured range "
                            f"{days[0]}..{days[-1]} ({runtime_path})")
    return [target_date]


def override_path(service: str) -> Path:
    return Path("config/pipelines") / f"{service}.yaml"


def compile_service(service: str, paths: DefinitionPaths, *, output_dir: Path | None = Path("config/pipelines"),
                    output_root: str | None = None, target_date: dt.date | None = None) -> Compiled:
    """Validate the definitions, build the plan, and (unless output_dir is None) write it."""
    defs = load_definitions(service, paths)
    days = run_days(defs.runtime, paths.runtime_config_path, target_date)
    plan, chk, udf_files = build_plan(defs, days)
    generated = plan.to_yaml()
    plan_path = (output_dir or Path("config/pipelines")) / f"{service}.generated.yaml"
    effective = plan
    ov = override_path(service)
    if ov.exists():
        effective = load_plan(ov)
        _check_plan_exprs(effective, ov)
        if effective.service != service:
            raise DaedalusError(ov, f"service: {effective.service!r} does not match {service!r}")
        plan_path = ov
        bind_sources(effective, chk, ov)
    digest = digest_of(effective, udf_files)
    bind_plan(effective, plan_path, days[0], key=digest)
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
    return Compiled(defs, effective, plan_path, generated, digest, days, chk.files, warnings=_skipped_warning(chk))


def _skipped_warning(chk: _Checker) -> list[str]:
    """At most one line for unreadable files the run does not need (never an error)."""
    if not chk.skipped:
        return []
    f, problem = chk.skipped[0]
    more = f" and {len(chk.skipped) - 1} more" if len(chk.skipped) > 1 else ""
    return [f"{f}: skipped{more} while looking for a schema outside the run's days: {problem}"]
