"""`daeda init [DIR]`: a new project folder with the demo definitions, ready to train.

The example definitions are the ones shipped with Daedalus (the repository's top level, or
the copy a wheel carries in daedalus/_workflow/: daedalus.runner.workflow_dir()), each
YAML file headed by a comment saying what it is. They read `daeda demo`'s data
(data/demo/), so in the new folder

    daeda demo && daeda pipeline train dssm_ranking

works at once. A `.gitignore` keeps outputs and state out of version control. Nothing that
exists is ever overwritten: every target is checked before anything is written, and each
file is published atomically without replacing one that appeared meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

from daedalus.atomic import temp_sibling
from daedalus.errors import DaedalusError
from daedalus.runner import workflow_dir

# (folder under the workflow directory, glob): the files of the example project.
TEMPLATE = (
    ("feature_views", "*.yaml"),
    ("feature_views", "*.py"),
    ("feature_services", "*.yaml"),
    ("config/training", "*.yaml"),
)

# The comment each YAML file starts with, by folder (or file); every key of every file is in
# Daedalus's docs/reference.md, what the values mean exactly in docs/concepts.md.
HEADERS = {
    "feature_views": (
        "# A feature view: features of one entity from a parquet source, joined to each spine\n"
        "# row point in time (the newest row at or before the event, no older than `ttl`).\n"
        "# One view per file, named like the file. Every key: Daedalus's docs/reference.md.\n"
        "# This example (from `daeda init`) reads `daeda demo`'s data in data/demo/.\n"
    ),
    "feature_services": (
        "# A feature service: one training set (the spine, the views, aggregations and\n"
        "# embeddings it joins). `daeda pipeline train <name>` writes it day by day to the\n"
        "# output_root of config/training/runtime.yaml. Every key: Daedalus's docs/reference.md.\n"
        "# This example (from `daeda init`) reads `daeda demo`'s data in data/demo/.\n"
    ),
    "config/training/runtime.yaml": (
        "# How runs go: the days (feed_start..feed_end, months or days), where the outputs go,\n"
        "# chunk sizes, day workers, DuckDB threads / memory / spill directory, Ray.\n"
        "# Every key: Daedalus's docs/reference.md. The range matches `daeda demo`'s default data.\n"
    ),
    "config/training/aggregations.yaml": (
        "# Rolling window aggregations (over the spine or another event source), and the\n"
        "# embeddings the enrich stage pools from a Lance store; services name them.\n"
        "# Every key: Daedalus's docs/reference.md.\n"
    ),
}

GITIGNORE = """\
# Written by `daeda init`: what runs produce, not what you write.
# daeda demo's data and the training outputs (output_root in config/training/runtime.yaml)
data/
# Snakemake's state (metadata, logs, locks) and Daedalus's caches and DuckDB spill files
.snakemake/
.daedalus_tmp/
# Compiled plans (daeda pipeline compile); a hand-edited config/pipelines/<service>.yaml is yours
config/pipelines/*.generated.yaml
config/pipelines/*.targets.yaml
__pycache__/
"""


def _header(rel: str) -> str:
    if not rel.endswith(".yaml"):
        return ""
    header = HEADERS.get(rel) or HEADERS.get(rel.split("/", 1)[0], "")
    return header + "\n" if header else ""


def template_files() -> dict[str, str]:
    """Relative path -> text of every file `daeda init` writes."""
    root = workflow_dir()
    files: dict[str, str] = {}
    for folder, pattern in TEMPLATE:
        for path in sorted((root / folder).glob(pattern)):
            rel = path.relative_to(root).as_posix()
            files[rel] = _header(rel) + path.read_text()
    if not any(rel.startswith("feature_services/") for rel in files):
        raise DaedalusError(root, "the example definitions are missing from this installation of Daedalus")
    files[".gitignore"] = GITIGNORE
    return files


def _publish_new(path: Path, text: str) -> None:
    """Write `path` atomically, failing (never replacing) when it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text)
        try:
            os.link(tmp, path)  # atomic, and refuses an existing name
        except FileExistsError:
            raise DaedalusError(path, "already exists: daeda init never overwrites a file") from None
        except OSError:  # a file system without hard links
            if path.exists():
                raise DaedalusError(path, "already exists: daeda init never overwrites a file") from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def init_project(directory: Path) -> list[Path]:
    """Write the example project into `directory` (created if needed); the files written.

    Refuses, before writing anything, when any of the files exists (or the directory is a file).
    """
    if directory.exists() and not directory.is_dir():
        raise DaedalusError(directory, "exists and is not a directory")
    files = template_files()
    targets = {directory / rel: text for rel, text in files.items()}
    for path in targets:
        if path.exists() or path.is_symlink():
            raise DaedalusError(path, "already exists: daeda init never overwrites a file")
        for parent in path.relative_to(directory).parents:
            if (directory / parent).exists() and not (directory / parent).is_dir():
                raise DaedalusError(directory / parent, "exists and is not a directory")
    for path, text in targets.items():
        _publish_new(path, text)
    return list(targets)
