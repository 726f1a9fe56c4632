"""A changed definition reruns exactly what it affects, and the result is what a fresh run
with the new definition writes. (A TTL change is covered in test_workflow.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from projects import DAEDA, data_files, run, train

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


# Computed by every day job that runs (their tables are not kept: daedalus.skeleton.columns).
ALWAYS = {"qid", "udf.user_profile.country_bucket", "udf.artwork_stats.price_band"}


def computed(project: Path) -> dict[str, set[str]]:
    """Per day, the operators its last skeleton job computed (the others' tables were kept)."""
    out = {}
    for day in DAYS:
        log = (project / ROOT / ".daedalus/logs/skeleton" / f"dt={day}.log").read_text()
        line = [ln for ln in log.splitlines() if "operators computed: " in ln][-1]
        out[day] = set(json.loads(line.split("operators computed: ", 1)[1])) - ALWAYS
    return out


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
    # Only the view's derived features were computed; every other table was kept.
    assert computed(project) == dict.fromkeys(DAYS, {"derive.user_profile"})

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
    assert computed(project) == dict.fromkeys(DAYS, {"window_agg.user_engagement"})
    matches_fresh_run(project, "edited", "--skeleton-only")


def test_each_operator_change_computes_only_that_operator_like_a_fresh_run(trained):
    """Per-operator columns: a view's subset, a new aggregation and a removed one each compute
    exactly the operators they change (nothing but the assembly for a removal), and each
    result is the bytes of a fresh run of the new definitions."""
    project = trained

    # Fewer features of a view: its join (and what derives from it) only.
    def subset(s):
        s["features"][1]["features"].remove("is_featured")

    edit(project / "feature_services/dssm_ranking.yaml", subset)
    # `status` names them before the run.
    res = run(DAEDA + ["pipeline", "status", "dssm_ranking", "--json"], project, check=False)
    days = {d["day"]: d["skeleton"] for d in json.loads(res.stdout)["days"]}
    for day in DAYS:
        assert days[day]["state"] == "stale" and "definition changed" in days[day]["reasons"]
        assert days[day]["operators"] == ["pit_join.artwork_stats", "derive.artwork_stats"]
    train(project, "--skeleton-only")
    assert computed(project) == dict.fromkeys(DAYS, {"pit_join.artwork_stats", "derive.artwork_stats"})
    names = pq.read_schema(project / ROOT / "dt=2026-04-02/part-0-0.parquet").names
    assert "artwork_stats__is_featured" not in names
    matches_fresh_run(project, "subset", "--skeleton-only")

    # A new aggregation: that aggregation only.
    def add_agg(c):
        c["aggregations"].append(
            {
                "name": "user_likes_1d",
                "source": c["aggregations"][3]["source"],
                "group_by": ["user_id"],
                "windows": ["1d"],
                "features": [{"name": "likes", "function": "count"}],
            }
        )

    edit(project / "config/training/aggregations.yaml", add_agg)
    edit(project / "feature_services/dssm_ranking.yaml", lambda s: s["aggregations"].append("user_likes_1d"))
    train(project, "--skeleton-only")
    assert computed(project) == dict.fromkeys(DAYS, {"window_agg.user_likes_1d"})
    assert "user_likes_1d__likes_1d" in pq.read_schema(project / ROOT / "dt=2026-04-02/part-0-0.parquet").names
    matches_fresh_run(project, "added", "--skeleton-only")

    # A removed aggregation: nothing but the assembly.
    edit(project / "feature_services/dssm_ranking.yaml", lambda s: s["aggregations"].remove("artwork_likes"))
    train(project, "--skeleton-only")
    assert computed(project) == dict.fromkeys(DAYS, set())
    assert not any(
        n.startswith("artwork_likes__") for n in pq.read_schema(project / ROOT / "dt=2026-04-02/part-0-0.parquet").names
    )
    matches_fresh_run(project, "removed", "--skeleton-only")


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
