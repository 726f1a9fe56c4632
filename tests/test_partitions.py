"""A run reads, checks and declares only the partitions its days need (contract section 2).

The demo project runs 2026-04-01..04-03 over sources that start on 2026-03-01. Its look-backs:
the feed (spine) 30 days (its longest `source: spine` window), user_profile 30 days (ttl),
artwork_stats 7 days (ttl), likes 14 days (the longest window over it). A partition older
than those is never opened, so a bad one cannot stop the run; a bad one inside them is one
error line that names the file, before anything is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from projects import DAEDA, all_files, data_files, run, train

pytestmark = pytest.mark.e2e

SOURCES = "data/demo/sources"
ROOT = "data/training_output"


def partition(project: Path, source: str, day: str) -> Path:
    files = sorted((project / SOURCES / source / f"dt={day}").glob("*.parquet"))
    assert files, (source, day)
    return files[0]


def garbage(p: Path) -> None:
    p.write_bytes(b"not parquet at all\x00" * 50)


def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def empty(p: Path) -> None:
    p.write_bytes(b"")


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("daeda: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_bad_partitions_outside_the_lookback_do_not_stop_a_run(trained: Path, tmp_path: Path) -> None:
    garbage(partition(trained, "feed", "2026-03-01"))  # spine look-back starts 03-02
    truncate(partition(trained, "user_profile", "2026-03-01"))  # ttl 30d: from 03-02
    empty(partition(trained, "artwork_stats", "2026-03-20"))  # ttl 7d: from 03-25
    empty(partition(trained, "likes", "2026-03-10"))  # 14d window: from 03-18
    (trained / SOURCES / "likes" / "dt=2026-03-05").mkdir(exist_ok=True)  # an empty partition directory
    before = all_files(trained / ROOT)

    for args in (["pipeline", "compile", "dssm_ranking"], ["pipeline", "status", "dssm_ranking"]):
        res = run(DAEDA + args, trained, check=False)
        assert res.returncode == 0, res.stderr
        assert "error" not in res.stderr and "warning: data/" not in res.stderr, res.stderr
    res = train(trained)
    assert "error" not in res.stderr, res.stderr
    assert all_files(trained / ROOT) == before, "a run with nothing to do rewrote an output"

    # A fresh output root over the same sources gives the same bytes as before the damage.
    shutil.copytree(trained, tmp_path / "fresh")
    res = train(tmp_path / "fresh", "--output-root", "fresh_root")
    assert data_files(tmp_path / "fresh" / "fresh_root") == data_files(trained / ROOT)
    assert data_files(tmp_path / "fresh" / "fresh_root_enriched") == data_files(trained / (ROOT + "_enriched"))


def test_a_bad_partition_inside_the_lookback_is_one_error_naming_it(project: Path) -> None:
    bad = partition(project, "artwork_stats", "2026-03-26")  # read by 04-01 and 04-02, not by 04-03
    truncate(bad)
    res = train(project, "--skeleton-only", "--target-date", "2026-04-03")
    assert (project / ROOT / "dt=2026-04-03").is_dir()
    before = all_files(project / ROOT)
    for args in (["pipeline", "train", "dssm_ranking", "--skeleton-only"], ["pipeline", "compile", "dssm_ranking"]):
        res = run(DAEDA + args, project, check=False)
        assert res.returncode == 2, res.stderr
        line = one_error_line(res.stderr)
        assert f"artwork_stats/dt=2026-03-26/{bad.name}: unreadable parquet" in line, line
    assert all_files(project / ROOT) == before


def test_a_source_with_no_partition_in_range_takes_its_schema_from_the_nearest_readable_one(project: Path) -> None:
    view = project / "feature_views" / "artwork_stats.yaml"
    doc = yaml.safe_load(view.read_text())
    doc["ttl"] = "1d"
    view.write_text(yaml.safe_dump(doc, sort_keys=False))
    stats = project / SOURCES / "artwork_stats"
    for d in sorted(stats.glob("dt=*")):
        if d.name >= "dt=2026-03-25":
            shutil.rmtree(d)
    garbage(partition(project, "artwork_stats", "2026-03-24"))  # the nearest: skipped, with one warning
    res = train(project, "--skeleton-only")
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("daeda: warning: data/")]
    assert len(warnings) == 1 and "artwork_stats/dt=2026-03-24" in warnings[0], res.stderr
    for day in ("2026-04-01", "2026-04-02", "2026-04-03"):
        t = pq.read_table(project / ROOT / f"dt={day}")
        assert t.num_rows > 0
        for c in ("artwork_stats__like_count", "artwork_stats__category", "artwork_stats__price_band"):
            assert t[c].null_count == t.num_rows, (day, c)
        assert t["user_profile__follower_count"].null_count < t.num_rows
