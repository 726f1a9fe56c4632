"""A rerun with nothing changed skips Snakemake (daedalus/uptodate.py); any change brings it back."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from projects import train

pytestmark = pytest.mark.e2e

ROOT = "data/training_output"
DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]
SKIPPED = "nothing changed since Snakemake last checked"


def record(project: Path) -> Path:
    from daedalus.uptodate import stamp_path

    return project / stamp_path(project / ROOT)


def text(res) -> str:
    return " ".join(res.stderr.split())  # rich wraps at the terminal width


def snakemake_logs(project: Path) -> set[str]:
    return {p.name for p in (project / ".snakemake" / "log").glob("*.log")}


def day_mtimes(project: Path) -> dict[str, int]:
    return {d: (project / ROOT / f"dt={d}" / "part-0-0.parquet").stat().st_mtime_ns for d in DAYS}


def skipped(project: Path, *args: str) -> bool:
    """Run train; True when it answered from the record without starting Snakemake."""
    logs = snakemake_logs(project)
    res = train(project, "--skeleton-only", *args)
    fast = SKIPPED in text(res)
    assert fast == (snakemake_logs(project) == logs), res.stderr
    return fast


def test_only_a_run_where_snakemake_found_nothing_to_do_is_recorded(trained):
    assert not record(trained).exists()  # the fixture's run did work: no record
    assert not skipped(trained)  # Snakemake checks, finds nothing to do, and it is recorded
    assert record(trained).exists()
    before = day_mtimes(trained)
    assert skipped(trained)
    assert skipped(trained)
    assert day_mtimes(trained) == before
    # Other arguments are another command: Snakemake decides.
    assert not skipped(trained, "--target-date", "2026-04-02")
    assert not skipped(trained)


def test_every_kind_of_change_goes_back_to_snakemake(trained):
    assert not skipped(trained)
    assert skipped(trained)
    # A source partition rewritten: Snakemake reruns the days that read it.
    before = day_mtimes(trained)
    part = trained / "data/demo/sources/feed/dt=2026-04-03/part-0.parquet"
    t = pq.read_table(part)
    pq.write_table(t.slice(0, t.num_rows - 1), part, compression="zstd")
    assert not skipped(trained)
    assert {d for d in DAYS if day_mtimes(trained)[d] != before[d]} == {"2026-04-03"}
    assert not skipped(trained) and skipped(trained)
    # An output removed: rebuilt.
    import shutil

    shutil.rmtree(trained / ROOT / "dt=2026-04-01")
    assert not skipped(trained)
    assert (trained / ROOT / "dt=2026-04-01" / "part-0-0.parquet").exists()
    assert not skipped(trained) and skipped(trained)
    # Only a source's mtime changed: Snakemake looks (and, comparing the small file's
    # checksum, finds nothing to do, which is recorded again).
    before = day_mtimes(trained)
    os.utime(part)
    assert not skipped(trained)
    assert skipped(trained)
    assert day_mtimes(trained) == before
    # A definition changed (the user TTL): the plan digest differs.
    view = trained / "feature_views/user_profile.yaml"
    view.write_text(re.sub(r"(?m)^ttl: .*$", "ttl: 20d", view.read_text()))
    before = day_mtimes(trained)
    assert not skipped(trained)
    assert all(day_mtimes(trained)[d] != before[d] for d in DAYS)


def test_a_run_that_does_work_removes_the_record(trained):
    assert not skipped(trained) and skipped(trained)
    shutil_day = trained / ROOT / "dt=2026-04-02"
    import shutil

    shutil.rmtree(shutil_day)
    res = train(trained, "--skeleton-only")
    assert SKIPPED not in text(res)
    assert not record(trained).exists()
