"""Typed models of every YAML format (contract sections 2-6).

These models are the single source of truth for parsing, defaults and validation; the
messages of their validators are what users read (prefixed with the file and field).
Cross-file checks (unknown names, missing columns) live in `daedalus.loading`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from daedalus import functions
from daedalus.sizes import check_size, size_mb
from daedalus.timeutil import IDENTIFIER, parse_duration, parse_month_or_day

DTYPES = ("bool", "int32", "int64", "float32", "float64", "string", "date", "timestamp")
FUNCTIONS = functions.NAMES


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
Function = Literal[functions.NAMES]  # type: ignore[valid-type]  # the registry's names (daedalus.functions)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} {n!r}")
        seen.add(n)


class Source(Model):
    path: str = Field(
        min_length=1,
        description="A parquet file, a directory (read recursively; `dt=YYYY-MM-DD/` partitions are read only for the days that need them) or a glob; relative to the working directory.",
    )
    timestamp_field: str = Field(
        min_length=1, description="The event time column (any parquet timestamp type or date; naive means UTC)."
    )
    created_timestamp_field: str | None = Field(
        default=None, description="Optional tie-breaker between rows with equal event times (the later created wins)."
    )


class Feature(Model):
    name: Identifier = Field(description="Feature name (identifier).")
    dtype: DType = Field(description="Output type (`date` is Arrow date32, `timestamp` is timestamp[us, tz=UTC]).")
    column: str | None = Field(default=None, description="The source column, when it is not named like the feature.")
    expr: str | None = Field(
        default=None, description="A scalar DuckDB SQL expression over the source columns (engine `sql`)."
    )
    udf: str | None = Field(
        default=None,
        description="`module:function` importable from the working directory, called with pyarrow arrays (engine `sql_arrow_udf`).",
    )
    inputs: list[str] | None = Field(default=None, description="The source columns passed, in order, to the `udf`.")

    @model_validator(mode="after")
    def _one_kind(self) -> Feature:
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
    name: Identifier = Field(
        description="The view's name; must equal the file stem. Output columns are `<view>__<feature>`."
    )
    entities: list[Identifier] = Field(
        min_length=1, description="Join keys; each must be a spine column of the same name."
    )
    source: Source = Field(description="Where the feature rows are.")
    ttl: Duration | None = Field(
        default=None, description="How old a feature row may be at the spine row's time (inclusive); absent: any age."
    )
    features: list[Feature] = Field(
        min_length=1, description="The view's features, in output order. Names are unique within the view."
    )

    @model_validator(mode="after")
    def _names(self) -> FeatureView:
        _unique([f.name for f in self.features], "feature")
        _unique(self.entities, "entity")
        return self


class FeatureRef(Model):
    view: Identifier = Field(description="The view's name.")
    features: list[Identifier] | None = Field(default=None, description="The subset of its features, in output order.")

    @model_validator(mode="after")
    def _names(self) -> FeatureRef:
        if self.features is not None:
            if not self.features:
                raise ValueError(f"view {self.view!r}: 'features' is empty")
            _unique(self.features, "feature")
        return self


class Spine(Model):
    source: Source = Field(description="The feed's source.")
    entities: list[Identifier] = Field(
        min_length=1, description="Entity columns (kept in the output, joined on by views and aggregations)."
    )
    session_field: str | None = Field(
        default=None, description="Optional session column: turns on `qid` and `qid_map.parquet`."
    )
    labels: list[str] = Field(default_factory=list, description="Label columns, copied to the output.")
    passthrough: list[str] = Field(default_factory=list, description="Other spine columns copied to the output.")

    @model_validator(mode="after")
    def _names(self) -> Spine:
        cols = (
            list(self.entities) + ([self.session_field] if self.session_field else []) + self.labels + self.passthrough
        )
        _unique(cols, "spine column")
        reserved = {"event_timestamp", "qid"}
        for c in cols:
            if c in reserved:
                raise ValueError(f"spine column {c!r} is reserved for the output")
        return self

    @property
    def columns(self) -> list[str]:
        return (
            list(self.entities) + ([self.session_field] if self.session_field else []) + self.labels + self.passthrough
        )


class FeatureService(Model):
    name: Identifier = Field(description="The service's name; must equal the file stem.")
    spine: Spine = Field(description="The feed: one output row per spine row.")
    features: list[Identifier | FeatureRef] = Field(
        default_factory=list,
        description="Views: a name (every feature of the view) or `{view, features}` (a subset, in the order listed).",
    )
    aggregations: list[Identifier] = Field(
        default_factory=list, description="Names of aggregations from aggregations.yaml, in output order."
    )
    embeddings: list[Identifier] = Field(
        default_factory=list, description="Names of embeddings from aggregations.yaml (the enrich stage)."
    )
    label_windows: list[Identifier] = Field(
        default_factory=list,
        description=(
            "Names of aggregations from aggregations.yaml computed forward, as labels: for a row at `t`, "
            "the events in `(t, t + w]`. Output columns `<aggregation>__<feature>_<window>`, after the "
            "aggregation features; a day is written only once its label source holds the day's whole "
            "horizon (else it is `waiting`)."
        ),
    )

    @model_validator(mode="after")
    def _names(self) -> FeatureService:
        _unique([self.ref(f).view for f in self.features], "view")
        _unique(self.aggregations, "aggregation")
        _unique(self.embeddings, "embedding")
        _unique(self.label_windows, "label window")
        for name in self.label_windows:
            if name in self.aggregations:
                raise ValueError(
                    f"label_windows: {name!r} is also in aggregations: an aggregation is a feature "
                    "(strictly before the row) or a label (after it), not both"
                )
        return self

    @staticmethod
    def ref(item: str | FeatureRef) -> FeatureRef:
        return item if isinstance(item, FeatureRef) else FeatureRef(view=item)

    @property
    def refs(self) -> list[FeatureRef]:
        return [self.ref(f) for f in self.features]


class AggFeature(Model):
    name: Identifier = Field(description="Feature name (identifier).")
    function: Function = Field(description="What to compute over the window (see docs/concepts.md for empty windows).")
    column: str | None = Field(
        default=None, description="The aggregated column (not needed by `count`, which then counts events)."
    )
    k: int | None = Field(
        default=None,
        ge=1,
        description="How many values `last_k`, `first_k`, `last_distinct_k`, `top_k`, `bottom_k` keep.",
    )
    q: float | None = Field(default=None, ge=0, le=1, description="The quantile of `approx_percentile`, 0..1.")
    half_life: Duration | None = Field(default=None, description="The half-life of `exp_decay_sum`, a duration.")
    top_n: int | None = Field(
        default=None, ge=1, description="`histogram`: keep only the `top_n` most frequent values (ties: smaller key)."
    )
    where: str | None = Field(
        default=None,
        min_length=1,
        description="A filter: one scalar expression over the source's columns (the allow-list of `expr`); "
        "only events for which it is true (null counts as false) enter the function.",
    )
    bucket_by: str | None = Field(
        default=None,
        description="A string, integer or bool column of the source: the feature becomes a map from each "
        "value (as text) to the function over that value's events (only buckets with events appear).",
    )
    buckets: list[str | int | bool] | None = Field(
        default=None,
        description="With `bucket_by`: fixed buckets instead of a map, one column per bucket, "
        "`<aggregation>__<feature>_<bucket>_<window>` (the empty-window value where a bucket has no events).",
    )
    windows: list[Duration] | None = Field(
        default=None, description="Windows of this feature, overriding the aggregation's."
    )

    @property
    def bucket_texts(self) -> list[str]:
        """The fixed buckets as the text the source's values are matched by."""
        return [bucket_text(b) for b in self.buckets or []]

    @model_validator(mode="after")
    def _args(self) -> AggFeature:
        fn = functions.get(self.function)
        if fn.column == "required" and self.column is None:
            raise ValueError(f"feature {self.name!r}: function {self.function} needs a 'column'")
        for param in functions.PARAMS:
            takers = [f.name for f in functions.FUNCTIONS.values() if param in f.params + f.optional]
            if param in fn.params and getattr(self, param) is None:
                raise ValueError(f"feature {self.name!r}: function {self.function} needs {param!r}")
            if param not in fn.params + fn.optional and getattr(self, param) is not None:
                raise ValueError(f"feature {self.name!r}: {param!r} is only for {', '.join(takers)}")
        if self.windows is not None:
            if not self.windows:
                raise ValueError(f"feature {self.name!r}: 'windows' is empty")
            _unique(self.windows, "window")
        if self.buckets is not None:
            if self.bucket_by is None:
                raise ValueError(f"feature {self.name!r}: 'buckets' needs 'bucket_by'")
            if not self.buckets:
                raise ValueError(f"feature {self.name!r}: 'buckets' is empty")
            _unique(self.bucket_texts, "bucket")
            for b in self.bucket_texts:
                if not BUCKET_NAME.match(b):
                    raise ValueError(
                        f"feature {self.name!r}: bucket {b!r} cannot be part of a column name "
                        "(letters, digits and _ only; use a map: bucket_by without buckets)"
                    )
        return self


BUCKET_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def bucket_text(value: str | int | bool) -> str:
    """A bucket value as DuckDB's cast to VARCHAR writes it (`true`, `42`, `sports`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Aggregation(Model):
    name: Identifier = Field(description="Output columns are `<aggregation>__<feature>_<window>`.")
    source: Literal["spine"] | Source = Field(
        description="`spine` (the feed itself, look-back included) or a source mapping."
    )
    group_by: list[Identifier] = Field(
        min_length=1, description="Group columns; each must be a spine column of the same name."
    )
    windows: list[Duration] | None = Field(
        default=None,
        description="Default windows of its features; a window covers `[t - w, t)`, strictly before the row.",
    )
    features: list[AggFeature] = Field(min_length=1, description="The aggregated features.")

    @model_validator(mode="after")
    def _windows(self) -> Aggregation:
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
    uri: str = Field(min_length=1, description="Path of the Lance dataset.")
    key: str = Field(min_length=1, description="Its int64 key column.")
    vector: str = Field(min_length=1, description="Its `fixed_size_list<float32>[dim]` vector column.")


class Embedding(Model):
    name: Identifier = Field(description="Output column (`<name>` vector and `<name>_count`).")
    ids: str = Field(
        min_length=1,
        description="A skeleton column of ids: scalar (that id's vector) or a list (the mean of the found vectors).",
    )


class AggregationsConfig(Model):
    aggregations: list[Aggregation] = Field(default_factory=list, description="Rolling window aggregations.")
    embedding_store: EmbeddingStore | None = Field(
        default=None, description="The Lance dataset the embeddings are looked up in."
    )
    embeddings: list[Embedding] = Field(
        default_factory=list, description="Embedding columns appended by the enrich stage."
    )

    @model_validator(mode="after")
    def _names(self) -> AggregationsConfig:
        _unique([a.name for a in self.aggregations], "aggregation")
        _unique([e.name for e in self.embeddings], "embedding")
        return self


class DuckDBSettings(Model):
    threads: int = Field(default=2, ge=1, description="DuckDB threads (shared by the day workers).")
    memory_limit: Annotated[str, AfterValidator(check_size)] = Field(
        default="4GB", description="DuckDB memory limit (shared by the day workers), e.g. `4GB`."
    )
    temp_directory: str = Field(default=".daedalus_tmp/duckdb", description="Where DuckDB spills.")


class SkeletonSettings(Model):
    chunk_rows: int = Field(default=500_000, ge=1, description="Maximum rows per `part-N-0.parquet`.")
    worker_day_rows: int = Field(
        default=2_000_000,
        ge=0,
        description="Skeleton days with at most this many spine rows run in the run's warm worker under `daeda pipeline train` (no process start or imports per job; DuckDB's memory limit bounds the job as it does in a process of its own). `small_day_rows: 0` still makes every day big.",
    )
    incremental: bool = Field(
        default=True,
        description="Day jobs read per-source-day state (window partials per partition, point-in-time snapshots; made once per partition as jobs of their own, under `<root>/.daedalus/state/`) instead of re-reading their raw look-back. The values are the same either way; `false` reads the raw look-back in every day job.",
    )


class EnrichSettings(Model):
    shard_rows: int = Field(default=200_000, ge=1, description="Maximum rows per enriched shard.")
    batch_rows: int = Field(default=131_072, ge=1, description="Rows per Ray Data batch.")


class RaySettings(Model):
    address: str | None = Field(
        default=None, description="An existing Ray cluster (or set `RAY_ADDRESS`); null starts a local one per run."
    )
    num_cpus: int | None = Field(default=None, ge=1, description="Logical CPUs of a local Ray; null: all.")
    object_store_memory: Annotated[str | None, AfterValidator(check_size)] = Field(
        default=None, description="Object store size of a local Ray, e.g. `2GB`; null: min(2 GB, 20% RAM)."
    )

    @property
    def object_store_bytes(self) -> int | None:
        """object_store_memory in bytes (None: Ray's default as Daedalus sets it)."""
        return size_mb(self.object_store_memory) * 1024 * 1024 if self.object_store_memory else None


class RuntimeConfig(Model):
    feed_start: str = Field(description="First day, `YYYY-MM` (its first day) or `YYYY-MM-DD`; inclusive.")
    feed_end: str = Field(description="Last day, `YYYY-MM` (its last day) or `YYYY-MM-DD`; inclusive.")
    output_root: str = Field(
        default="data/training_output",
        description="Skeleton days go to `<output_root>/dt=D/`, enriched days to `<output_root>_enriched/dt=D/`.",
    )
    day_workers: int = Field(
        default=1, ge=1, description="Days computed at once (DuckDB threads and memory are shared among them)."
    )
    small_day_rows: int = Field(
        default=200_000,
        ge=0,
        description="Days with at most this many spine rows are small: under `daeda pipeline train` their jobs run in the run's warm worker process (no process start or imports per job), and their enrich step pools embeddings without Ray Data. Bigger days run each in a process of their own, enrich through Ray Data. Both give the same bytes; 0 makes every day big.",
    )
    skeleton: SkeletonSettings = Field(default=SkeletonSettings(), description="Skeleton stage settings.")
    enrich: EnrichSettings = Field(default=EnrichSettings(), description="Enrich stage settings.")
    duckdb: DuckDBSettings = Field(default=DuckDBSettings(), description="DuckDB settings of the skeleton stage.")
    ray: RaySettings = Field(default=RaySettings(), description="Ray settings of the enrich stage.")

    @field_validator("feed_start", "feed_end", mode="before")
    @classmethod
    def _date_text(cls, v: object) -> str:
        # YAML reads 2026-04-01 as a date; keep the text form the contract speaks of.
        return v.isoformat() if isinstance(v, dt.date) else str(v)

    @model_validator(mode="after")
    def _range(self) -> RuntimeConfig:
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
