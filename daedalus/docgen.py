"""Generate docs/reference.md (YAML formats) and docs/cli.md (commands) from the code.

    python -m daedalus.docgen            # rewrite both files
    python -m daedalus.docgen --check    # exit 1 when a checked-in file is out of date

The YAML reference walks the pydantic models of daedalus.definitions (field names, types,
defaults, required-ness come from them; the one-line meanings are kept here, and every field
must have one); the CLI reference walks the typer app of daedalus.cli.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from daedalus import definitions as d

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "docs" / "reference.md"
CLI = REPO / "docs" / "cli.md"

# (file, title, top-level model, what the file is)
FILES: list[tuple[str, str, type[BaseModel], str]] = [
    ("feature_views/<name>.yaml", "Feature view", d.FeatureView,
     "One view per file; the file stem is the view's name. Features over one parquet source, "
     "joined to the spine point-in-time."),
    ("feature_services/<name>.yaml", "Feature service", d.FeatureService,
     "One training set: the spine (the feed), the views, aggregations and embeddings it uses."),
    ("config/training/aggregations.yaml", "Aggregations and embeddings", d.AggregationsConfig,
     "Rolling window aggregations, the Lance embedding store and the embedding columns."),
    ("config/training/runtime.yaml", "Runtime", d.RuntimeConfig,
     "Day range, output root and resources."),
]

FIELDS: dict[str, str] = {
    "FeatureView.name": "The view's name; must equal the file stem. Output columns are `<view>__<feature>`.",
    "FeatureView.entities": "Join keys; each must be a spine column of the same name.",
    "FeatureView.source": "Where the feature rows are.",
    "FeatureView.ttl": "How old a feature row may be at the spine row's time (inclusive); absent: any age.",
    "FeatureView.features": "The view's features, in output order. Names are unique within the view.",
    "Source.path": "A parquet file, a directory (read recursively; `dt=YYYY-MM-DD/` partitions are read "
                   "only for the days that need them) or a glob; relative to the working directory.",
    "Source.timestamp_field": "The event time column (any parquet timestamp type or date; naive means UTC).",
    "Source.created_timestamp_field": "Optional tie-breaker between rows with equal event times (the later "
                                      "created wins).",
    "Feature.name": "Feature name (identifier).",
    "Feature.dtype": "Output type (`date` is Arrow date32, `timestamp` is timestamp[us, tz=UTC]).",
    "Feature.column": "The source column, when it is not named like the feature.",
    "Feature.expr": "A scalar DuckDB SQL expression over the source columns (engine `sql`).",
    "Feature.udf": "`module:function` importable from the working directory, called with pyarrow arrays "
                   "(engine `sql_arrow_udf`).",
    "Feature.inputs": "The source columns passed, in order, to the `udf`.",
    "FeatureService.name": "The service's name; must equal the file stem.",
    "FeatureService.spine": "The feed: one output row per spine row.",
    "FeatureService.features": "Views: a name (every feature of the view) or `{view, features}` (a subset, "
                               "in the order listed).",
    "FeatureService.aggregations": "Names of aggregations from aggregations.yaml, in output order.",
    "FeatureService.embeddings": "Names of embeddings from aggregations.yaml (the enrich stage).",
    "FeatureRef.view": "The view's name.",
    "FeatureRef.features": "The subset of its features, in output order.",
    "Spine.source": "The feed's source.",
    "Spine.entities": "Entity columns (kept in the output, joined on by views and aggregations).",
    "Spine.session_field": "Optional session column: turns on `qid` and `qid_map.parquet`.",
    "Spine.labels": "Label columns, copied to the output.",
    "Spine.passthrough": "Other spine columns copied to the output.",
    "AggregationsConfig.aggregations": "Rolling window aggregations.",
    "AggregationsConfig.embedding_store": "The Lance dataset the embeddings are looked up in.",
    "AggregationsConfig.embeddings": "Embedding columns appended by the enrich stage.",
    "Aggregation.name": "Output columns are `<aggregation>__<feature>_<window>`.",
    "Aggregation.source": "`spine` (the feed itself, look-back included) or a source mapping.",
    "Aggregation.group_by": "Group columns; each must be a spine column of the same name.",
    "Aggregation.windows": "Default windows of its features; a window covers `[t - w, t)`, strictly before "
                           "the row.",
    "Aggregation.features": "The aggregated features.",
    "AggFeature.name": "Feature name (identifier).",
    "AggFeature.function": "What to compute over the window (see docs/concepts.md for empty windows).",
    "AggFeature.column": "The aggregated column (not needed by `count`, which then counts events).",
    "AggFeature.k": "How many values `last_k` keeps (most recent first).",
    "AggFeature.windows": "Windows of this feature, overriding the aggregation's.",
    "EmbeddingStore.uri": "Path of the Lance dataset.",
    "EmbeddingStore.key": "Its int64 key column.",
    "EmbeddingStore.vector": "Its `fixed_size_list<float32>[dim]` vector column.",
    "Embedding.name": "Output column (`<name>` vector and `<name>_count`).",
    "Embedding.ids": "A skeleton column of ids: scalar (that id's vector) or a list (the mean of the found "
                     "vectors).",
    "RuntimeConfig.feed_start": "First day, `YYYY-MM` (its first day) or `YYYY-MM-DD`; inclusive.",
    "RuntimeConfig.feed_end": "Last day, `YYYY-MM` (its last day) or `YYYY-MM-DD`; inclusive.",
    "RuntimeConfig.output_root": "Skeleton days go to `<output_root>/dt=D/`, enriched days to "
                                 "`<output_root>_enriched/dt=D/`.",
    "RuntimeConfig.day_workers": "Days computed at once (DuckDB threads and memory are shared among them).",
    "RuntimeConfig.small_day_rows": "Days with at most this many spine rows are small: under `daeda pipeline train` "
    "their jobs run in the run's warm worker process (no process start or imports per job), and their enrich step "
    "pools embeddings without Ray Data. Bigger days run each in a process of their own, enrich through Ray Data. "
    "Both give the same bytes; 0 makes every day big.",
    "RuntimeConfig.skeleton": "Skeleton stage settings.",
    "RuntimeConfig.enrich": "Enrich stage settings.",
    "RuntimeConfig.duckdb": "DuckDB settings of the skeleton stage.",
    "RuntimeConfig.ray": "Ray settings of the enrich stage.",
    "SkeletonSettings.chunk_rows": "Maximum rows per `part-N-0.parquet`.",
    "EnrichSettings.shard_rows": "Maximum rows per enriched shard.",
    "EnrichSettings.batch_rows": "Rows per Ray Data batch.",
    "DuckDBSettings.threads": "DuckDB threads (shared by the day workers).",
    "DuckDBSettings.memory_limit": "DuckDB memory limit (shared by the day workers), e.g. `4GB`.",
    "DuckDBSettings.temp_directory": "Where DuckDB spills.",
    "RaySettings.address": "An existing Ray cluster (or set `RAY_ADDRESS`); null starts a local one per run.",
    "RaySettings.num_cpus": "Logical CPUs of a local Ray; null: all.",
    "RaySettings.object_store_memory": "Object store size of a local Ray, e.g. `2GB`; null: min(2 GB, 20% RAM).",
}


def _anchor(model: type) -> str:
    return model.__name__.lower()


def type_text(ann: Any, seen: list[type]) -> str:
    """A reader's name for a field's type; nested models are collected into `seen`."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        names = {getattr(m, "func", None).__name__ for m in args[1:] if getattr(m, "func", None)}
        if "_identifier" in names:
            return "identifier"
        if "_duration" in names:
            return "duration"
        return type_text(args[0], seen)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a, seen) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin is list:
        return f"list of {type_text(args[0], seen)}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        if ann not in seen:
            seen.append(ann)
        return f"[{ann.__name__}](#{_anchor(ann)})"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(ann, str(ann))


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "optional"
    if value == []:
        return "`[]`"
    return f"`{value}`"


def _model_section(model: type[BaseModel], seen: list[type], heading: str) -> list[str]:
    lines = [f"{heading} {model.__name__}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = f"{model.__name__}.{name}"
        if key not in FIELDS:
            raise KeyError(f"docgen: no description for {key}: add one to daedalus/docgen.py FIELDS")
        ann = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        lines.append(f"| `{name}` | {type_text(ann, seen)} | {_default(field)} | {FIELDS[key]} |")
    return lines + [""]


def render_reference() -> str:
    out = ["# YAML reference", "",
           "<!-- Generated by `python -m daedalus.docgen` from daedalus/definitions.py; do not edit. -->", "",
           "Every file is validated by these models: an unknown key, a wrong type or a bad value is a one-line "
           "error naming the file and the key. Identifiers match `[a-z_][a-z0-9_]*`; durations are "
           "`<positive int><s|m|h|d|w>` (`90m`, `7d`). What the values mean, exactly: "
           "[concepts.md](concepts.md).", ""]
    done: set[type] = set()
    for path, title, model, what in FILES:
        out += [f"## {title}: `{path}`", "", what, ""]
        seen: list[type] = []
        out += _model_section(model, seen, "###")
        while seen:
            m = seen.pop(0)
            if m in done or m is model:
                continue
            done.add(m)
            out += _model_section(m, seen, "###")
    return "\n".join(out).rstrip() + "\n"


def _walk(cmd: Any, prefix: str) -> list[tuple[str, Any]]:
    cmds = [(prefix, cmd)]
    for name in getattr(cmd, "commands", {}) or {}:
        cmds += _walk(cmd.commands[name], f"{prefix} {name}")
    return cmds


def _metavar(param: Any) -> str:
    if getattr(param, "metavar", None):
        return param.metavar
    ann = param.type_descriptor.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    while args:  # Optional[X], list[X] -> X
        ann, args = args[0], [a for a in typing.get_args(args[0]) if a is not type(None)]
    return {Path: "PATH", str: "TEXT", int: "INTEGER", float: "NUMBER"}.get(ann, "VALUE")


def render_cli() -> str:
    import typer

    from daedalus.cli import app

    root = typer.main.get_command(app)
    out = ["# Command line reference", "",
           "<!-- Generated by `python -m daedalus.docgen` from daedalus/cli.py; do not edit. -->", "",
           "Every command reports bad input as one line on stderr, `daeda: error: <file or option>: <problem>`, "
           "and exits 2 (`daeda --debug ...` shows the traceback); an unexpected failure exits 1. "
           "`daeda pipeline status` exits 3 when some day is stale or missing.", ""]
    for path, cmd in _walk(root, "daeda"):
        if getattr(cmd, "commands", None):
            continue
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        usage = " ".join([path] + [p.name.upper() for p in args] + (["[OPTIONS]"] if len(cmd.params) > len(args) else []))
        out += [f"## `{path}`", "", "```", usage, "```", "", inspect.cleandoc(cmd.help or ""), ""]
        rows = []
        for p in cmd.params:
            if p.param_type_name == "argument":
                rows.append(f"| `{p.name.upper()}` | {getattr(p, 'help', '') or ''} | required |")
                continue
            names = ", ".join(f"`{o}`" for o in p.opts)
            if not p.is_flag:
                names += f" {_metavar(p)}"
            default = "" if p.default is None or p.default is False else f"`{p.default}`"
            rows.append(f"| {names} | {p.help or ''} | {default} |")
        if rows:
            out += ["| argument / option | meaning | default |", "|---|---|---|", *rows, ""]
    return "\n".join(out).rstrip() + "\n"


def outputs() -> dict[Path, str]:
    return {REFERENCE: render_reference(), CLI: render_cli()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if "--check" in args:
            stale.append(path)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    for path in stale:
        print(f"{path.relative_to(REPO)} is out of date: run python -m daedalus.docgen", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
