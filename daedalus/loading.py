"""Reading YAML files into the typed models, with one-line errors that name file and field."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from daedalus.definitions import AggregationsConfig, FeatureService, FeatureView, RuntimeConfig
from daedalus.errors import DaedalusError

M = TypeVar("M", bound=BaseModel)


class _Loader(yaml.SafeLoader):
    """YAML without implicit dates: `feed_start: 2026-13-01` stays the text the user wrote, so
    the model's validator can name it (PyYAML would fail inside its own date constructor)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(path: Path) -> Any:
    if not path.exists():
        raise DaedalusError(path, "file not found")
    if not path.is_file():
        raise DaedalusError(path, "not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DaedalusError(path, f"cannot read: {e}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise DaedalusError(path, f"invalid YAML{where}: {problem}") from None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "FeatureRef", "function-after[_identifier(), str]", "Source", "literal['spine']"):
            continue  # union branch labels pydantic adds; meaningless to users
        else:
            out += ("." if out else "") + str(part)
    return out


def _fields_of(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Known keys at `loc` (for 'did you mean'); best effort."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = getattr(cur, "model_fields", {}).get(part)
        if info is None:
            return []
        ann = info.annotation
        for arg in getattr(ann, "__args__", ()) or (ann,):
            for a in getattr(arg, "__args__", ()) or (arg,):
                if isinstance(a, type) and issubclass(a, BaseModel):
                    cur = a
                    break
    return list(getattr(cur, "model_fields", {}))


# Errors of a union branch the input does not even have the shape of ('spine' or a mapping).
_SHAPE = {
    "literal_error",
    "string_type",
    "model_type",
    "model_attributes_type",
    "dict_type",
    "list_type",
    "int_type",
    "int_parsing",
    "bool_type",
    "bool_parsing",
    "float_type",
    "float_parsing",
    "enum",
}
_PLAIN = {
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _pick(errors: list[Any]) -> Any:
    """The error to show: for a union, the one of the branch the input is shaped like."""
    first = errors[0]
    base = _loc(tuple(first["loc"]))
    same = [e for e in errors if _loc(tuple(e["loc"])).startswith(base)]
    if isinstance(first.get("input"), dict):
        deeper = [e for e in same if e["type"] not in _SHAPE or _loc(tuple(e["loc"])) != base]
        return deeper[0] if deeper else first
    literal = [e for e in same if e["type"] == "literal_error" and _loc(tuple(e["loc"])) == base]
    return literal[0] if literal else first


def format_validation_error(model: type[BaseModel], err: ValidationError) -> str:
    """One line: the field, what is wrong, the value given and, for a choice, the choices."""
    errors = err.errors(include_url=False)
    e = _pick(errors)
    loc = _loc(tuple(e["loc"]))
    value = e.get("input")
    if e["type"] == "extra_forbidden":
        key = str(e["loc"][-1])
        hint = difflib.get_close_matches(key, _fields_of(model, tuple(e["loc"])), n=1)
        return f"{loc}: unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if e["type"] == "missing":
        msg = "required key is missing"
    elif e["type"] == "literal_error":
        choices = re.findall(r"'((?:[^'\\]|\\.)*)'", str((e.get("ctx") or {}).get("expected", "")))
        union = any(
            x is not e and _loc(tuple(x["loc"])) == loc and x["type"] in ("model_type", "dict_type") for x in errors
        )
        msg = f"{_shown(value)} is not one of: {', '.join(choices)}" + (", or a mapping" if union else "")
        hint = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        if hint:
            msg += f" (did you mean {hint[0]!r}?)"
    elif e["type"] == "union_tag_invalid":
        ctx = e.get("ctx") or {}
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        key = str(ctx.get("discriminator", "")).strip("'")
        msg = f"{key}: {ctx.get('tag')!r} is not one of: {', '.join(choices)}"
        hint = difflib.get_close_matches(str(ctx.get("tag")), choices, n=1, cutoff=0.5)
        if hint:
            msg += f" (did you mean {hint[0]!r}?)"
    elif e["type"] in _PLAIN:
        msg = f"{_PLAIN[e['type']]}, got {_shown(value)}"
    else:
        msg = e["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        msg = msg.replace("Input should be", "must be")
        if not isinstance(value, (dict, list)) and repr(value) not in msg and str(value) not in msg:
            msg += f", got {_shown(value)}"
    return f"{loc}: {msg}" if loc else msg


def parse_model(model: type[M], data: Any, path: Path | str) -> M:
    if data is None:
        raise DaedalusError(path, "file is empty")
    if not isinstance(data, dict):
        raise DaedalusError(path, f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise DaedalusError(path, format_validation_error(model, e)) from None


def load_model(model: type[M], path: Path) -> M:
    return parse_model(model, read_yaml(path), path)


@dataclass(frozen=True)
class DefinitionPaths:
    """Where the user's definitions are (relative to the working directory)."""

    feature_views_dir: Path = Path("feature_views")
    feature_services_dir: Path = Path("feature_services")
    runtime_config_path: Path = Path("config/training/runtime.yaml")
    aggregation_config_path: Path = Path("config/training/aggregations.yaml")


@dataclass
class Definitions:
    service: FeatureService
    service_path: Path
    views: dict[str, FeatureView]
    view_paths: dict[str, Path]
    runtime: RuntimeConfig
    aggregations: AggregationsConfig
    paths: DefinitionPaths = field(default_factory=DefinitionPaths)


def load_definitions(service_name: str, paths: DefinitionPaths) -> Definitions:
    """Every file the service needs, parsed and cross-checked by name (not yet against data)."""
    for opt, d in (
        ("--feature-views-dir", paths.feature_views_dir),
        ("--feature-services-dir", paths.feature_services_dir),
    ):
        if not d.is_dir():
            raise DaedalusError(opt, f"{d} is not a directory")
    service_path = paths.feature_services_dir / f"{service_name}.yaml"
    if not service_path.exists():
        known = sorted(p.stem for p in paths.feature_services_dir.glob("*.yaml"))
        hint = difflib.get_close_matches(service_name, known, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else (f" (known: {', '.join(known)})" if known else "")
        raise DaedalusError(service_path, f"unknown feature service {service_name!r}{extra}")
    service = load_model(FeatureService, service_path)
    if service.name != service_name:
        raise DaedalusError(service_path, f"name: {service.name!r} must match the file name {service_name!r}")

    runtime = load_model(RuntimeConfig, paths.runtime_config_path)
    aggs = load_model(AggregationsConfig, paths.aggregation_config_path)

    views: dict[str, FeatureView] = {}
    view_paths: dict[str, Path] = {}
    available = sorted(p.stem for p in paths.feature_views_dir.glob("*.yaml"))
    for ref in service.refs:
        vpath = paths.feature_views_dir / f"{ref.view}.yaml"
        if not vpath.exists():
            hint = difflib.get_close_matches(ref.view, available, n=1)
            raise DaedalusError(
                service_path,
                f"features: unknown feature view {ref.view!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
            )
        view = load_model(FeatureView, vpath)
        if view.name != ref.view:
            raise DaedalusError(vpath, f"name: {view.name!r} must match the file name {ref.view!r}")
        if ref.features is not None:
            have = [f.name for f in view.features]
            for f in ref.features:
                if f not in have:
                    raise DaedalusError(
                        service_path, f"features: view {ref.view!r} has no feature {f!r} (has: {', '.join(have)})"
                    )
        views[ref.view] = view
        view_paths[ref.view] = vpath

    agg_names = [a.name for a in aggs.aggregations]
    for a in service.aggregations:
        if a not in agg_names:
            raise DaedalusError(
                service_path,
                f"aggregations: unknown aggregation {a!r} (defined in {paths.aggregation_config_path}: {', '.join(agg_names) or 'none'})",
            )
    for a in service.label_windows:
        if a not in agg_names:
            raise DaedalusError(
                service_path,
                f"label_windows: unknown aggregation {a!r} (defined in {paths.aggregation_config_path}: {', '.join(agg_names) or 'none'})",
            )
    emb_names = [e.name for e in aggs.embeddings]
    for e in service.embeddings:
        if e not in emb_names:
            raise DaedalusError(
                service_path,
                f"embeddings: unknown embedding {e!r} (defined in {paths.aggregation_config_path}: {', '.join(emb_names) or 'none'})",
            )
    if service.embeddings and aggs.embedding_store is None:
        raise DaedalusError(paths.aggregation_config_path, "embedding_store: required when a service uses embeddings")
    return Definitions(service, service_path, views, view_paths, runtime, aggs, paths)
