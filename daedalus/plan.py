"""The compiled operator DAG (`config/pipelines/<service>.generated.yaml`).

A plan holds everything a day job needs: the stage runs the plan, not the definitions, so a
hand-edited `<service>.yaml` (engines, parameters) is what runs. Each operator kind has a
typed parameter model and a set of engines that implement it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from daedalus import arrowtypes as at
from daedalus.definitions import DType, Function
from daedalus.errors import DaedalusError
from daedalus.loading import format_validation_error, read_yaml

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


class WindowFeature(Model):
    output: str
    function: Function
    column: str | None = None
    window: str
    k: int | None = None


class WindowAggParams(Model):
    aggregation: str
    source: str
    group_by: list[str]
    features: list[WindowFeature]


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


PARAMS: dict[str, type[Model]] = {
    "spine": SpineParams,
    "pit_join": PitJoinParams,
    "derive": DeriveParams,
    "udf": UdfParams,
    "window_agg": WindowAggParams,
    "qid": QidParams,
    "write_parts": WriteParams,
    "embed": EmbedParams,
}
ENGINES: dict[str, tuple[str, ...]] = {
    "spine": ("sql",),
    "pit_join": ("sql", "pythonic"),
    "derive": ("sql",),
    "udf": ("sql_arrow_udf",),
    "window_agg": ("sql", "pythonic"),
    "qid": ("sql",),
    "write_parts": ("sql",),
    "embed": ("pythonic",),
}


class Operator(Model):
    name: str
    kind: Literal["spine", "pit_join", "derive", "udf", "window_agg", "qid", "write_parts", "embed"]
    engine: Engine
    inputs: list[str]
    params: dict[str, Any] = Field(default_factory=dict)
    outputs: list[Column] = []

    def typed_params(self) -> Any:
        return PARAMS[self.kind].model_validate(self.params)


class Plan(Model):
    format: int = PLAN_FORMAT
    service: str
    sources: dict[str, SourceSpec]
    operators: list[Operator]

    def op(self, name: str) -> Operator:
        for o in self.operators:
            if o.name == name:
                return o
        raise KeyError(name)

    def ops(self, kind: str) -> list[Operator]:
        return [o for o in self.operators if o.kind == kind]

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


def validate_plan(data: Any, path: Path | str) -> Plan:
    """Parse a plan (generated or hand-edited) and check what an edit can break."""
    if not isinstance(data, dict):
        raise DaedalusError(path, "expected a mapping with an 'operators:' list")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        msg = format_validation_error(Plan, e)
        loc = e.errors()[0]["loc"]
        ops = data.get("operators")
        if len(loc) > 1 and loc[0] == "operators" and isinstance(loc[1], int) and isinstance(ops, list) \
                and loc[1] < len(ops) and isinstance(ops[loc[1]], dict) and ops[loc[1]].get("name"):
            # Name the operator, not only its position in the list.
            msg = msg.replace(f"operators[{loc[1]}]", f"operators[{loc[1]}] ({ops[loc[1]]['name']})", 1)
        raise DaedalusError(path, msg) from None
    if plan.format != PLAN_FORMAT:
        raise DaedalusError(path, f"format: {plan.format} is not supported (expected {PLAN_FORMAT}); recompile")
    names: set[str] = set()
    for i, op in enumerate(plan.operators):
        where = f"operators[{i}] ({op.name})"
        if op.name in names:
            raise DaedalusError(path, f"{where}: duplicate operator name")
        for inp in op.inputs:
            if inp not in names and not inp.startswith("source:"):
                raise DaedalusError(path, f"{where}: input {inp!r} is not an earlier operator or a source")
            if inp.startswith("source:") and inp[7:] not in plan.sources:
                raise DaedalusError(path, f"{where}: unknown source {inp[7:]!r}")
        names.add(op.name)
        if op.engine not in ENGINES[op.kind]:
            raise DaedalusError(path, f"{where}: engine {op.engine!r} is not supported by a {op.kind} operator "
                                f"(supported: {', '.join(ENGINES[op.kind])})")
        try:
            op.typed_params()
        except ValidationError as e:
            raise DaedalusError(path, f"{where}: params.{format_validation_error(PARAMS[op.kind], e)}") from None
    for kind in ("spine", "write_parts"):
        if len(plan.ops(kind)) != 1:
            raise DaedalusError(path, f"operators: exactly one {kind} operator is required")
    return plan


def load_plan(path: Path) -> Plan:
    return validate_plan(read_yaml(path), path)
