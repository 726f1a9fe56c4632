"""Skipping Snakemake on a rerun that has nothing to do, when nothing it looks at has changed.

Snakemake's no-op over a long range is slow: it builds the whole DAG and checks every
declared input of every day (365 days of the demo declare 17,600 files; about 5 s on 2
cores, plus 2 s to import Snakemake). When a run through Snakemake reported "nothing to be
done", `daeda pipeline train` records a fingerprint of everything that decision depended on
in `.daedalus_tmp/uptodate/<hash of the output root's path>.json` of the working directory
(with the other caches, so that a no-op run writes nothing under the output root):

- the exact snakemake command (targets, config, profile, extra arguments) and Snakemake's
  version;
- the compiled plan's digest (definitions, runtime settings, hand-edited plan) and, when the
  enrich stage is included, the embedding digest (store and its version);
- name, size and mtime of every source file any day of the range declares as input;
- mtime of every output the run targets (each day's published record and directory,
  qid_map.parquet and its record);
- name, size and mtime of the workflow's own files (Snakefile, rules, scripts, profiles) and
  of the Daedalus package (so a code change is seen even where Snakemake's code trigger,
  which looks only at the rule's script, would not see it).

The next identical run compares fingerprints and, when they are equal, skips Snakemake: it
would decide nothing to do again from exactly the same state. Any difference, or a missing
output, runs Snakemake as usual. The record is removed before Snakemake runs, so a killed
or failed run never leaves one behind, and it is written only after a run in which
Snakemake itself found nothing to do and the fingerprint did not change meanwhile.
Plain `snakemake` never reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from daedalus.atomic import temp_sibling

if TYPE_CHECKING:
    from daedalus.workflow import Workflow

RECORDS = Path(".daedalus_tmp/uptodate")


def stamp_path(root: str | Path) -> Path:
    key = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:16]
    return RECORDS / f"{key}.json"


def _stat_line(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{path}\t{st.st_size}\t{st.st_mtime_ns}"


def _tree_lines(root: Path, patterns: Iterable[str]) -> list[str]:
    out = []
    for pattern in patterns:
        for p in sorted(root.glob(pattern)):
            if p.is_file() and "__pycache__" not in p.parts:
                out.append(_stat_line(str(p)) or "")
    return out


def source_files(wf: Workflow) -> list[str]:
    """Every source file some day of the range declares as an input (the union over days)."""
    days = [dt.date.fromisoformat(d) for d in wf.days]
    files: set[str] = set()
    for sid, spec in wf.compiled.plan.sources.items():
        files.update(wf.scan(sid).select(days, spec.lookback_days, wf.compiled.plan.lookahead_days(sid)))
    return sorted(files)


def fingerprint(wf: Workflow, command: list[str], workflow_dir: Path) -> str | None:
    """The state a no-op decision depends on, hashed; None when an output is missing."""
    stage = wf.stage
    layout = wf.layout
    # Each day's published record and directory (daedalus.layout), qid_map's record and file.
    outputs: list[str] = []
    # Days waiting for label data are no target (daedalus.skeleton.labels); which days wait is
    # part of the fingerprint, so the partition that ends a wait makes the next run check.
    for d in wf.ready_days:  # with --enrich-only the skeleton days are inputs: they count all the same
        outputs += [layout.record("skeleton", d), layout.day_dir("skeleton", d)]
    if stage != "enrich" and wf.has_sessions:
        outputs += [layout.qid_map_record, layout.qid_map]
    with_enrich = stage != "skeleton" and wf.has_embeddings
    if with_enrich:
        for d in wf.ready_days:
            outputs += [layout.record("enrich", d), layout.day_dir("enrich", d)]
    lines = [
        "command\t" + json.dumps(command),
        "snakemake\t" + metadata.version("snakemake"),
        "plan\t" + wf.compiled.digest,
        "waiting\t" + json.dumps(sorted(d.isoformat() for d in wf.compiled.waiting)),
    ]
    if with_enrich:
        lines.append("enrich\t" + wf.enrich_digest)
    for out in outputs:
        line = _stat_line(out)
        if line is None:
            return None
        lines.append("output\t" + line)
    lines += ["input\t" + (_stat_line(f) or f + "\tmissing") for f in source_files(wf)]
    lines += [
        "code\t" + x for x in _tree_lines(workflow_dir, ("Snakefile", "rules/*.smk", "scripts/*.py", "profiles/**/*"))
    ]
    # The package itself, wherever it is installed (the repository, or site-packages for a wheel,
    # whose workflow files live inside the package).
    lines += ["code\t" + x for x in _tree_lines(Path(__file__).resolve().parent, ("**/*.py",))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def matches(root: str | Path, fp: str | None) -> bool:
    if fp is None:
        return False
    try:
        return json.loads(stamp_path(root).read_text()).get("fingerprint") == fp
    except (OSError, ValueError, AttributeError):
        return False


def clear(root: str | Path) -> None:
    stamp_path(root).unlink(missing_ok=True)


def record(root: str | Path, fp: str) -> None:
    path = stamp_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_text(json.dumps({"output_root": os.path.abspath(root), "fingerprint": fp}) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
