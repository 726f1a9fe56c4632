"""Snakemake behaviour: what reruns, what does not, and plain snakemake == daeda."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from projects import DAEDA, SNAKEMAKE, all_files, data_files, run, train

pytestmark = pytest.mark.e2e

ROOT = "data/training_output"
DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]


def day_mtimes(project: Path) -> dict[str, int]:
    return {d: (project / ROOT / f"dt={d}" / "part-0-0.parquet").stat().st_mtime_ns for d in DAYS}


def rerun_days(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {d for d in before if before[d] != after[d]}


def rewrite_partition(path: Path) -> None:
    """A real change to a source partition: drop its last row."""
    t = pq.read_table(path)
    pq.write_table(t.slice(0, t.num_rows - 1), path, compression="zstd")


def test_train_writes_every_day_and_plain_snakemake_gives_the_same_bytes(project, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(project, other)
    res = train(project, "--skeleton-only")
    assert "done" in res.stderr
    for d in DAYS:
        assert (project / ROOT / f"dt={d}" / "part-0-0.parquet").exists()
    assert (project / ROOT / "qid_map.parquet").exists()
    run(SNAKEMAKE + ["--cores", "2", "skeleton_all"], other)
    a, b = data_files(project / ROOT), data_files(other / ROOT)
    assert a == b and len(a) >= len(DAYS) + 1


def test_second_run_rewrites_nothing(project):
    train(project, "--skeleton-only")
    before = all_files(project / ROOT)
    res = train(project, "--skeleton-only")
    assert "nothing to do" in res.stderr
    assert all_files(project / ROOT) == before
    assert list((project / ".daedalus_tmp/uptodate").glob("*.json"))  # Snakemake found nothing to do
    res = train(project, "--skeleton-only")  # answered from that record
    assert "nothing to do" in res.stderr
    assert all_files(project / ROOT) == before
    # Plain snakemake sees the same state as up to date too.
    res = run(SNAKEMAKE + ["--cores", "2", "-n", "skeleton_all"], project)
    assert "Nothing to be done" in res.stdout + res.stderr


def test_changed_partition_reruns_exactly_the_days_whose_lookback_covers_it(project):
    train(project, "--skeleton-only")
    before = day_mtimes(project)
    # artwork_stats has ttl 7d: partition 2026-03-26 is read by days up to 2026-04-02.
    rewrite_partition(project / "data/demo/sources/artwork_stats/dt=2026-03-26/part-0.parquet")
    train(project, "--skeleton-only")
    after = day_mtimes(project)
    assert rerun_days(before, after) == {"2026-04-01", "2026-04-02"}
    # The spine's own partition of the last day: only that day (no later day in range).
    before = after
    rewrite_partition(project / "data/demo/sources/feed/dt=2026-04-03/part-0.parquet")
    train(project, "--skeleton-only")
    assert rerun_days(before, day_mtimes(project)) == {"2026-04-03"}


def test_touch_without_change_reruns_nothing(project):
    """Snakemake compares checksums of small inputs: a touched, unchanged file is no change."""
    train(project, "--skeleton-only")
    before = all_files(project / ROOT)
    (project / "data/demo/sources/likes/dt=2026-04-01/part-0.parquet").touch()
    train(project, "--skeleton-only")
    assert all_files(project / ROOT) == before


def test_editing_a_view_reruns_the_days_and_matches_a_fresh_run(project, tmp_path):
    train(project, "--skeleton-only")
    before = day_mtimes(project)
    view = project / "feature_views" / "artwork_stats.yaml"
    view.write_text(view.read_text().replace("ttl: 7d", "ttl: 2d"))
    train(project, "--skeleton-only")
    assert rerun_days(before, day_mtimes(project)) == set(DAYS)
    fresh = tmp_path / "fresh"
    shutil.copytree(project, fresh, ignore=shutil.ignore_patterns("training_output", ".snakemake"))
    train(fresh, "--skeleton-only")
    assert data_files(project / ROOT) == data_files(fresh / ROOT)


def test_recompiling_without_change_reruns_nothing(project):
    train(project, "--skeleton-only")
    plan = project / "config/pipelines/dssm_ranking.generated.yaml"
    mtime = plan.stat().st_mtime_ns
    before = all_files(project / ROOT)
    res = run(DAEDA + ["pipeline", "compile", "dssm_ranking"], project)
    assert res.stdout == plan.read_text()
    assert plan.stat().st_mtime_ns == mtime
    train(project, "--skeleton-only")
    assert all_files(project / ROOT) == before


def test_target_date_runs_one_day(project):
    train(project, "--skeleton-only", "--target-date", "2026-04-02")
    assert sorted(p.name for p in (project / ROOT).glob("dt=*")) == ["dt=2026-04-02"]


def test_skeleton_job_reads_only_its_lookback(project):
    res = run(SNAKEMAKE + ["--cores", "1", "-n", "-p", "--printshellcmds", "skeleton_all"], project)
    # The dry run lists each job's inputs: day 2026-04-01 reads artwork_stats 03-25..04-01 only.
    blocks = re.split(r"\n(?=\[.*\]\n(?:local)?rule )", res.stdout)
    block = next(b for b in blocks if "rule skeleton_day:" in b and "wildcards: day=2026-04-01" in b)
    inputs = re.findall(r"artwork_stats/dt=(\d{4}-\d{2}-\d{2})", block)
    assert sorted(set(inputs)) == [f"2026-03-{d}" for d in range(25, 32)] + ["2026-04-01"]
    states = set(re.findall(r"\.daedalus/state/records/(\w+)/dt=(\d{4}-\d{2}-\d{2})\.json", block))
    # Its state: the snapshots after the day before, the partials back to its longest
    # merging window (7d); the reduced events of the 30d last_k only from the range's first
    # day on (the days before it are read raw).
    days = {f"2026-03-{d}" for d in range(25, 32)} | {"2026-04-01"}
    assert states == {("snapshot", "2026-03-31")} | {("partials", d) for d in days}
    # A state job reads only the sources whose operators reach its day: on 03-25 the windows'
    # (feed, likes), not the joins' (artwork_stats: its snapshots are the other kind).
    early = next(b for b in blocks if "rule state_partials:" in b and "wildcards: day=2026-03-25" in b)
    assert "feed/dt=2026-03-25" in early and "likes/dt=2026-03-25" in early and "artwork_stats/" not in early
    assert not any("rule state_partials:" in b and "wildcards: day=2026-03-24" in b for b in blocks)


def test_snapshot_jobs_run_in_day_order_one_at_a_time(project):
    """The snapshot chain is the critical path: the dry run shows each snapshot job with a
    priority that falls day by day and the `snapshot_chain` resource the default profile
    limits to 1."""
    res = run(SNAKEMAKE + ["--cores", "2", "-n", "skeleton_all"], project)
    out = res.stdout + res.stderr
    blocks = [b for b in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", out) if "rule state_snapshot:" in b]
    assert blocks, out
    jobs = {}
    for b in blocks:
        day = re.search(r"wildcards: day=(\S+)", b).group(1)
        jobs[day] = int(re.search(r"priority: (\d+)", b).group(1))
        assert "snapshot_chain=1" in re.search(r"resources: ([^\n]*)", b).group(1)
    assert len(jobs) == len(blocks) > 1
    # Earlier days strictly first, and above every other job (their priority is 0).
    prios = [jobs[d] for d in sorted(jobs)]
    assert prios == sorted(prios, reverse=True) and len(set(prios)) == len(prios) and min(prios) > 0
    profile = yaml.safe_load((Path(__file__).parents[1] / "profiles/default/config.yaml").read_text())
    assert profile["resources"] == {"snapshot_chain": 1}
