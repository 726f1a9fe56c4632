"""A changed definition reruns exactly what it affects, and the result is what a fresh run
with the new definition writes. (A TTL change is covered in test_workflow.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from projects import data_files, train

pytestmark = pytest.mark.e2e

ROOT = "data/training_output"
ENRICHED = ROOT + "_enriched"
DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]


@pytest.fixture
def trained(trained_template, tmp_path) -> Path:
    """A copy of the demo project after a clean run of both stages."""
    dest = tmp_path / "project"
    shutil.copytree(trained_template, dest, symlinks=True)
    return dest


def mtimes(root: Path) -> dict[str, int]:
    """mtime of each published day directory's files."""
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.glob("dt=*/*.parquet"))}


def edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def rerun_days(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {k.split("/")[0][3:] for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def matches_fresh_run(project: Path, name: str, *args: str) -> None:
    """A run of the current definitions into an empty root writes the same bytes."""
    fresh = f"data/fresh_{name}"
    train(project, *args, "--output-root", fresh)
    assert data_files(project / ROOT) == data_files(project / fresh)


def test_new_feature_and_changed_window_rerun_every_day_like_a_fresh_run(trained):
    project = trained
    before = mtimes(project / ROOT)

    # A new derived feature in a view: every day gains the column.
    edit(
        project / "feature_views/user_profile.yaml",
        lambda v: v["features"].append(
            {"name": "log_following", "dtype": "float64", "expr": "ln(1 + following_count)"}
        ),
    )
    train(project, "--skeleton-only")
    after = mtimes(project / ROOT)
    assert rerun_days(before, after) == set(DAYS)
    names = pq.read_schema(project / ROOT / "dt=2026-04-02/part-0-0.parquet").names
    assert "user_profile__log_following" in names

    # A changed window: the renamed column, over the new window.
    edit(
        project / "config/training/aggregations.yaml",
        lambda c: next(a for a in c["aggregations"] if a["name"] == "user_engagement").update(
            windows=["2h", "1d", "7d"]
        ),
    )
    train(project, "--skeleton-only")
    assert rerun_days(after, mtimes(project / ROOT)) == set(DAYS)
    names = pq.read_schema(project / ROOT / "dt=2026-04-02/part-0-0.parquet").names
    assert "user_engagement__clicks_2h" in names and "user_engagement__clicks_1h" not in names
    matches_fresh_run(project, "edited", "--skeleton-only")


def test_enrich_only_change_reruns_only_enrich(trained):
    project, day = trained, "2026-04-02"
    skeleton, skeleton_days = data_files(project / ROOT), mtimes(project / ROOT)
    enriched = mtimes(project / ENRICHED)
    assert enriched

    edit(project / "feature_services/dssm_ranking.yaml", lambda s: s.update(embeddings=["history_emb"]))
    train(project, "--target-date", day)
    # No skeleton day reran. (qid_map.parquet may be rewritten with the same bytes: with
    # --target-date its rule has fewer inputs, which Snakemake counts as a change.)
    assert mtimes(project / ROOT) == skeleton_days and data_files(project / ROOT) == skeleton
    assert rerun_days(enriched, mtimes(project / ENRICHED)) == {day}  # the day asked for, and only enrich
    names = pq.read_schema(next((project / ENRICHED / f"dt={day}").glob("*.parquet"))).names
    assert "history_emb" in names and "artwork_emb" not in names
