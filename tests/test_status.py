"""`daeda pipeline status`: Snakemake's own rerun decisions, per day and stage; and train's progress lines."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow.parquet as pq
import pytest
from projects import DAEDA, run

from daedalus.status import EXIT_NOT_UP_TO_DATE, classify

pytestmark = pytest.mark.e2e

DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]
ROOT = "data/training_output"


def status(project, *args):
    res = run(DAEDA + ["pipeline", "status", "dssm_ranking", "--json", *args], project, check=False)
    assert res.returncode in (0, EXIT_NOT_UP_TO_DATE), res.stderr
    data = json.loads(res.stdout)
    table = {
        d["day"]: (d["skeleton"]["state"], d["skeleton"]["reasons"], d["enrich"]["state"], d["enrich"]["reasons"])
        for d in data["days"]
    }
    return res.returncode, table, data


def test_train_shows_one_line_per_finished_day(trained_template):
    err = (trained_template.parent / "train.stderr").read_text()
    for day in DAYS:
        assert re.search(rf"done skeleton_day dt={day}\s+\d+ rows\s+[0-9.]+ s", err), err
        assert re.search(rf"done enrich_day dt={day}\s+\d+ rows\s+[0-9.]+ s", err), err
    assert "[7/7]" in err  # 3 skeleton + 3 enrich days + qid_map


def test_everything_done_after_train(trained):
    res = run(DAEDA + ["pipeline", "status", "dssm_ranking"], trained)
    assert res.returncode == 0
    assert "up to date" in res.stdout and "3 done, 0 stale, 0 missing" in res.stdout
    assert all(f"{d} │ done     │ done" in res.stdout for d in DAYS), res.stdout


def test_source_code_and_missing(trained):
    # A changed partition of user_profile (ttl 30d) is read by 04-02 and every later day.
    part = trained / "data/demo/sources/user_profile/dt=2026-04-02/part-0.parquet"
    t = pq.read_table(part)
    pq.write_table(t.slice(0, t.num_rows - 1), part)
    # An enriched day removed by hand.
    shutil.rmtree(trained / f"{ROOT}_enriched/dt=2026-04-01")
    rc, table, data = status(trained)
    assert rc == EXIT_NOT_UP_TO_DATE and not data["up_to_date"]
    assert table["2026-04-01"] == ("done", [], "missing", [])
    assert table["2026-04-02"] == ("stale", ["source changed"], "stale", ["skeleton changed"])
    assert table["2026-04-03"] == ("stale", ["source changed"], "stale", ["skeleton changed"])
    assert data["totals"] == {
        "skeleton": {"done": 1, "stale": 2, "missing": 0, "waiting": 0},
        "enrich": {"done": 0, "stale": 2, "missing": 1, "waiting": 0},
    }
    # --target-date narrows the table to that day.
    rc, table, _ = status(trained, "--target-date", "2026-04-02")
    assert list(table) == ["2026-04-02"] and rc == EXIT_NOT_UP_TO_DATE


def test_definition_changed(trained):
    view = trained / "feature_views/user_profile.yaml"
    view.write_text(view.read_text().replace("ln(1 + follower_count)", "ln(2 + follower_count)"))
    rc, table, _ = status(trained)
    assert rc == EXIT_NOT_UP_TO_DATE
    for day in DAYS:
        assert table[day] == ("stale", ["definition changed"], "stale", ["skeleton changed"])


def test_reason_mapping():
    assert classify("skeleton", "Missing output files: x").state == "missing"
    s = classify("skeleton", "Updated input files: a, b; Params have changed since last execution: x")
    assert (s.state, s.reasons) == ("stale", ["source changed", "definition changed"])
    assert classify("skeleton", "Set of input files has changed since last execution").reasons == ["source changed"]
    assert classify("enrich", "Updated input files: r/dt=1").reasons == ["skeleton changed"]
    assert classify("enrich", "Software environment definition has changed since last execution").reasons == [
        "code changed"
    ]
    assert classify("skeleton", "Incomplete output files: x").reasons == ["interrupted run"]
