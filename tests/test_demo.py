"""Tests of the synthetic demo data generator (daedalus.demo)."""

from __future__ import annotations

import datetime
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from daedalus.demo import generate_demo

START = datetime.date(2026, 4, 1)
END = datetime.date(2026, 4, 3)
SMALL = dict(start=START, end=END, lookback_days=2, users=50, artworks=80, events_per_day=300, embedding_dim=16, seed=7)
DAYS = [datetime.date(2026, 3, 30) + datetime.timedelta(days=i) for i in range(5)]
SOURCES = ("feed", "user_profile", "artwork_stats", "likes")
UTC_TS = pa.timestamp("us", tz="UTC")

EXPECTED_SCHEMAS = {
    "feed": pa.schema(
        [
            ("event_timestamp", UTC_TS),
            ("user_id", pa.int64()),
            ("artwork_id", pa.int64()),
            ("feed_session", pa.string()),
            ("position", pa.int32()),
            ("device", pa.string()),
            ("clicked", pa.bool_()),
            ("liked", pa.bool_()),
        ]
    ),
    "user_profile": pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_timestamp", UTC_TS),
            ("created_at", UTC_TS),
            ("follower_count", pa.int64()),
            ("following_count", pa.int64()),
            ("Country", pa.string()),
            ("account_age_days", pa.int32()),
            ("bio_length", pa.int32()),
        ]
    ),
    "artwork_stats": pa.schema(
        [
            ("artwork_id", pa.int64()),
            ("event_timestamp", UTC_TS),
            ("like_count", pa.int64()),
            ("view_count", pa.int64()),
            ("category", pa.string()),
            ("price", pa.float64()),
            ("is_featured", pa.bool_()),
        ]
    ),
    "likes": pa.schema(
        [
            ("event_timestamp", UTC_TS),
            ("user_id", pa.int64()),
            ("artwork_id", pa.int64()),
            ("surface", pa.string()),
        ]
    ),
}


def _part(root: Path, source: str, day: datetime.date) -> Path:
    return root / "sources" / source / f"dt={day.isoformat()}" / "part-0.parquet"


def _read(root: Path, source: str) -> dict[datetime.date, pa.Table]:
    return {day: pq.read_table(_part(root, source, day)) for day in DAYS}


def _us(table: pa.Table, column: str = "event_timestamp") -> np.ndarray:
    return table[column].cast(pa.int64()).to_numpy()


def _day_bounds_us(day: datetime.date) -> tuple[int, int]:
    start = int(datetime.datetime.combine(day, datetime.time(), datetime.UTC).timestamp())
    return start * 1_000_000, (start + 86_400) * 1_000_000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo") / "out"
    return root, generate_demo(root, **SMALL)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough rows for rates and correlations to be stable."""
    root = tmp_path_factory.mktemp("demo_medium")
    generate_demo(
        root,
        start=datetime.date(2026, 4, 1),
        end=datetime.date(2026, 4, 2),
        lookback_days=0,
        users=2000,
        artworks=3000,
        events_per_day=60_000,
        seed=1,
    )
    return root


def test_layout_and_exact_schemas(small: tuple[Path, dict]) -> None:
    root, _ = small
    for source in SOURCES:
        partitions = sorted(p.name for p in (root / "sources" / source).iterdir())
        assert partitions == [f"dt={d.isoformat()}" for d in DAYS]
        for day in DAYS:
            part = _part(root, source, day)
            assert [p.name for p in part.parent.iterdir()] == ["part-0.parquet"]
            meta = pq.ParquetFile(part).metadata
            assert meta.row_group(0).column(0).compression == "ZSTD"
            assert pq.read_schema(part).remove_metadata() == EXPECTED_SCHEMAS[source]
    assert sorted(p.name for p in (root / "embeddings").iterdir()) == ["artworks.lance"]


def test_summary_matches_files(small: tuple[Path, dict]) -> None:
    root, summary = small
    assert summary["first_day"] == "2026-03-30" and summary["last_day"] == "2026-04-03"
    for source in SOURCES:
        assert summary["rows"][source] == sum(t.num_rows for t in _read(root, source).values())
    clicks = sum(pc.sum(t["clicked"]).as_py() or 0 for t in _read(root, "feed").values())
    assert summary["clicks"] == clicks


def test_rows_fall_in_their_partition_day_and_are_sorted(small: tuple[Path, dict]) -> None:
    root, _ = small
    for source in SOURCES:
        for day, table in _read(root, source).items():
            assert table.num_rows > 0
            ts = _us(table)
            lo, hi = _day_bounds_us(day)
            assert ts.min() >= lo and ts.max() < hi, (source, day)
            assert np.all(np.diff(ts) >= 0), (source, day)
    # Feed: ties on event_timestamp are ordered by position.
    for table in _read(root, "feed").values():
        ts, pos = _us(table), table["position"].to_numpy()
        assert np.all(np.diff(pos)[np.diff(ts) == 0] >= 0)


def test_events_per_day_is_about_the_requested_number(small: tuple[Path, dict]) -> None:
    root, summary = small
    # Whole sessions are kept, so each day overshoots by less than one session (<= 48 rows);
    # rows after the last day's midnight are not written.
    expected = SMALL["events_per_day"] * len(DAYS)
    written = summary["rows"]["feed"] + summary["feed_rows_after_end_dropped"]
    assert expected <= written < expected + 48 * len(DAYS)


def test_identical_arguments_give_identical_bytes(small: tuple[Path, dict], tmp_path: Path) -> None:
    root, summary = small
    again = generate_demo(tmp_path / "again", **SMALL)
    assert again["rows"] == summary["rows"]
    for source in SOURCES:
        for day in DAYS:
            expected = _part(root, source, day).read_bytes()
            assert _part(tmp_path / "again", source, day).read_bytes() == expected
    generate_demo(tmp_path / "other", **{**SMALL, "seed": 8})
    other = _part(tmp_path / "other", "feed", END).read_bytes()
    assert other != _part(root, "feed", END).read_bytes()


def test_regenerating_replaces_old_output(small: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate_demo(out, **SMALL)
    (_part(out, "feed", DAYS[0]).parent / ".part-0.parquet.tmp-123-deadbeef").write_bytes(b"junk")
    (out / "embeddings" / ".artworks.lance.tmp-123-deadbeef").mkdir()
    generate_demo(out, **{**SMALL, "lookback_days": 0, "end": START})
    for source in SOURCES:
        assert [p.name for p in (out / "sources" / source).iterdir()] == ["dt=2026-04-01"]
    assert [p.name for p in (out / "embeddings").iterdir()] == ["artworks.lance"]
    # The old bytes for 2026-04-01 came from a run that started earlier; the new file is
    # exactly what a fresh run with the new arguments writes.
    fresh = tmp_path / "fresh"
    generate_demo(fresh, **{**SMALL, "lookback_days": 0, "end": START})
    assert _part(out, "feed", START).read_bytes() == _part(fresh, "feed", START).read_bytes()


def test_sessions_pages_and_midnight(small: tuple[Path, dict]) -> None:
    root, summary = small
    feed = _read(root, "feed")
    days_of_session: dict[str, set[datetime.date]] = defaultdict(set)
    for day, table in feed.items():
        for s in set(table["feed_session"].to_pylist()):
            days_of_session[s].add(day)
    spanning = [s for s, days in days_of_session.items() if len(days) > 1]
    # Every day but the last hands at least one session over to the next day.
    starts = {min(days_of_session[s]) for s in spanning}
    assert set(DAYS[:-1]) <= starts
    assert all(len(days_of_session[s]) == 2 for s in spanning)
    assert summary["sessions_spanning_midnight"] >= len(DAYS)

    everything = pa.concat_tables(feed.values())
    sessions = everything["feed_session"].to_pylist()
    users = everything["user_id"].to_pylist()
    assert all(s.startswith(f"u{u}-") for s, u in zip(sessions, users))
    pages: dict[tuple[str, int], list[int]] = defaultdict(list)
    for s, ts, pos in zip(sessions, _us(everything).tolist(), everything["position"].to_pylist()):
        pages[(s, ts)].append(pos)
    for positions in pages.values():
        assert sorted(positions) == list(range(len(positions)))
        assert 6 <= len(positions) <= 12
    per_session = defaultdict(int)
    for s, _ in pages:
        per_session[s] += 1
    assert max(per_session.values()) <= 4
    assert set(everything["device"].to_pylist()) <= {"ios", "android", "web"}


def test_user_profile_snapshots_and_corrections(small: tuple[Path, dict]) -> None:
    root, summary = small
    profiles = _read(root, "user_profile")
    assert sorted(set(profiles[DAYS[0]]["user_id"].to_pylist())) == list(range(1, 51))
    rows = pa.concat_tables(profiles.values()).to_pylist()
    by_key = defaultdict(list)
    for r in rows:
        by_key[(r["user_id"], r["event_timestamp"])].append(r)
    duplicates = [rs for rs in by_key.values() if len(rs) > 1]
    assert len(duplicates) == summary["profile_corrections"] >= len(DAYS)
    for a, b in duplicates:
        assert a["created_at"] != b["created_at"]
        assert a["follower_count"] != b["follower_count"]
        assert a["Country"] == b["Country"]
    for r in rows:
        assert r["created_at"] >= r["event_timestamp"]
        assert len(r["Country"]) == 2 and r["Country"].isupper()
    # Followers drift upwards: compare each user's first and last original snapshot.
    first, last = {}, {}
    for rs in sorted(by_key.values(), key=lambda rs: rs[0]["event_timestamp"]):
        original = min(rs, key=lambda r: r["created_at"])
        first.setdefault(original["user_id"], original)
        last[original["user_id"]] = original
    grew = [last[u]["follower_count"] >= first[u]["follower_count"] for u in first]
    assert all(grew)
    assert all(last[u]["account_age_days"] >= first[u]["account_age_days"] for u in first)


def test_likes_contain_the_feed_likes(small: tuple[Path, dict]) -> None:
    root, summary = small
    feed = pa.concat_tables(_read(root, "feed").values())
    likes = pa.concat_tables(_read(root, "likes").values())
    liked = feed["liked"].to_numpy(zero_copy_only=False)
    clicked = feed["clicked"].to_numpy(zero_copy_only=False)
    assert not np.any(liked & ~clicked)

    feed_likes = defaultdict(list)
    for r in likes.filter(pc.equal(likes["surface"], "feed")).to_pylist():
        feed_likes[(r["user_id"], r["artwork_id"])].append(r["event_timestamp"])
    feed_ts = feed["event_timestamp"].to_pylist()
    last_midnight = datetime.datetime.combine(DAYS[-1] + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    for i in np.flatnonzero(liked):
        if feed_ts[i] >= last_midnight - datetime.timedelta(seconds=30):
            continue  # its like may fall after the last day, which is not written
        key = (feed["user_id"][i].as_py(), feed["artwork_id"][i].as_py())
        delays = [(t - feed_ts[i]).total_seconds() for t in feed_likes[key]]
        assert any(1 <= d <= 30 for d in delays)
    organic = likes.num_rows - likes.filter(pc.equal(likes["surface"], "feed")).num_rows
    assert set(likes["surface"].to_pylist()) == {"feed", "search", "profile"}
    assert 0.5 < organic / summary["feed_likes"] < 2


def test_lance_store(small: tuple[Path, dict]) -> None:
    import lance

    root, summary = small
    ds = lance.dataset(str(root / "embeddings" / "artworks.lance"))
    assert len(ds.versions()) == 1
    assert ds.schema.field("artwork_id").type == pa.int64()
    emb_type = ds.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(emb_type) and emb_type.list_size == SMALL["embedding_dim"]
    assert emb_type.value_type == pa.float32()
    table = ds.to_table()
    ids = table["artwork_id"].to_pylist()
    all_ids = set(_read(root, "artwork_stats")[DAYS[0]]["artwork_id"].to_pylist())
    assert len(all_ids) == SMALL["artworks"]
    assert len(set(ids)) == len(ids) == summary["embeddings"] and set(ids) <= all_ids


def test_rates_and_learnable_clicks(medium: Path) -> None:
    days = [datetime.date(2026, 4, 1), datetime.date(2026, 4, 2)]
    feed = pa.concat_tables(pq.read_table(_part(medium, "feed", d)) for d in days)
    clicked = feed["clicked"].to_numpy(zero_copy_only=False)
    assert 0.05 <= clicked.mean() <= 0.40

    # Better artworks (higher like/view ratio in the stats source) get clicked more.
    stats = pq.read_table(_part(medium, "artwork_stats", days[0]))
    like_ratio = dict(
        zip(
            stats["artwork_id"].to_pylist(),
            (
                pc.divide(pc.cast(stats["like_count"], pa.float64()), pc.cast(stats["view_count"], pa.float64()))
            ).to_pylist(),
        )
    )
    ratio = np.array([like_ratio[a] for a in feed["artwork_id"].to_pylist()])
    good = ratio > np.median(ratio)
    assert clicked[good].mean() > 1.3 * clicked[~good].mean()
    assert np.corrcoef(ratio, clicked)[0, 1] > 0.05

    position = feed["position"].to_numpy()
    assert clicked[position <= 1].mean() > clicked[position >= 6].mean()

    profiles = pq.read_table(_part(medium, "user_profile", days[0]))
    assert 0.02 < profiles["bio_length"].null_count / profiles.num_rows < 0.08
    assert 0.005 < profiles.num_rows / 2000 - 1 < 0.02  # corrections on top of every user
    later = pq.read_table(_part(medium, "user_profile", days[1]))
    assert 0.15 < later.num_rows / 2000 < 0.25
    assert 0.01 < stats["price"].null_count / stats.num_rows < 0.05
    later_stats = pq.read_table(_part(medium, "artwork_stats", days[1]))
    assert 0.25 < later_stats.num_rows / 3000 < 0.35
    assert len(set(stats["category"].to_pylist())) == 12

    import lance

    store = lance.dataset(str(medium / "embeddings" / "artworks.lance")).to_table()
    assert 0.01 < 1 - store.num_rows / 3000 < 0.03
    # Vectors correlate with category: same-category pairs are closer than others.
    category = dict(zip(stats["artwork_id"].to_pylist(), stats["category"].to_pylist()))
    cats = np.array([category[a] for a in store["artwork_id"].to_pylist()])
    vectors = store["embedding"].combine_chunks().flatten().to_numpy().reshape(store.num_rows, -1)
    sims = vectors[:500] @ vectors[500:1000].T
    same = cats[:500, None] == cats[None, 500:1000]
    assert sims[same].mean() > sims[~same].mean() + 0.2


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_demo(tmp_path, start=END, end=START)
    with pytest.raises(ValueError):
        generate_demo(tmp_path, start=START, end=END, users=0)
