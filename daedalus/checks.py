"""Checks of definitions and plans against the data a run reads.

`SourceChecker` reads the footers of the partitions the run's days need (only those) and
checks columns and types against them, naming the definition file; `bind_sources` checks a
hand-edited plan's source columns; expressions, UDFs and the embedding store are checked
here too. Every failure is one `DaedalusError` naming the file, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import sys
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from daedalus import arrowtypes as at
from daedalus.atomic import write_bytes
from daedalus.definitions import FeatureView, Source
from daedalus.errors import DaedalusError
from daedalus.expressions import ExprError, referenced_columns
from daedalus.plan import Plan, SourceSpec
from daedalus.sources import SourceFiles, SourceSchema, source_schema
from daedalus.udfs import import_udf


class SourceChecker:
    """Source schemas of the partitions the run reads, read once, with checks that name the
    definition file; remembers which columns the plan reads of each source."""

    def __init__(
        self, days: list[dt.date], lookbacks: dict[str, int | None], lookaheads: dict[str, int] | None = None
    ) -> None:
        self.days = days
        self.lookbacks = lookbacks
        self.lookaheads = dict(lookaheads or {})  # partitions after a day that label windows read
        self.files: dict[str, SourceFiles] = {}
        self.schemas: dict[str, SourceSchema] = {}
        self.used: dict[str, list[str]] = {}
        self.skipped: list[tuple[str, str]] = []

    def add(
        self,
        sid: str,
        source: Source | SourceSpec,
        where: Path | str,
        lookback: int | None,
        lookahead: int | None = None,
    ) -> SourceSchema:
        files = SourceFiles.scan(source.path)
        if not files.files:
            raise DaedalusError(where, f"source.path: {source.path!r} does not exist or holds no parquet files")
        ahead = self.lookaheads.get(sid, 0) if lookahead is None else lookahead
        self.lookaheads[sid] = ahead
        schema = source_schema(files, files.select(self.days, lookback, ahead), self.days, source.timestamp_field)
        self.files[sid], self.schemas[sid], self.used[sid] = files, schema, []
        self.skipped += schema.skipped
        for key, col in (
            ("source.timestamp_field", source.timestamp_field),
            ("source.created_timestamp_field", source.created_timestamp_field),
        ):
            if col:
                t = self.require(sid, col, where, key)
                if not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
                    raise DaedalusError(
                        where, f"{key}: column {col!r} has type {at.to_str(t)}, expected a timestamp or a date"
                    )
        return schema

    def has(self, sid: str, column: str) -> bool:
        return column in self.schemas[sid].types

    def require(self, sid: str, column: str, where: Path | str, field: str) -> pa.DataType:
        types = self.schemas[sid].types
        if column not in types:
            hint = difflib.get_close_matches(column, list(types), n=1)
            raise DaedalusError(
                where,
                f"{field}: column {column!r} not found in source {self.files[sid].path!r}"
                + (f" (did you mean {hint[0]!r}?" if hint else " (")
                + f" columns: {', '.join(types)})",
            )
        t = types[column]
        if t is None:
            raise DaedalusError(
                where,
                f"{field}: column {column!r} of source {self.files[sid].path!r} has a type "
                f"Daedalus cannot read (it reads: {at.TYPE_FORMS})",
            )
        if column not in self.used[sid]:
            self.used[sid].append(column)
        return t

    def columns(self, sid: str) -> dict[str, str]:
        """The columns the plan reads of a source, in the source's order, with their types."""
        types = self.schemas[sid].types
        return {c: at.to_str(t) for c, t in types.items() if c in self.used[sid] and t is not None}

    def spec(self, sid: str, source: Source) -> SourceSpec:
        return SourceSpec(
            path=source.path,
            timestamp_field=source.timestamp_field,
            created_timestamp_field=source.created_timestamp_field,
            lookback_days=self.lookbacks[sid],
            columns=self.columns(sid),
        )


def type_str(t: pa.DataType, where: Path, what: str) -> str:
    try:
        return at.to_str(t)
    except ValueError:
        raise DaedalusError(where, f"{what}: type {t} is not supported") from None


def check_expr(
    view: FeatureView, feature_name: str, expr: str, dtype: str, chk: SourceChecker, sid: str, where: Path
) -> list[str]:
    return check_scalar(
        expr, at.DTYPE_DUCKDB[dtype], f"feature {feature_name!r}: expr", view.source.path, chk, sid, where
    )


def check_scalar(
    expr: str, cast_to: str, what: str, source_path: str, chk: SourceChecker, sid: str, where: Path
) -> list[str]:
    """One scalar expression over a source's columns (the allow-list of daedalus.expressions),
    bound by DuckDB and cast to `cast_to`: the columns it reads, or a one-line error."""
    try:
        cols = referenced_columns(expr)
    except ExprError as e:
        raise DaedalusError(where, f"{what} {e}") from None
    for c in cols:
        if not chk.has(sid, c):
            raise DaedalusError(where, f"{what} reads column {c!r}, not a column of source {source_path!r}")
    types = {c: chk.require(sid, c, where, what) for c in cols}
    # Bind against an empty table of the source's columns: unknown functions and type
    # errors surface here rather than in a day job.
    con = _bind_con()
    # Table.from_batches, not Schema.empty_table: the latter imports pandas (0.2 s a process).
    schema = pa.schema(list(types.items())) if cols else pa.schema([("__dummy", pa.int8())])
    con.register("__source", pa.Table.from_batches([], schema))
    try:
        con.execute(f"DESCRIBE SELECT CAST(({expr}) AS {cast_to}) FROM __source").fetchall()
    except duckdb.Error as e:
        first = str(e).splitlines()[0]
        raise DaedalusError(where, f"{what} does not compile: {first}") from None
    finally:
        con.unregister("__source")
    return cols


_local = threading.local()


def _bind_con() -> duckdb.DuckDBPyConnection:
    """This thread's connection for binding expressions (opening one per check costs more
    than the check)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False})
        con.execute("SET TimeZone='UTC'")
    return con


def check_plan_exprs(plan: Plan, where: Path) -> None:
    """A hand-edited plan's expressions pass the same check as a view's."""
    for i, op in enumerate(plan.operators):
        if op.kind not in ("derive", "window_agg"):
            continue
        for f in op.params.features:
            field = "expr" if op.kind == "derive" else "where"
            text = getattr(f, field)
            if text is None:
                continue
            try:
                referenced_columns(text)
            except ExprError as e:
                raise DaedalusError(where, f"operators[{i}] ({op.name}): feature {f.output!r}: {field} {e}") from None


def check_udf(function: str, feature_name: str, where: Path) -> Path | None:
    try:
        fn = import_udf(function)
    except Exception as e:
        raise DaedalusError(where, f"feature {feature_name!r}: udf {function!r} cannot be loaded: {e}") from None
    origin = getattr(sys.modules.get(fn.__module__), "__file__", None)
    return Path(origin) if origin else None


def store_schema(uri: str, where: Path) -> tuple[pa.Schema, int]:
    """The Lance store's schema and latest version; errors name the config file."""
    if not Path(uri).exists():
        raise DaedalusError(where, f"embedding_store.uri: {uri!r} does not exist (run `daeda demo` for the demo store)")
    # Opening a dataset imports lance (0.3 s a process): the schema and version are kept
    # under a key of the store's manifests, which every commit adds to.
    key = store_key(Path(uri))
    cached = STORE_SCHEMAS / f"{key}.arrow" if key else None
    if cached is not None and cached.exists():
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(cached.read_bytes()))
            meta = dict(schema.metadata or {})
            version = int(meta.pop(b"daedalus.store_version"))
            return schema.with_metadata(meta) if meta else schema.remove_metadata(), version
        except (OSError, KeyError, ValueError, pa.ArrowInvalid):
            pass  # unreadable: open the store
    import lance

    try:
        ds = lance.dataset(uri)
        schema, version = ds.schema, int(ds.version)
    except Exception as e:
        raise DaedalusError(where, f"embedding_store.uri: {uri!r} is not a readable Lance dataset: {e}") from None
    if cached is not None:
        meta = {**(schema.metadata or {}), b"daedalus.store_version": str(version).encode()}
        try:
            write_bytes(cached, schema.with_metadata(meta).serialize().to_pybytes())
        except OSError:
            pass  # a read-only working directory only loses the cache
    return schema, version


STORE_SCHEMAS = Path(".daedalus_tmp/store_schemas")


def store_key(store: Path) -> str | None:
    """A digest of the store's manifest files (names, sizes, mtimes); None if not a local store."""
    try:
        entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(store / "_versions"))
    except OSError:
        return None
    if not entries:
        return None
    return hashlib.sha256(repr((str(store.resolve()), entries)).encode()).hexdigest()[:24]


def bind_sources(plan: Plan, chk: SourceChecker, where: Path) -> None:
    """Check a hand-edited plan's sources against the files the run reads.

    Each source's `columns` must exist in the data with a type of the same kind (the plan
    keeps its own width or unit); a column list the data no longer matches is a compile
    error here rather than a failure inside a day job.
    """
    for sid, spec in plan.sources.items():
        ahead = plan.lookahead_days(sid)
        if (
            sid not in chk.schemas
            or chk.files[sid].path != spec.path
            or chk.lookbacks.get(sid) != spec.lookback_days
            or chk.lookaheads.get(sid, 0) != ahead
        ):
            chk.add(sid, spec, where, spec.lookback_days, ahead)
        types = chk.schemas[sid].types
        if not spec.columns:
            raise DaedalusError(
                where,
                f"sources.{sid}.columns: missing (the columns the plan reads and their types; "
                "copy them from the generated plan)",
            )
        for c, text in spec.columns.items():
            field = f"sources.{sid}.columns.{c}"
            if c not in types:
                raise DaedalusError(
                    where, f"{field}: column {c!r} not found in source {spec.path!r} (columns: {', '.join(types)})"
                )
            have, want = types[c], at.from_str(text)
            if have is None or at.kind(have) != at.kind(want):
                shown = at.to_str(have) if have is not None else "a type Daedalus cannot read"
                raise DaedalusError(
                    where,
                    f"{field}: the plan says {text} but source {spec.path!r} holds {shown}; "
                    "recompile and copy the new types from the generated plan",
                )


def skipped_warning(chk: SourceChecker) -> list[str]:
    """At most one line for unreadable files the run does not need (never an error)."""
    if not chk.skipped:
        return []
    f, problem = chk.skipped[0]
    more = f" and {len(chk.skipped) - 1} more" if len(chk.skipped) > 1 else ""
    return [f"{f}: skipped{more} while looking for a schema outside the run's days: {problem}"]
