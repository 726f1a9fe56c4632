"""Feast's point-in-time joins (DuckDB offline store) on the bench data: the joins of bench_joins.

Run with the Python of Feast's own virtual environment (bench/run.py creates it):

    bench/work/feast-venv/bin/python bench/feast_joins.py <data root> <first day> <last day> <out.parquet>

The feature sources are given to Feast as one parquet file each (bench/run.py writes them from
the day partitions, in source order), the layout its file sources read best. Feast has no
offline windows, so this is compared with `bench_joins` (joins only). Feast's
output is unsorted; bench/run.py compares the two as multisets of rows.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.types import Int64, String


def main() -> None:
    root, lo, hi, out = (
        Path(sys.argv[1]),
        dt.date.fromisoformat(sys.argv[2]),
        dt.date.fromisoformat(sys.argv[3]),
        sys.argv[4],
    )
    t0 = time.perf_counter()
    feed = sorted(
        str(p)
        for p in (root / "data/sources/feed").glob("dt=*/*.parquet")
        if lo.isoformat() <= p.parent.name[3:] <= hi.isoformat()
    )
    entity_df = pq.read_table(feed, columns=["event_timestamp", "user_id", "artwork_id"]).to_pandas()
    repo = Path(tempfile.mkdtemp(prefix="feast-repo-"))
    config = RepoConfig(
        project="bench",
        provider="local",
        registry=str(repo / "registry.db"),
        offline_store=DuckDBOfflineStoreConfig(),
        online_store={"type": "sqlite", "path": str(repo / "online.db")},
        entity_key_serialization_version=3,
        repo_path=str(repo),
    )
    user = Entity(name="user", join_keys=["user_id"])
    artwork = Entity(name="artwork", join_keys=["artwork_id"])
    up = FeatureView(
        name="user_profile",
        entities=[user],
        ttl=timedelta(days=30),
        schema=[Field(name="follower_count", dtype=Int64), Field(name="Country", dtype=String)],
        source=FileSource(
            path=str((root / "data/feast/user_profile.parquet").resolve()),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_at",
        ),
    )
    ast = FeatureView(
        name="artwork_stats",
        entities=[artwork],
        ttl=timedelta(days=7),
        schema=[Field(name="like_count", dtype=Int64), Field(name="category", dtype=String)],
        source=FileSource(
            path=str((root / "data/feast/artwork_stats.parquet").resolve()), timestamp_field="event_timestamp"
        ),
    )
    store = FeatureStore(config=config)
    store.apply([user, artwork, up, ast])
    t1 = time.perf_counter()
    job = store.get_historical_features(
        entity_df=entity_df,
        full_feature_names=True,
        features=[
            "user_profile:follower_count",
            "user_profile:Country",
            "artwork_stats:like_count",
            "artwork_stats:category",
        ],
    )
    table = job.to_arrow()
    pq.write_table(table, out, compression="zstd")
    print(json.dumps({"rows": table.num_rows, "setup_s": t1 - t0, "join_s": time.perf_counter() - t1}))


if __name__ == "__main__":
    main()
