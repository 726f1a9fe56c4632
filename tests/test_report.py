"""Data-quality sidecars (checked against the data) and the HTML report (checked in headless Chromium)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from browser import load_page, try_install_browser
from projects import DAEDA, REPO, run

from daedalus.plan import load_plan
from daedalus.quality import read_stats, stats_path

pytestmark = pytest.mark.e2e

DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]
ROOT = "data/training_output"
SCREENSHOT = REPO / "build" / "test-artifacts" / "report.png"


def _day(project: Path, root: str, day: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((project / root / f"dt={day}").glob("*.parquet"))])


def test_skeleton_stats_match_the_data(trained_template):
    plan = load_plan(trained_template / "config/pipelines/dssm_ranking.generated.yaml")
    stats = read_stats(trained_template / ROOT, "skeleton")
    assert sorted(stats) == DAYS
    for day in DAYS:
        t, s = _day(trained_template, ROOT, day), stats[day]
        n = t.num_rows
        assert s["rows"] == n > 0
        for label in ("clicked", "liked"):
            assert s["label_rate"][label] == round(pc.sum(t[label].cast(pa.int64())).as_py() / n, 6)
        produced = {c.name for o in plan.operators if o.kind in ("derive", "udf", "window_agg") for c in o.outputs}
        feats = [c for c in t.column_names if c in produced]  # in output order
        assert list(s["null_rate"]) == feats
        for c in feats:
            assert s["null_rate"][c] == round(t[c].null_count / n, 6), c
        impressions = t["user_engagement__impressions_1h"].to_numpy()
        assert s["window_coverage"]["user_engagement_1h"] == round(float((impressions > 0).mean()), 6)
        # A view's hit rate is at least the share of rows with some non-null value of it.
        for view in ("user_profile", "artwork_stats"):
            cols = [c for c in t.column_names if c.startswith(view + "__")]
            some = pc.or_kleene(*[t[c].is_valid() for c in cols[:2]]) if len(cols) > 1 else t[cols[0]].is_valid()
            assert 1 >= s["pit_hit_rate"][view] >= round(pc.sum(some).as_py() / n, 6) - 1e-6


def test_enrich_stats_match_the_data(trained_template):
    stats = read_stats(trained_template / ROOT, "enrich")
    assert sorted(stats) == DAYS
    for day in DAYS:
        t = _day(trained_template, ROOT + "_enriched", day)
        for name in ("artwork_emb", "history_emb"):
            found = pc.sum(pc.greater(t[f"{name}_count"], 0)).as_py()
            assert stats[day]["embedding_hit_rate"][name] == round(found / t.num_rows, 6)
            assert stats[day]["embedding_ids_found"][name] == pc.sum(t[f"{name}_count"]).as_py()


def test_stats_are_deterministic(trained_template, tmp_path, monkeypatch):
    """The same day computed again (in process, another root) gives the same sidecar bytes."""
    from daedalus.skeleton import run_skeleton_stage

    monkeypatch.chdir(trained_template)
    plan = load_plan(Path("config/pipelines/dssm_ranking.generated.yaml"))
    run_skeleton_stage(plan, dt.date(2026, 4, 2), tmp_path / "out", chunk_rows=50, threads=1)
    assert (
        stats_path(tmp_path / "out", "skeleton", "2026-04-02").read_bytes()
        == stats_path(ROOT, "skeleton", "2026-04-02").read_bytes()
    )
    # Not inside the day: the day directory holds only its parts.
    assert all(
        p.name.startswith("part-") for p in (tmp_path / "out/dt=2026-04-02").iterdir() if not p.name.startswith(".")
    )


@pytest.fixture(scope="module")
def report_page(trained_template, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = run(DAEDA + ["pipeline", "report", "dssm_ranking", "--output", str(out)], trained_template)
    assert f"wrote {out}" in res.stderr.replace("\n", "")
    return out


def test_report_is_self_contained(report_page):
    text = report_page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "src=" not in text and 'href="http' not in text
    assert text.count("<svg") >= 6  # rows, labels, hits, coverage, embeddings, null rates
    for name in ("user_profile", "artwork_stats", "user_engagement_1h", "history_emb", "artwork_stats__price"):
        assert name in text


def test_report_without_statistics_is_an_error(project):
    res = run(DAEDA + ["pipeline", "report", "dssm_ranking"], project, check=False)
    assert res.returncode == 2
    assert res.stderr.startswith("daeda: error: data/training_output: no data-quality statistics yet")


@pytest.mark.browser
def test_report_in_headless_chromium(report_page, tmp_path):
    browser = try_install_browser()
    if browser is None:
        pytest.skip("no Chromium: install Debian's `chromium` (the test installs it itself when run as root with apt)")
    errors = load_page(browser, report_page, SCREENSHOT, tmp_path / "profile")
    assert errors == []
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The check itself works: a page with errors is caught.
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); no_such_function();</script></body></html>")
    errors = load_page(browser, bad, tmp_path / "bad.png", tmp_path / "profile2")
    assert any("boom" in e for e in errors) and any("Uncaught" in e for e in errors)
