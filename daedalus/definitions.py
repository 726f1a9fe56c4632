"""Typed models of every YAML format (contract sections 2-6).

These models are the single source of truth for parsing, defaults and validation; the
messages of their validators are what users read (prefixed with the file and field).
Cross-file checks (unknown names, missing columns) live in `daedalus.loading`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from daedalus.sizes import check_size, size_mb
from daedalus.timeutil import IDENTIFIER, parse_duration, parse_month_or_day

DTYPES = ("bool", "int32", "int64", "float32", "float64", "string", "date", "timestamp")
FUNCTIONS = ("count", "count_distinct", "sum", "mean", "min", "max", "last", "last_k")


def _identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"invalid identifier {value!r}: must match [a-z_][a-z0-9_]*")
    return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
Duration = Annotated[str, AfterValidator(_duration)]
DType = Literal["bool", "int32", "int64", "float32", "float64", "string", "date", "timestamp"]
Function = Literal["count", "count_distinct", "sum", "mean", "min", "max", "last", "last_k"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} {n!r}")
        seen.add(n)


class Source(Model):
    path: str = Field(min_length=1)
    timestamp_field: str = Field(min_length=1)
    created_timestamp_field: str | None = None


class Feature(Model):
    name: Identifier
    dtype: DType
    column: str | None = None
    expr: str | None = None
    udf: str | None = None
    inputs: list[str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Feature":
        kinds = [k for k in ("column", "expr", "udf") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"feature {self.name!r}: set only one of column, expr, udf (got {', '.join(kinds)})")
        if self.udf is not None:
            if ":" not in self.udf or not all(self.udf.split(":", 1)):
                raise ValueError(f"feature {self.name!r}: udf must be 'module:function', got {self.udf!r}")
            if not self.inputs:
                raise ValueError(f"feature {self.name!r}: a udf feature needs 'inputs' (source columns)")
        elif self.inputs is not None:
            raise ValueError(f"feature {self.name!r}: 'inputs' is only for udf features")
        if self.expr is not None and not self.expr.strip():
            raise ValueError(f"feature {self.name!r}: empty expr")
        return self

    @property
    def kind(self) -> Literal["column", "expr", "udf"]:
        return "expr" if self.expr is not None else "udf" if self.udf is not None else "column"

    @property
    def source_column(self) -> str:
        return self.column or self.name


class FeatureView(Model):
    name: Identifier
    entities: list[Identifier] = Field(min_length=1)
    source: Source
    ttl: Duration | None = None
    features: list[Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> "FeatureView":
        _unique([f.name for f in self.features], "feature")
        _unique(self.entities, "entity")
        return self


class FeatureRef(Model):
    view: Identifier
    features: list[Identifier] | None = None

    @model_validator(mode="after")
    def _names(self) -> "FeatureRef":
        if self.features is not None:
            if not self.features:
                raise ValueError(f"view {self.view!r}: 'features' is empty")
            _unique(self.features, "feature")
        return self


class Spine(Model):
    source: Source
    entities: list[Identifier] = Field(min_length=1)
    session_field: str | None = None
    labels: list[str] = Field(default_factory=list)
    passthrough: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> "Spine":
        cols = list(self.entities) + ([self.session_field] if self.session_field else []) + self.labels + self.passthrough
        _unique(cols, "spine column")
        reserved = {"event_timestamp", "qid"}
        for c in cols:
            if c in reserved:
                raise ValueError(f"spine column {c!r} is reserved for the output")
        return self

    @property
    def columns(self) -> list[str]:
        return list(self.entities) + ([self.session_field] if self.session_field else []) + self.labels + self.passthrough


class FeatureService(Model):
    name: Identifier
    spine: Spine
    features: list[Identifier | FeatureRef] = Field(default_factory=list)
    aggregations: list[Identifier] = Field(default_factory=list)
    embeddings: list[Identifier] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> "FeatureService":
        _unique([self.ref(f).view for f in self.features], "view")
        _unique(self.aggregations, "aggregation")
        _unique(self.embeddings, "embedding")
        return self

    @staticmethod
    def ref(item: str | FeatureRef) -> FeatureRef:
        return item if isinstance(item, FeatureRef) else FeatureRef(view=item)

    @property
    def refs(self) -> list[FeatureRef]:
        return [self.ref(f) for f in self.features]


class AggFeature(Model):
    name: Identifier
    function: Function
    column: str | None = None
    k: int | None = Field(default=None, ge=1)
    windows: list[Duration] | None = None

    @model_validator(mode="after")
    def _args(self) -> "AggFeature":
        if self.function not in ("count",) and self.column is None:
            raise ValueError(f"feature {self.name!r}: function {self.function} needs a 'column'")
        if self.function == "last_k" and self.k is None:
            raise ValueError(f"feature {self.name!r}: function last_k needs 'k'")
        if self.function != "last_k" and self.k is not None:
            raise ValueError(f"feature {self.name!r}: 'k' is only for last_k")
        if self.windows is not None:
            if not self.windows:
                raise ValueError(f"feature {self.name!r}: 'windows' is empty")
            _unique(self.windows, "window")
        return self


class Aggregation(Model):
    name: Identifier
    source: Literal["spine"] | Source
    group_by: list[Identifier] = Field(min_length=1)
    windows: list[Duration] | None = None
    features: list[AggFeature] = Field(min_length=1)

    @model_validator(mode="after")
    def _windows(self) -> "Aggregation":
        _unique([f.name for f in self.features], "feature")
        _unique(self.group_by, "group_by column")
        if self.windows is not None:
            _unique(self.windows, "window")
        for f in self.features:
            if f.windows is None and not self.windows:
                raise ValueError(f"feature {f.name!r}: no windows (set 'windows' on the aggregation or the feature)")
        return self

    def windows_of(self, feature: AggFeature) -> list[str]:
        return list(feature.windows if feature.windows is not None else self.windows or [])


class EmbeddingStore(Model):
    uri: str = Field(min_length=1)
    key: str = Field(min_length=1)
    vector: str = Field(min_length=1)


class Embedding(Model):
    name: Identifier
    ids: str = Field(min_length=1)


class AggregationsConfig(Model):
    aggregations: list[Aggregation] = Field(default_factory=list)
    embedding_store: EmbeddingStore | None = None
    embeddings: list[Embedding] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> "AggregationsConfig":
        _unique([a.name for a in self.aggregations], "aggregation")
        _unique([e.name for e in self.embeddings], "embedding")
        return self


class DuckDBSettings(Model):
    threads: int = Field(default=2, ge=1)
    memory_limit: Annotated[str, AfterValidator(check_size)] = "4GB"
    temp_directory: str = ".daedalus_tmp/duckdb"


class SkeletonSettings(Model):
    chunk_rows: int = Field(default=500_000, ge=1)


class EnrichSettings(Model):
    shard_rows: int = Field(default=200_000, ge=1)
    batch_rows: int = Field(default=131_072, ge=1)


class RaySettings(Model):
    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    object_store_memory: Annotated[str | None, AfterValidator(check_size)] = None

    @property
    def object_store_bytes(self) -> int | None:
        """object_store_memory in bytes (None: Ray's default as Daedalus sets it)."""
        return size_mb(self.object_store_memory) * 1024 * 1024 if self.object_store_memory else None


class RuntimeConfig(Model):
    feed_start: str
    feed_end: str
    output_root: str = "data/training_output"
    day_workers: int = Field(default=1, ge=1)
    small_day_rows: int = Field(default=200_000, ge=0)
    skeleton: SkeletonSettings = SkeletonSettings()
    enrich: EnrichSettings = EnrichSettings()
    duckdb: DuckDBSettings = DuckDBSettings()
    ray: RaySettings = RaySettings()

    @field_validator("feed_start", "feed_end", mode="before")
    @classmethod
    def _date_text(cls, v: object) -> str:
        # YAML reads 2026-04-01 as a date; keep the text form the contract speaks of.
        return v.isoformat() if isinstance(v, dt.date) else str(v)

    @model_validator(mode="after")
    def _range(self) -> "RuntimeConfig":
        try:
            start = parse_month_or_day(self.feed_start, end=False)
        except ValueError as e:
            raise ValueError(f"feed_start: {e}") from None
        try:
            end = parse_month_or_day(self.feed_end, end=True)
        except ValueError as e:
            raise ValueError(f"feed_end: {e}") from None
        if end < start:
            raise ValueError(f"feed_end {self.feed_end} is before feed_start {self.feed_start}")
        return self

    @property
    def start_date(self) -> dt.date:
        return parse_month_or_day(self.feed_start, end=False)

    @property
    def end_date(self) -> dt.date:
        return parse_month_or_day(self.feed_end, end=True)
