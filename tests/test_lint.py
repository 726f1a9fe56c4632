"""Leakage lint at compile (and train): one warning line per finding, failure with --strict."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from projects import DAEDA, run

from daedalus.compile import compile_service
from daedalus.lint import lint
from daedalus.loading import DefinitionPaths


def lines(project, monkeypatch):
    monkeypatch.chdir(project)
    return [w.line() for w in lint(compile_service("dssm_ranking", DefinitionPaths(), output_dir=None))]


def test_the_demo_leaks_only_through_created_at(project, monkeypatch):
    found = lines(project, monkeypatch)
    # The demo's profile rows are written 0.5 s-5 min after their event time (corrections up to
    # 6 h after): a spine row in between sees a value that did not exist yet. A real finding.
    assert len(found) == 1, found
    assert found[0].startswith("daeda: warning: feature_views/user_profile.yaml: view 'user_profile': ")
    assert "have created_at later than event_timestamp (by up to " in found[0]


def _edit_yaml(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_each_check(project, monkeypatch):
    # A view over the spine's own source, and a view without ttl.
    (project / "feature_views/feed_history.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "feed_history",
                "entities": ["user_id"],
                "ttl": "1d",
                "source": {"path": "data/demo/sources/feed", "timestamp_field": "event_timestamp"},
                "features": [{"name": "position", "dtype": "int64"}],
            }
        )
    )
    _edit_yaml(project / "feature_views/artwork_stats.yaml", lambda d: d.pop("ttl"))
    # An aggregation over day-stamped events with a 1h window.
    day0 = dt.datetime(2026, 3, 25, tzinfo=dt.UTC)
    (project / "data/daily").mkdir()
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1, 2, 3], pa.int64()),
                "event_timestamp": pa.array(
                    [day0 + dt.timedelta(days=i) for i in range(3)], pa.timestamp("us", tz="UTC")
                ),
            }
        ),
        project / "data/daily/part.parquet",
    )

    def add_agg(d):
        d["aggregations"].append(
            {
                "name": "daily_events",
                "group_by": ["user_id"],
                "windows": ["1h", "2d"],
                "source": {"path": "data/daily", "timestamp_field": "event_timestamp"},
                "features": [{"name": "n", "function": "count"}],
            }
        )

    _edit_yaml(project / "config/training/aggregations.yaml", add_agg)

    def add_to_service(d):
        d["features"].append("feed_history")
        d["aggregations"].append("daily_events")

    _edit_yaml(project / "feature_services/dssm_ranking.yaml", add_to_service)
    found = lines(project, monkeypatch)
    assert len(found) == 4, found
    assert found[0].startswith("daeda: warning: feature_views/user_profile.yaml: view 'user_profile': ")
    assert found[1] == (
        "daeda: warning: feature_views/artwork_stats.yaml: view 'artwork_stats' has no ttl: a value "
        "of any age is joined, however stale (set ttl to how long a value stays true)"
    )
    assert found[2].startswith(
        "daeda: warning: feature_views/feed_history.yaml: view 'feed_history' reads the "
        "spine's own source 'data/demo/sources/feed', the rows that carry the labels "
        "(clicked, liked)"
    )
    assert found[3].startswith(
        "daeda: warning: config/training/aggregations.yaml: aggregation 'daily_events': "
        "feature 'n': window 1h is shorter than the timestamp resolution of 'data/daily' (1d)"
    )


def test_strict_fails_compile_and_train_before_any_output(project):
    res = run(DAEDA + ["pipeline", "compile", "dssm_ranking", "--no-write"], project)
    assert res.stderr.startswith("daeda: warning: feature_views/user_profile.yaml:")
    res = run(DAEDA + ["pipeline", "compile", "dssm_ranking", "--no-write", "--strict"], project, check=False)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines()[-1] == "daeda: error: --strict: 1 leakage warning(s) above"
    res = run(DAEDA + ["pipeline", "train", "dssm_ranking", "--strict"], project, check=False)
    assert res.returncode == 2 and res.stderr.splitlines()[-1] == "daeda: error: --strict: 1 leakage warning(s) above"
    assert not (project / "data/training_output").exists()
