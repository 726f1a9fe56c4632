"""The compiled service, kept between processes.

Snakemake parses the Snakefile in every process it starts: `daeda pipeline train` compiles,
then Snakemake compiles again, and on a cluster every job's own Snakemake does. A compile
reads the definitions, every source partition's schema, the Lance store and the UDF
modules, and checks each expression in DuckDB (0.5-1 s on the demo). The Snakefile
therefore asks for a cached compile: the result of the last compile of the same service
and day in the same working directory, reused only while everything that compile read is
as it was (the output root only names files written after compiling: it is not part of it).

What "as it was" means (the entry's stamp; the definitions' part is taken before and after
compiling and the source and UDF files' mtimes are checked against the compile's start, so
that a file edited during the compile is never paired with the old result):
- definition files (every file under the views and services directories, the runtime and
  aggregations configs, the hand-edited plan or its absence) and UDF modules: by content;
- each source's files, as the compile lists them: the listing itself and each file's size,
  mtime and inode (a rewrite by rename is a new inode);
- each Lance store: its manifests (daedalus.checks store key);
- Daedalus's own modules (size and mtime) and the versions of the libraries whose parsers
  and type rules the checks use.
An entry that is missing, unreadable or stale is recompiled and overwritten; a compile that
fails is never kept, so an invalid input gives its error every time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daedalus.atomic import write_bytes
from daedalus.checks import store_key
from daedalus.loading import DefinitionPaths
from daedalus.sources import list_files

if TYPE_CHECKING:
    from daedalus.compile import Compiled

CACHE = Path(".daedalus_tmp/compiled")
_FORMAT = 1  # bumped when the entry's layout changes
_CLOCK_SLACK_NS = 50_000_000


def _key(
    service: str,
    paths: DefinitionPaths,
    output_dir: Path | None,
    target_date: dt.date | None,
) -> str:
    # No output dir gives the same result as the default one, and the output root only names
    # the files written: neither is part of what is compiled.
    out = str(output_dir or Path("config/pipelines"))
    parts = (_FORMAT, service, str(paths), out, str(target_date), os.getcwd())
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def _content(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _tree(directory: Path) -> list[tuple[str, str | None]]:
    if not directory.is_dir():
        return []
    out = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for n in sorted(names):
            p = Path(root, n)
            out.append((p.as_posix(), _content(p)))
    return out


def _files(files: list[str]) -> list[tuple[str, int, int, int] | tuple[str]]:
    out: list[tuple[str, int, int, int] | tuple[str]] = []
    for f in files:
        try:
            st = os.stat(f)
            out.append((f, st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            out.append((f,))
    return out


def _code() -> list[Any]:
    import duckdb
    import pyarrow
    import pydantic

    package = Path(__file__).resolve().parent
    mods = sorted(package.rglob("*.py"))
    return [duckdb.__version__, pyarrow.__version__, pydantic.VERSION, _files([str(m) for m in mods])]


def definitions_stamp(service: str, paths: DefinitionPaths) -> list[Any]:
    """The definition files' part of a stamp (known before compiling)."""
    from daedalus.compile import override_path

    configs = (paths.runtime_config_path, paths.aggregation_config_path, override_path(service))
    return [
        _code(),
        _tree(paths.feature_views_dir),
        _tree(paths.feature_services_dir),
        [(str(p), _content(p)) for p in configs],
    ]


def _stamp(service: str, paths: DefinitionPaths, spec: dict[str, list[str]]) -> list[Any]:
    return [
        definitions_stamp(service, paths),
        [(u, _content(Path(u)), _files([u])) for u in spec["udfs"]],
        [(s, _files(list_files(s))) for s in spec["sources"]],
        [(u, store_key(Path(u))) for u in spec["stores"]],
    ]


def _spec(compiled: Compiled) -> dict[str, list[str]]:
    return {
        "udfs": sorted(str(u) for u in compiled.udf_files),
        "sources": sorted({sf.path for sf in compiled.sources.values()}),
        "stores": sorted({op.params.store_uri for op in compiled.plan.ops("embed")}),
    }


def load(
    service: str,
    paths: DefinitionPaths,
    *,
    output_dir: Path | None,
    target_date: dt.date | None,
) -> Compiled | None:
    """The kept compile of these inputs, or None if there is none or it is stale."""
    entry = CACHE / f"{_key(service, paths, output_dir, target_date)}.pickle"
    try:
        spec, stamp, compiled = pickle.loads(entry.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError):
        return None
    if _stamp(service, paths, spec) != stamp:
        return None
    return compiled


def save(
    compiled: Compiled,
    service: str,
    paths: DefinitionPaths,
    *,
    output_dir: Path | None,
    target_date: dt.date | None,
    definitions_before: list[Any],
    started_ns: int,
) -> None:
    """Keep a compile for the next process (atomically; a read-only directory keeps nothing).

    Not kept when an input may have changed while compiling: a definition file whose content
    differs from `definitions_before`, or a source or UDF file modified since `started_ns`.
    """
    spec = _spec(compiled)
    stamp = _stamp(service, paths, spec)
    if stamp[0] != definitions_before:
        return
    # A file's mtime comes from the kernel's coarse clock (up to a tick behind time_ns).
    since = started_ns - _CLOCK_SLACK_NS
    for _, _, files in stamp[1]:
        if any(len(f) == 1 or f[2] >= since for f in files):
            return
    for _, files in stamp[2]:
        if any(len(f) == 1 or f[2] >= since for f in files):
            return
    try:
        write_bytes(
            CACHE / f"{_key(service, paths, output_dir, target_date)}.pickle",
            pickle.dumps((spec, stamp, compiled), protocol=pickle.HIGHEST_PROTOCOL),
        )
    except OSError:
        pass
