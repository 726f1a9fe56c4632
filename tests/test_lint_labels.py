"""The leakage lint's label check: a label column (a label window's output, a spine label) used
as a feature input is an error, with or without --strict, before any output is written."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from projects import DAEDA, run

from daedalus.compile import compile_service
from daedalus.errors import DaedalusError
from daedalus.lint import lint, report
from daedalus.loading import DefinitionPaths

LABEL = "likes_ahead__likes_1d"


def _edit_yaml(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _errors(project, monkeypatch) -> list[str]:
    monkeypatch.chdir(project)
    return [w.line() for w in lint(compile_service("dssm_ranking", DefinitionPaths(), output_dir=None)) if w.error]


def test_the_demo_uses_no_label_as_a_feature(project, monkeypatch):
    assert _errors(project, monkeypatch) == []


def test_an_embedding_over_a_label_window_column_fails_compile_and_train(project, monkeypatch):
    _edit_yaml(
        project / "config/training/aggregations.yaml", lambda d: d["embeddings"].append({"name": "leak", "ids": LABEL})
    )
    _edit_yaml(project / "feature_services/dssm_ranking.yaml", lambda d: d["embeddings"].append("leak"))
    expected = (
        "daeda: error: config/training/aggregations.yaml: embedding 'leak': ids: 'likes_ahead__likes_1d' is a "
        "label (label window 'likes_ahead'): a label is never a feature input"
    )
    assert _errors(project, monkeypatch) == [expected]
    res = run(DAEDA + ["pipeline", "compile", "dssm_ranking", "--no-write"], project, check=False)
    assert res.returncode == 2 and res.stderr.splitlines()[-1] == expected
    res = run(DAEDA + ["pipeline", "train", "dssm_ranking"], project, check=False)
    assert res.returncode == 2 and res.stderr.splitlines()[-1] == expected
    assert not (project / "data/training_output").exists()


def test_a_view_over_the_spine_reading_a_spine_label_is_an_error(project, monkeypatch):
    (project / "feature_views/own_label.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "own_label",
                "entities": ["user_id"],
                "ttl": "1d",
                "source": {"path": "data/demo/sources/feed", "timestamp_field": "event_timestamp"},
                "features": [{"name": "liked_before", "dtype": "int64", "expr": "CAST(liked AS BIGINT)"}],
            }
        )
    )
    _edit_yaml(project / "feature_services/dssm_ranking.yaml", lambda d: d["features"].append("own_label"))
    assert _errors(project, monkeypatch) == [
        "daeda: error: feature_views/own_label.yaml: view 'own_label' reads the spine's own source, and 'liked' "
        "is a label (spine labels): the join picks the row itself, so the feature is the row's label"
    ]


@pytest.mark.parametrize("writer", ["pyarrow", "pandas"])
def test_features_read_back_from_the_training_output_may_not_read_label_columns(project, monkeypatch, writer):
    part = project / "data/training_output/dt=2026-03-31"
    part.mkdir(parents=True)
    t0 = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)
    table = pa.table(
        {
            "event_timestamp": pa.array([t0], pa.timestamp("us", tz="UTC")),
            "user_id": pa.array([1], pa.int64()),
            LABEL: pa.array([2], pa.int64()),
        }
    )
    if writer == "pandas":
        table.to_pandas().to_parquet(part / "part-0-0.parquet", index=False)
        assert isinstance(pd.read_parquet(part / "part-0-0.parquet"), pd.DataFrame)
    else:
        pq.write_table(table, part / "part-0-0.parquet")
    (project / "feature_views/read_back.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "read_back",
                "entities": ["user_id"],
                "ttl": "7d",
                "source": {"path": "data/training_output", "timestamp_field": "event_timestamp"},
                "features": [{"name": "likes", "dtype": "int64", "column": LABEL}],
            }
        )
    )

    def add_agg(d):
        d["aggregations"].append(
            {
                "name": "label_sums",
                "group_by": ["user_id"],
                "windows": ["2d"],
                "source": {"path": "data/training_output", "timestamp_field": "event_timestamp"},
                "features": [{"name": "s", "function": "sum", "column": LABEL}],
            }
        )

    _edit_yaml(project / "config/training/aggregations.yaml", add_agg)

    def add(d):
        d["features"].append("read_back")
        d["aggregations"].append("label_sums")

    _edit_yaml(project / "feature_services/dssm_ranking.yaml", add)
    found = _errors(project, monkeypatch)
    assert found == [
        "daeda: error: feature_views/read_back.yaml: view 'read_back' reads 'likes_ahead__likes_1d' from "
        "'data/training_output', the training output of service 'dssm_ranking': 'likes_ahead__likes_1d' is a "
        "label (label window 'likes_ahead'), never a feature input",
        "daeda: error: config/training/aggregations.yaml: aggregation 'label_sums' reads 'likes_ahead__likes_1d' "
        "from 'data/training_output', the training output of service 'dssm_ranking': 'likes_ahead__likes_1d' is "
        "a label (label window 'likes_ahead'), never a feature input",
    ]
    with pytest.raises(DaedalusError) as e:  # an error even without --strict; the first is the command's line
        report(lint(compile_service("dssm_ranking", DefinitionPaths(), output_dir=None)), strict=False)
    assert str(e.value) == found[0].removeprefix("daeda: error: ")
