"""Small throw-away Daedalus projects for tests: the shipped definitions over small demo data."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAEDA = [sys.executable, "-m", "daedalus"]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def make_project(
    dest: Path,
    *,
    start: str = "2026-04-01",
    end: str = "2026-04-03",
    users: int = 40,
    artworks: int = 60,
    events_per_day: int = 150,
    lookback_days: int = 31,
    day_workers: int = 1,
    data_end: str | None = None,
) -> Path:
    """Copy the shipped definitions into `dest`, make small demo data, and narrow the range.

    The data runs to `data_end`, by default two days past `end`: the demo service's label
    window (`likes_ahead`, 1d) makes a day wait for the likes partition of the day after
    next, so every day of the range is written. Pass `data_end=end` for waiting last days.
    """
    if data_end is None:
        data_end = (dt.date.fromisoformat(end) + dt.timedelta(days=2)).isoformat()
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("feature_views", "feature_services"):
        shutil.copytree(REPO / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "config" / "training").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", dest / "config" / "config.yaml")
    shutil.copy(REPO / "config" / "training" / "aggregations.yaml", dest / "config" / "training" / "aggregations.yaml")
    rt = (REPO / "config" / "training" / "runtime.yaml").read_text()
    rt = re.sub(r"(?m)^feed_start:.*$", f"feed_start: {start}", rt)
    rt = re.sub(r"(?m)^feed_end:.*$", f"feed_end: {end}", rt)
    rt = re.sub(r"(?m)^day_workers:.*$", f"day_workers: {day_workers}", rt)
    (dest / "config" / "training" / "runtime.yaml").write_text(rt)
    run(
        DAEDA
        + [
            "demo",
            "--out",
            "data/demo",
            "--start",
            start,
            "--end",
            data_end,
            "--lookback-days",
            str(lookback_days),
            "--users",
            str(users),
            "--artworks",
            str(artworks),
            "--events-per-day",
            str(events_per_day),
        ],
        dest,
    )
    return dest


def run(cmd: list[str], cwd: Path, *, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


def train(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(DAEDA + ["pipeline", "train", "dssm_ranking", *args], cwd, check=check)


def data_files(root: Path) -> dict[str, str]:
    """sha256 of every published file under root (not Daedalus's or Snakemake's bookkeeping)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".daedalus") and p.name != ".snakemake_timestamp":
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def all_files(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root, bookkeeping included."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
