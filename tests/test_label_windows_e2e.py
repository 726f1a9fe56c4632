"""Label windows end to end: `daeda pipeline train` leaves the days whose label horizon the data
does not cover unwritten, `status` shows them `waiting` (exit 0), and the run after the next
partition arrives writes them, with the label values of the naive reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from projects import DAEDA, make_project, run, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402
import reference_labels as RL  # noqa: E402

pytestmark = pytest.mark.e2e

LABEL = "likes_ahead__likes_1d"
LIKES = "data/demo/sources/likes"


def _status(project: Path) -> tuple[int, dict]:
    res = run(DAEDA + ["pipeline", "status", "dssm_ranking", "--json"], project, check=False)
    return res.returncode, json.loads(res.stdout)


def _states(status: dict) -> dict[str, str]:
    return {d["day"]: d["skeleton"]["state"] for d in status["days"]}


def _written(project: Path) -> list[str]:
    return sorted(p.name[3:] for p in (project / "data/training_output").glob("dt=*"))


def _expected_labels(project: Path, day: str) -> list[int]:
    """The naive reference over every likes partition there is (events (t, t + 1d])."""
    files = sorted((project / LIKES).glob("dt=*/*.parquet"))
    likes = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    events = [
        {"user_id": u, "artwork_id": a, "_ts": R.us_of(t)}
        for u, a, t in zip(
            likes["user_id"].to_pylist(), likes["artwork_id"].to_pylist(), likes["event_timestamp"].to_pylist()
        )
    ]
    out = pq.read_table(project / f"data/training_output/dt={day}")
    keys = zip(out["user_id"].to_pylist(), out["artwork_id"].to_pylist(), out["event_timestamp"].to_pylist())
    return [
        len(RL.label_events(events, ["user_id", "artwork_id"], {"user_id": u, "artwork_id": a}, R.us_of(t), RL.DAY_US))
        for u, a, t in keys
    ]


def test_waiting_days_are_written_once_their_partition_arrives(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", data_end="2026-04-03")  # likes end with the range
    res = train(project)
    assert "2 day(s) waiting for label data (2026-04-02..2026-04-03" in " ".join(res.stderr.split())
    assert _written(project) == ["2026-04-01"]
    rc, st = _status(project)
    assert rc == 0 and st["up_to_date"], st
    assert _states(st) == {"2026-04-01": "done", "2026-04-02": "waiting", "2026-04-03": "waiting"}
    day2 = next(d for d in st["days"] if d["day"] == "2026-04-02")
    assert day2["skeleton"]["reasons"] == [
        "label window 'likes_ahead' (1d) needs partition dt=2026-04-04 of 'data/demo/sources/likes'"
    ]
    assert day2["enrich"]["state"] == "waiting" and st["totals"]["skeleton"]["waiting"] == 2
    assert (
        _expected_labels(project, "2026-04-01")
        == pq.read_table(project / "data/training_output/dt=2026-04-01")[LABEL].to_pylist()
    )
    first = (project / "data/training_output/dt=2026-04-01/part-0-0.parquet").stat().st_mtime_ns
    train(project)  # nothing to do: Snakemake says so, and train records it

    # The partition of 04-04 arrives (pandas writes it): one like, an hour after a row of
    # 04-03 late in the day, by that row's user of that row's artwork. 04-02 is now complete.
    rows = pq.read_table(project / f"{LIKES}/dt=2026-04-03").to_pandas()
    spine = pq.read_table(project / "data/demo/sources/feed/dt=2026-04-03").to_pandas()
    row = spine.sort_values("event_timestamp").iloc[-1]
    like = pd.DataFrame(
        {
            "event_timestamp": [row["event_timestamp"] + pd.Timedelta(hours=1)],
            "user_id": pd.array([row["user_id"]], "int64"),
            "artwork_id": pd.array([row["artwork_id"]], "int64"),
            "surface": ["search"],
        }
    )[list(rows.columns)]
    (project / f"{LIKES}/dt=2026-04-04").mkdir()
    like.to_parquet(project / f"{LIKES}/dt=2026-04-04/part-0.parquet", index=False)
    train(project)
    assert _written(project) == ["2026-04-01", "2026-04-02"]
    assert (project / "data/training_output/dt=2026-04-01/part-0-0.parquet").stat().st_mtime_ns == first
    rc, st = _status(project)
    assert rc == 0 and _states(st) == {"2026-04-01": "done", "2026-04-02": "done", "2026-04-03": "waiting"}

    # 04-05 arrives (pyarrow, no events): 04-03 is written, the like of 04-04 in its label.
    (project / f"{LIKES}/dt=2026-04-05").mkdir()
    pq.write_table(
        pa.Table.from_pandas(like.iloc[:0], preserve_index=False), project / f"{LIKES}/dt=2026-04-05/p.parquet"
    )
    train(project)
    assert _written(project) == ["2026-04-01", "2026-04-02", "2026-04-03"]
    for day in ("2026-04-02", "2026-04-03"):
        got = pq.read_table(project / f"data/training_output/dt={day}")[LABEL].to_pylist()
        assert got == _expected_labels(project, day), day
    last = pq.read_table(project / "data/training_output/dt=2026-04-03").to_pandas()
    hit = last[(last.user_id == row["user_id"]) & (last.artwork_id == row["artwork_id"])]
    assert hit[LABEL].iloc[-1] >= 1
    rc, st = _status(project)
    assert rc == 0 and set(_states(st).values()) == {"done"}

    # A later partition that changes reruns the days whose label horizon reaches it: 04-04's
    # like moves, so 04-03 (its window holds 04-04) reruns, computing only the label window;
    # 04-01 and 04-02 do not read 04-04 (the features over likes read only days before).
    like["event_timestamp"] = like["event_timestamp"] + pd.Timedelta(minutes=1)
    like.to_parquet(project / f"{LIKES}/dt=2026-04-04/part-0.parquet", index=False)
    rc, st = _status(project)
    assert rc == 3 and _states(st) == {"2026-04-01": "done", "2026-04-02": "done", "2026-04-03": "stale"}
    day3 = next(d for d in st["days"] if d["day"] == "2026-04-03")["skeleton"]
    assert day3["reasons"] == ["source changed"] and day3["operators"] == ["label_window.likes_ahead"], day3
