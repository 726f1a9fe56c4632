"""approx_count_distinct: a HyperLogLog sketch whose result depends only on the set of values
in the window, never on how the events are split into files (day partitions, workers) or
ordered, and stays within its documented error bound (daedalus.functions)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from daedalus.plan import Column, Plan, SourceSpec, make_op
from daedalus.skeleton.context import DayContext
from daedalus.skeleton.stage import IMPLEMENTATIONS

DAY = dt.date(2026, 3, 10)
START = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
USERS = 12


def _plan(spine: Path, events: Path) -> Plan:
    ts = "timestamp[us, tz=UTC]"
    spine_op = make_op(
        kind="spine",
        name="spine",
        engine="sql",
        inputs=["source:spine"],
        outputs=[Column(name="event_timestamp", type=ts), Column(name="user_id", type="int64")],
        params={"source": "spine", "entities": ["user_id"]},
    )
    agg = make_op(
        kind="window_agg",
        name="window_agg.a",
        engine="sql",
        inputs=["spine", "source:events"],
        outputs=[Column(name="acd", type="int64")],
        params={
            "aggregation": "a",
            "source": "events",
            "group_by": ["user_id"],
            "features": [{"output": "acd", "function": "approx_count_distinct", "column": "item", "window": "3d"}],
        },
    )
    return Plan(
        service="sketch",
        sources={
            "spine": SourceSpec(
                path=str(spine), timestamp_field="event_timestamp", columns={"event_timestamp": ts, "user_id": "int64"}
            ),
            "events": SourceSpec(
                path=str(events),
                timestamp_field="event_timestamp",
                lookback_days=None,
                columns={"event_timestamp": ts, "user_id": "int64", "item": "int64"},
            ),
        },
        operators=[spine_op, agg],
    )


def _events(seed: int) -> pa.Table:
    """Users with 1 to 50,000 distinct items over the 3 days before DAY, each item seen 1-3 times."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(USERS):
        n = int(np.geomspace(1, 50_000, USERS)[u])
        distinct = rng.choice(10**9, n, replace=False)
        reps = np.repeat(distinct, rng.integers(1, 4, n))
        users.append(np.full(len(reps), u))
        items.append(reps)
    user, item = np.concatenate(users), np.concatenate(items)
    offs = rng.integers(-3 * 86_400_000_000, 0, len(user))
    ts = pa.array(np.datetime64(START.replace(tzinfo=None), "us") + offs.astype("timedelta64[us]")).cast(
        pa.timestamp("us", tz="UTC")
    )
    return pa.table({"event_timestamp": ts, "user_id": pa.array(user, pa.int64()), "item": pa.array(item, pa.int64())})


def _run(tmp: Path, events: pa.Table, layout: str, seed: int) -> dict[int, int]:
    root = tmp / layout
    (root / "events").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    if layout == "by_day":  # one file per day partition, in time order
        events = events.sort_by("event_timestamp")
        days = pa.compute.floor_temporal(events["event_timestamp"], unit="day")
        files = []
        for d in sorted(set(days.to_pylist())):
            part = events.filter(pa.compute.equal(days, pa.scalar(d, days.type)))
            path = root / "events" / f"dt={d:%Y-%m-%d}" / "part-0.parquet"
            path.parent.mkdir()
            pq.write_table(part, path)
            files.append(str(path))
    else:  # shuffled rows in files of random sizes, as parallel writers leave them
        events = events.take(pa.array(rng.permutation(len(events))))
        cuts = np.sort(rng.choice(np.arange(1, len(events)), 6, replace=False))
        files = []
        for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(events)])):
            path = root / "events" / f"part-{i}.parquet"
            pq.write_table(events.slice(a, b - a), path)
            files.append(str(path))
    spine = root / "spine.parquet"
    pq.write_table(
        pa.table(
            {
                "event_timestamp": pa.array([START] * USERS, pa.timestamp("us", tz="UTC")),
                "user_id": pa.array(range(USERS), pa.int64()),
            }
        ),
        spine,
    )
    plan = _plan(spine, root / "events")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ctx = DayContext(con=con, plan=plan, day=DAY, files={"spine": [str(spine)], "events": files}, output_root=root)
    for op in plan.skeleton_operators:
        IMPLEMENTATIONS[(op.kind, op.engine)](ctx, op)
    rows = con.execute('SELECT user_id, acd FROM "t:window_agg.a" ORDER BY user_id').fetchall()
    con.close()
    return dict(rows)


def test_the_sketch_ignores_files_and_order_and_keeps_its_error_bound(tmp_path: Path) -> None:
    events = _events(7)
    exact = dict(
        duckdb.sql("SELECT user_id, count(DISTINCT item) FROM events GROUP BY user_id").fetchall()  # noqa: S608
    )
    by_day = _run(tmp_path, events, "by_day", 1)
    assert by_day == _run(tmp_path, events, "shuffled", 2)
    for u, n in exact.items():
        # The documented bound: standard error about 3%; 4 standard errors, or one value.
        assert abs(by_day[u] - n) <= max(1, 0.12 * n), (u, n, by_day[u])
