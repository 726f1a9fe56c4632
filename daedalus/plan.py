"""The compiled operator DAG (`config/pipelines/<service>.generated.yaml`).

A plan holds everything a day job needs: the stage runs the plan, not the definitions, so a
hand-edited `<service>.yaml` (engines, parameters) is what runs. Each operator kind has a
typed parameter model and a set of engines that implement it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)

from daedalus import arrowtypes as at
from daedalus import functions
from daedalus.definitions import DType, Function
from daedalus.errors import DaedalusError
from daedalus.loading import format_validation_error, read_yaml
from daedalus.timeutil import lookback_days, parse_duration

Engine = Literal["sql", "sql_arrow_udf", "pythonic"]
# 2: sources carry the columns the plan reads, with their types.
PLAN_FORMAT = 2


def _arrow_type(text: str) -> str:
    try:
        at.from_str(text)
    except ValueError:
        raise ValueError(f"unknown type {text!r} (types: {at.TYPE_FORMS})") from None
    return text


ArrowType = Annotated[str, AfterValidator(_arrow_type)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(Model):
    name: str
    type: ArrowType  # daedalus.arrowtypes string form


class SourceSpec(Model):
    """A source as a day job reads it; `lookback_days` None means every earlier partition.

    `columns` are the source columns the plan reads, with their (logical) types: a day job
    whose look-back holds no file of the source computes on an empty table of them.
    """

    path: str
    timestamp_field: str
    created_timestamp_field: str | None = None
    lookback_days: int | None = Field(default=0, ge=0)
    columns: dict[str, ArrowType] = Field(default_factory=dict)


class SpineParams(Model):
    source: str
    entities: list[str]
    session_field: str | None = None
    labels: list[str] = []
    passthrough: list[str] = []


class PitJoinParams(Model):
    view: str
    source: str
    entities: list[str]
    ttl: str | None = None
    columns: list[str]  # source columns the view's features read (entities excluded)


class DerivedFeature(Model):
    output: str
    dtype: DType
    column: str | None = None
    expr: str | None = None


class DeriveParams(Model):
    view: str
    features: list[DerivedFeature]


class UdfParams(Model):
    view: str
    output: str
    dtype: DType
    function: str
    inputs: list[str]


_OPTIONAL_FEATURE_FIELDS = ("q", "half_life", "top_n", "where", "bucket_by", "bucket")


class WindowFeature(Model):
    output: str
    function: Function
    column: str | None = None
    window: str
    k: int | None = None
    q: float | None = None
    half_life: str | None = None
    top_n: int | None = None
    where: str | None = None
    # Bucketed: per value (as text) of this source column. Without `bucket` the feature is a
    # map bucket -> aggregate; with it, the aggregate over the events of that one bucket.
    bucket_by: str | None = None
    bucket: str | None = None

    @model_validator(mode="after")
    def _bucket(self) -> WindowFeature:
        if self.bucket is not None and self.bucket_by is None:
            raise ValueError(f"feature {self.output!r}: 'bucket' needs 'bucket_by'")
        return self

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Parameters a feature does not use stay out of the plan file and its digests, so a
        # plan written before they existed keeps its digests.
        data = handler(self)
        return {k: v for k, v in data.items() if not (k in _OPTIONAL_FEATURE_FIELDS and v is None)}

    @property
    def value(self) -> str | None:
        """The events' value the function reads: its column, or with `where` a key of its
        own (the column where the filter holds; no column: a marker that is 1 there)."""
        if not self.filtered:
            return self.column
        key = self.where or ""
        if self.bucket_by is not None:  # where-only keys stay as they were (plan digests)
            key = json.dumps([self.where, self.bucket_by, self.bucket])
        return f"{self.column or ''}?{hashlib.sha1(key.encode()).hexdigest()[:12]}"

    @property
    def filtered(self) -> bool:
        """Whether only some of the window's events enter the function (`where`, buckets):
        such features read the window's events, never merged partials."""
        return self.where is not None or self.bucket_by is not None

    @property
    def bucket_map(self) -> bool:
        """A map bucket -> aggregate (bucket_by without a fixed bucket)."""
        return self.bucket_by is not None and self.bucket is None

    @property
    def bucket_key(self) -> str | None:
        """The events' column holding the bucket's text (map features)."""
        return f"{self.bucket_by}#bucket" if self.bucket_map else None

    @property
    def empty_sql(self) -> str | None:
        """The empty-window value as SQL (a map's: the empty map)."""
        return "MAP {}" if self.bucket_map else functions.get(self.function).empty_sql


class WindowAggParams(Model):
    aggregation: str
    source: str
    group_by: list[str]
    features: list[WindowFeature]


class LabelWindowParams(WindowAggParams):
    """A label window: the same features as a window_agg, aggregated over `(t, t + window]`."""

    @model_validator(mode="after")
    def _windows(self) -> LabelWindowParams:
        for f in self.features:
            parse_duration(f.window)  # a ValueError naming the window
        return self


class QidParams(Model):
    session_field: str


class EmbedParams(Model):
    embedding: str
    ids: str
    store_uri: str
    key: str
    vector: str


class WriteParams(Model):
    sort: list[str] = ["event_timestamp", "source_order"]


class _Op(Model):
    """What every operator has; each kind below adds its typed `params`."""

    name: str
    engine: Engine
    inputs: list[str]
    outputs: list[Column] = []

    ENGINES: ClassVar[tuple[str, ...]] = ("sql",)
    # The kinds of operator this one reads (each at most once, except for write_parts), and
    # whether it reads a source (`source:<id>` among its inputs).
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ()
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ()
    READS_SOURCE: ClassVar[bool] = False

    def keys(self, plan: Plan) -> list[str]:
        """The key columns of this operator's table, row-aligned with the spine by them."""
        return []

    def empty_values(self) -> dict[str, str | None]:
        """SQL of each output's value for a spine row this operator has no row for."""
        return {}

    def source_input(self) -> str | None:
        return next((i[7:] for i in self.inputs if i.startswith("source:")), None)


class SpineOp(_Op):
    kind: Literal["spine"]
    params: SpineParams
    READS_SOURCE: ClassVar[bool] = True

    def keys(self, plan: Plan) -> list[str]:
        return ["__rid"]


class PitJoinOp(_Op):
    kind: Literal["pit_join"]
    params: PitJoinParams
    ENGINES: ClassVar[tuple[str, ...]] = ("sql", "pythonic")
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("spine",)
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("spine",)
    READS_SOURCE: ClassVar[bool] = True

    def keys(self, plan: Plan) -> list[str]:
        return [*self.params.entities, "__ts"]


class DeriveOp(_Op):
    kind: Literal["derive"]
    params: DeriveParams
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("pit_join",)
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("pit_join",)

    def keys(self, plan: Plan) -> list[str]:
        return plan.input_of(self, "pit_join").keys(plan)


class UdfOp(_Op):
    kind: Literal["udf"]
    params: UdfParams
    ENGINES: ClassVar[tuple[str, ...]] = ("sql_arrow_udf",)
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("pit_join",)
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("pit_join",)

    def keys(self, plan: Plan) -> list[str]:
        return plan.input_of(self, "pit_join").keys(plan)


class WindowAggOp(_Op):
    kind: Literal["window_agg"]
    params: WindowAggParams
    ENGINES: ClassVar[tuple[str, ...]] = ("sql", "pythonic")
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("spine",)
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("spine",)
    READS_SOURCE: ClassVar[bool] = True

    def keys(self, plan: Plan) -> list[str]:
        return [*self.params.group_by, "__ts"]

    def empty_values(self) -> dict[str, str | None]:
        # A row whose group is null (no events can match) gets the empty-window value.
        return {f.output: f.empty_sql for f in self.params.features}


class LabelWindowOp(_Op):
    """Label windows (contract section 9): for a row at t, the events e of its group with
    t < e.ts <= t + w. Its source is read forward: a day-D job reads partitions D..D+L of it
    (`lookahead_days`), and the day is complete only when the source holds the instant
    D + 1 + w (daedalus.skeleton.labels)."""

    kind: Literal["label_window"]
    params: LabelWindowParams
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("spine",)
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("spine",)
    READS_SOURCE: ClassVar[bool] = True

    def keys(self, plan: Plan) -> list[str]:
        return [*self.params.group_by, "__ts"]

    def empty_values(self) -> dict[str, str | None]:
        return {f.output: functions.get(f.function).empty_sql for f in self.params.features}

    def lookahead_days(self) -> int:
        """Partitions after D a day-D job reads: events up to t + w < D + 1 + w lie in D + ceil(w / 1 day)."""
        return max(lookback_days(parse_duration(f.window)) for f in self.params.features)


class QidOp(_Op):
    kind: Literal["qid"]
    params: QidParams
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("spine",)
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("spine",)

    def keys(self, plan: Plan) -> list[str]:
        return ["__rid"]


class WritePartsOp(_Op):
    kind: Literal["write_parts"]
    params: WriteParams = WriteParams()
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("spine", "derive", "udf", "window_agg", "label_window", "qid")
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("spine",)


class EmbedOp(_Op):
    kind: Literal["embed"]
    params: EmbedParams
    ENGINES: ClassVar[tuple[str, ...]] = ("pythonic",)
    INPUT_KINDS: ClassVar[tuple[str, ...]] = ("write_parts",)
    REQUIRED_INPUTS: ClassVar[tuple[str, ...]] = ("write_parts",)


Operator = Annotated[
    SpineOp | PitJoinOp | DeriveOp | UdfOp | WindowAggOp | LabelWindowOp | QidOp | WritePartsOp | EmbedOp,
    Field(discriminator="kind"),
]
KINDS: dict[str, type[_Op]] = {
    c.model_fields["kind"].annotation.__args__[0]: c  # type: ignore[union-attr]
    for c in (SpineOp, PitJoinOp, DeriveOp, UdfOp, WindowAggOp, LabelWindowOp, QidOp, WritePartsOp, EmbedOp)
}
ENGINES: dict[str, tuple[str, ...]] = {k: c.ENGINES for k, c in KINDS.items()}
_OPERATOR = TypeAdapter(Operator)


def make_op(**fields: Any) -> Any:
    """An operator of the kind `fields["kind"]`, validated."""
    return _OPERATOR.validate_python(fields)


class Plan(Model):
    format: int = PLAN_FORMAT
    service: str
    sources: dict[str, SourceSpec]
    operators: list[Operator]

    def op(self, name: str) -> Any:
        for o in self.operators:
            if o.name == name:
                return o
        raise KeyError(name)

    def ops(self, kind: str) -> list[Any]:
        return [o for o in self.operators if o.kind == kind]

    @property
    def spine(self) -> Any:
        """The plan's one spine operator (whatever its name)."""
        return self.ops("spine")[0]

    def input_of(self, op: Any, kind: str) -> Any:
        """The operator of `kind` among `op`'s inputs (the plan was validated: there is one)."""
        for name in op.inputs:
            if not name.startswith("source:"):
                other = self.op(name)
                if other.kind == kind:
                    return other
        raise KeyError(f"{op.name} has no {kind} input")

    def lookahead_days(self, sid: str) -> int:
        """Partitions after a day that its job reads of source `sid` (label windows read forward)."""
        return max((o.lookahead_days() for o in self.ops("label_window") if o.params.source == sid), default=0)

    @property
    def skeleton_operators(self) -> list[Operator]:
        return [o for o in self.operators if o.kind != "embed"]

    @property
    def columns(self) -> list[Column]:
        """The skeleton output schema, in contract order."""
        return self.ops("write_parts")[0].outputs

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=False)
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)


def _name_operator(msg: str, loc: tuple, data: dict) -> str:
    """'operators[2].derive.params...' -> 'operators[2] (derive.user_profile).params...'."""
    ops = data.get("operators")
    if (
        len(loc) < 2
        or loc[0] != "operators"
        or not isinstance(loc[1], int)
        or not isinstance(ops, list)
        or loc[1] >= len(ops)
        or not isinstance(ops[loc[1]], dict)
    ):
        return msg
    i, raw = loc[1], ops[loc[1]]
    named = f"operators[{i}] ({raw.get('name')})" if raw.get("name") else f"operators[{i}]"
    if len(loc) > 2 and loc[2] == raw.get("kind"):  # the discriminated union's tag
        return msg.replace(f"operators[{i}].{loc[2]}", named, 1)
    return msg.replace(f"operators[{i}]", named, 1)


def validate_plan(data: Any, path: Path | str) -> Plan:
    """Parse a plan (generated or hand-edited) and check its shape and its edges: every input
    is an earlier operator of a kind the operator reads, or a source of the plan."""
    if not isinstance(data, dict):
        raise DaedalusError(path, "expected a mapping with an 'operators:' list")
    if data.get("format", PLAN_FORMAT) != PLAN_FORMAT:
        raise DaedalusError(
            path,
            f"format: {data.get('format')!r} is not supported (expected {PLAN_FORMAT}); "
            "recompile and apply your edits to the new generated plan",
        )
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        msg = format_validation_error(Plan, e)
        raise DaedalusError(path, _name_operator(msg, tuple(e.errors()[0]["loc"]), data)) from None
    kinds: dict[str, str] = {}
    for i, op in enumerate(plan.operators):
        where = f"operators[{i}] ({op.name})"
        cls = KINDS[op.kind]
        if op.name in kinds:
            raise DaedalusError(path, f"{where}: duplicate operator name")
        seen: list[str] = []
        for inp in op.inputs:
            if inp.startswith("source:"):
                if inp[7:] not in plan.sources:
                    raise DaedalusError(
                        path, f"{where}: unknown source {inp[7:]!r} (sources: {', '.join(plan.sources)})"
                    )
                continue
            if inp not in kinds:
                hint = difflib.get_close_matches(inp, list(kinds), n=1)
                raise DaedalusError(
                    path,
                    f"{where}: input {inp!r} is not an earlier operator or a source"
                    + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                )
            if kinds[inp] not in cls.INPUT_KINDS:
                raise DaedalusError(
                    path,
                    f"{where}: input {inp!r} is a {kinds[inp]} operator; a {op.kind} operator "
                    f"reads {', '.join(cls.INPUT_KINDS) or 'no operator'}",
                )
            if op.kind != "write_parts" and kinds[inp] in seen:
                raise DaedalusError(path, f"{where}: more than one {kinds[inp]} input")
            seen.append(kinds[inp])
        for need in cls.REQUIRED_INPUTS:
            if need not in seen:
                raise DaedalusError(path, f"{where}: needs a {need} operator among its inputs")
        sources = [x[7:] for x in op.inputs if x.startswith("source:")]
        if cls.READS_SOURCE and len(sources) != 1:
            raise DaedalusError(path, f"{where}: needs exactly one source input (source:<id>), has {len(sources)}")
        if not cls.READS_SOURCE and sources:
            raise DaedalusError(path, f"{where}: a {op.kind} operator reads no source (input source:{sources[0]})")
        declared = getattr(op.params, "source", None)
        if declared is not None and sources and declared != sources[0]:
            raise DaedalusError(path, f"{where}: params.source is {declared!r} but its input is source:{sources[0]}")
        if op.engine not in cls.ENGINES:
            raise DaedalusError(
                path,
                f"{where}: engine {op.engine!r} is not supported by a {op.kind} operator "
                f"(supported: {', '.join(cls.ENGINES)})",
            )
        kinds[op.name] = op.kind
    for kind in ("spine", "write_parts"):
        if len(plan.ops(kind)) != 1:
            raise DaedalusError(path, f"operators: exactly one {kind} operator is required")
    return plan


def load_plan(path: Path) -> Plan:
    return validate_plan(read_yaml(path), path)
