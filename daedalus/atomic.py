"""Atomic publication of files and directories: a reader sees all of it or none of it."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    # Hidden (leading dot) so that listings of dt=*/ and *.parquet never see it.
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place, replacing any old one.

    Renaming the old directory aside first means the day is, at every instant, either
    the complete old one, absent, or the complete new one.
    """
    old = None
    if final.exists():
        old = temp_sibling(final, "old")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temps(directory: Path, prefix: str) -> None:
    """Remove temp leftovers of killed runs (`.<prefix>*.tmp-*`)."""
    if not directory.is_dir():
        return
    for p in directory.glob(f".{prefix}*"):
        if ".tmp-" in p.name or ".old-" in p.name:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
