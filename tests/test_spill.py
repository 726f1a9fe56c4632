"""Memory safety: a day larger than DuckDB's memory_limit spills to the configured temp
directory and still gives exactly the rows of an unconstrained run."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import yaml
from test_engines import assert_tables_equal, read_day

from daedalus.compile import compile_service
from daedalus.definitions import RuntimeConfig
from daedalus.demo import generate_demo
from daedalus.loading import DefinitionPaths, load_model
from daedalus.skeleton import run_skeleton_stage

DAY = dt.date(2026, 4, 8)
VIEW = {
    "name": "user_profile",
    "entities": ["user_id"],
    "ttl": "30d",
    "source": {
        "path": "data/sources/user_profile",
        "timestamp_field": "event_timestamp",
        "created_timestamp_field": "created_at",
    },
    "features": [
        {"name": "follower_count", "dtype": "int64"},
        {"name": "country", "dtype": "string", "column": "Country"},
    ],
}
SERVICE = {
    "name": "spill",
    "features": ["user_profile"],
    "aggregations": ["user_activity", "artwork_activity"],
    "spine": {
        "source": {"path": "data/sources/feed", "timestamp_field": "event_timestamp"},
        "entities": ["user_id", "artwork_id"],
        "session_field": "feed_session",
        "labels": ["clicked"],
    },
}
AGGS = {
    "aggregations": [
        {
            "name": "user_activity",
            "source": "spine",
            "group_by": ["user_id"],
            "windows": ["1h", "1d", "7d"],
            "features": [
                {"name": "impressions", "function": "count"},
                {"name": "clicks", "column": "clicked", "function": "sum"},
            ],
        },
        {
            "name": "artwork_activity",
            "source": "spine",
            "group_by": ["artwork_id"],
            "windows": ["7d"],
            "features": [
                {"name": "impressions", "function": "count"},
                {"name": "clicks", "column": "clicked", "function": "sum"},
            ],
        },
    ]
}


def test_day_larger_than_memory_limit_spills_and_matches(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generate_demo(Path("data"), start=DAY, end=DAY, lookback_days=7, users=300, artworks=750, events_per_day=30000)
    for path, doc in (
        ("feature_views/user_profile.yaml", VIEW),
        ("feature_services/spill.yaml", SERVICE),
        ("config/training/aggregations.yaml", AGGS),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(yaml.safe_dump(doc))
    runtime = {
        "feed_start": DAY.isoformat(),
        "feed_end": DAY.isoformat(),
        "output_root": "out",
        "duckdb": {"threads": 1, "memory_limit": "26MB", "temp_directory": "spill_tmp"},
    }
    Path("config/training/runtime.yaml").write_text(yaml.safe_dump(runtime))
    settings = load_model(RuntimeConfig, Path("config/training/runtime.yaml")).duckdb
    plan = compile_service("spill", DefinitionPaths()).plan

    run_skeleton_stage(plan, DAY, Path("free"), chunk_rows=7000)  # default settings: gigabytes

    peak = [0]
    done = threading.Event()

    def watch() -> None:  # spill files live only while an operator needs them
        while not done.is_set():
            try:
                peak[0] = max(peak[0], sum(e.stat().st_size for e in os.scandir("spill_tmp")))
            except OSError:
                pass
            done.wait(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        res = run_skeleton_stage(plan, DAY, Path("out"), chunk_rows=7000, duckdb_settings=settings, threads=1)
    finally:
        done.set()
        watcher.join()
    assert res.rows > 25000 and res.parts == 5
    assert peak[0] > 0, "nothing was spilled to the configured temp_directory"
    assert_tables_equal(read_day(Path("free"), DAY.isoformat()), read_day(Path("out"), DAY.isoformat()))
