"""Deterministic synthetic "art feed" data for demos, tests and benchmarks.

``generate_demo(out_dir, start=..., end=...)`` writes days ``start - lookback_days .. end``
(UTC, inclusive) into this layout; every ``dt=YYYY-MM-DD`` directory holds exactly one
Zstd parquet file ``part-0.parquet`` with only the rows whose timestamp falls in that day
(``dt`` is a hive partition, not a column). All timestamps are ``timestamp[us, tz=UTC]``
with millisecond precision.

``sources/feed/dt=D/part-0.parquet`` -- feed impressions, the training spine
    event_timestamp, user_id int64, artwork_id int64, feed_session string,
    position int32, device string (ios/android/web), clicked bool, liked bool.
    A page of 6-12 impressions shares one timestamp (positions 0..n-1); a session
    ``u<user_id>-<n>`` is 1-4 pages seconds to minutes apart, and some sessions cross
    midnight (at least one a day starts at 23:59:57-59). Sorted by event_timestamp, position.
    p(click) rises with the user's affinity to the artwork's category and with the
    artwork's quality, falls with position, and shifts a little with the user's country;
    ``liked`` implies ``clicked``.
``sources/user_profile/dt=D/part-0.parquet`` -- user snapshots
    user_id int64, event_timestamp, created_at, follower_count int64,
    following_count int64, Country string (ISO-2; capital C on purpose),
    account_age_days int32, bio_length int32 (~5% null).
    Every user on the first day, ~20% of users on later days. About 1% of snapshots (at
    least one a day) also have a correction: same user_id and event_timestamp, a later
    created_at, other values. Sorted by event_timestamp; a correction is placed before or
    after its original at random, so only created_at tells which one wins.
``sources/artwork_stats/dt=D/part-0.parquet`` -- artwork snapshots
    artwork_id int64, event_timestamp, like_count int64, view_count int64,
    category string, price float64 (~3% null), is_featured bool.
    Every artwork on the first day, ~30% of artworks on later days; counts only grow and
    like_count / view_count rises with the artwork's quality. Sorted by event_timestamp.
``sources/likes/dt=D/part-0.parquet`` -- a second event source
    event_timestamp, user_id int64, artwork_id int64, surface string (feed/search/profile).
    Every liked feed impression 1-30 s after it (surface ``feed``) plus about as many
    organic likes from search/profile. Sorted by event_timestamp.
``embeddings/artworks.lance`` -- Lance dataset, one version
    artwork_id int64, embedding fixed_size_list<float32>[embedding_dim];
    unit vectors clustered by category; ~2% of artwork ids are deliberately absent.

Ids: user_id is 1..users, artwork_id is ARTWORK_ID_BASE + 0..artworks-1.
Rows of sessions (and feed likes) that would fall after ``end`` are not written.

The same arguments give byte-identical parquet files. Each day draws from its own
generator seeded by (seed, stream, day), so one source's or day's draws never shift
another's; only the per-user session counters run across days. Files are written to a
temporary name next to their target and renamed into place; re-generating into an
existing directory replaces the old data and removes partitions outside the new range.
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from daedalus.atomic import publish_dir, remove_stale_temps, temp_sibling, write_parquet

__all__ = [
    "ARTWORK_ID_BASE",
    "ARTWORK_STATS_SCHEMA",
    "CATEGORIES",
    "FEED_SCHEMA",
    "LIKES_SCHEMA",
    "USER_PROFILE_SCHEMA",
    "generate_demo",
]

TS = pa.timestamp("us", tz="UTC")

FEED_SCHEMA = pa.schema(
    [
        ("event_timestamp", TS),
        ("user_id", pa.int64()),
        ("artwork_id", pa.int64()),
        ("feed_session", pa.string()),
        ("position", pa.int32()),
        ("device", pa.string()),
        ("clicked", pa.bool_()),
        ("liked", pa.bool_()),
    ]
)
USER_PROFILE_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("event_timestamp", TS),
        ("created_at", TS),
        ("follower_count", pa.int64()),
        ("following_count", pa.int64()),
        ("Country", pa.string()),
        ("account_age_days", pa.int32()),
        ("bio_length", pa.int32()),
    ]
)
ARTWORK_STATS_SCHEMA = pa.schema(
    [
        ("artwork_id", pa.int64()),
        ("event_timestamp", TS),
        ("like_count", pa.int64()),
        ("view_count", pa.int64()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("is_featured", pa.bool_()),
    ]
)
LIKES_SCHEMA = pa.schema(
    [
        ("event_timestamp", TS),
        ("user_id", pa.int64()),
        ("artwork_id", pa.int64()),
        ("surface", pa.string()),
    ]
)

# Disjoint from user ids, so joining a view on the wrong key finds nothing instead of
# silently finding values.
ARTWORK_ID_BASE = 1_000_000

CATEGORIES = (
    "painting",
    "photography",
    "illustration",
    "digital",
    "abstract",
    "portrait",
    "landscape",
    "street",
    "anime",
    "sculpture",
    "pixel_art",
    "ceramics",
)
_CATEGORY_P = np.array([14, 13, 12, 11, 10, 9, 8, 7, 6, 4, 3, 3], dtype=np.float64)

COUNTRIES = ("US", "GB", "DE", "FR", "BR", "JP", "IN", "CA", "KR", "ES", "IT", "AU")
_COUNTRY_P = np.array([30, 10, 9, 8, 8, 7, 7, 5, 5, 4, 4, 3], dtype=np.float64)
# A small per-country shift of the click logit: learnable, but not the main signal.
_COUNTRY_EFFECT = np.array([0.0, -0.05, -0.1, -0.08, 0.2, 0.15, 0.25, -0.02, 0.1, 0.05, 0.0, -0.05])

DEVICES = ("ios", "android", "web")
_DEVICE_P = np.array([0.45, 0.4, 0.15])
SURFACES = ("feed", "search", "profile")

# Session shape: pages per session and impressions per page (mean about 2.2 x 8.2).
_PAGES = np.array([1, 2, 3, 4])
_PAGES_P = np.array([0.35, 0.3, 0.2, 0.15])
_PAGE_SIZES = np.arange(6, 13)
_PAGE_SIZES_P = np.array([0.2, 0.22, 0.2, 0.14, 0.1, 0.08, 0.06])
_ROWS_PER_SESSION = float(_PAGES @ _PAGES_P) * float(_PAGE_SIZES @ _PAGE_SIZES_P)

# Session starts follow a daily cycle (quiet early UTC morning, busy evening); hour 23 is
# busy on purpose so sessions crossing midnight are common, not just the forced one.
_HOUR_W = np.array([3, 2, 1.5, 1, 1, 1, 1.5, 2.5, 3.5, 4, 4, 4.5, 5, 5, 5, 5, 5.5, 6, 7, 8, 8, 7, 5.5, 4.5])

# Click model (logit), see _click_logit.
_CLICK_BIAS = -2.5
_CLICK_AFFINITY = 1.2
_CLICK_QUALITY = 0.8
_CLICK_POSITION = -0.15

_MS = 1_000
_S = 1_000_000
_DAY_US = 86_400 * _S
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

# Independent random streams: adding draws to one never changes the others.
_WORLD, _FEED, _LIKES, _PROFILE, _STATS, _EMBED = range(6)


def _rng(seed: int, stream: int, day: datetime.date | None = None) -> np.random.Generator:
    key = [seed, stream] if day is None else [seed, stream, day.toordinal()]
    return np.random.default_rng(key)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _day_start_us(day: datetime.date) -> int:
    return (day.toordinal() - _EPOCH_ORDINAL) * _DAY_US


def _zipf_cdf(rng: np.random.Generator, n: int, exponent: float, offset: float) -> np.ndarray:
    """Cumulative popularity of ``n`` items, ranks shuffled so ids don't encode popularity."""
    rank = rng.permutation(n).astype(np.float64)
    weight = (rank + max(1.0, offset)) ** -exponent
    cdf = np.cumsum(weight)
    return cdf / cdf[-1]


def _sample_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


@dataclass(frozen=True)
class _World:
    """Latent, day-independent attributes of every user and artwork."""

    user_ids: np.ndarray  # int64
    activity_cdf: np.ndarray  # sessions per user, Zipf-ish
    country: np.ndarray  # int8 index into COUNTRIES
    device: np.ndarray  # int8 index into DEVICES, the user's usual device
    pref_cdf: np.ndarray  # (users, categories) cumulative category preference
    affinity: np.ndarray  # (users, categories) in [0, 1], 1 = favourite category
    age0: np.ndarray  # account age in days on the first generated day
    followers0: np.ndarray
    follower_growth: np.ndarray  # relative per day
    follower_gain: np.ndarray  # absolute per day
    following0: np.ndarray
    following_gain: np.ndarray
    bio_length: np.ndarray  # int32
    bio_null: np.ndarray  # bool

    artwork_ids: np.ndarray  # int64
    category: np.ndarray  # int8 index into CATEGORIES
    quality: np.ndarray  # standard normal
    popularity_cdf: np.ndarray
    by_category: np.ndarray  # artwork indexes sorted by category
    category_cdf: np.ndarray  # category + cumulative popularity within it, see _pick_artworks
    views0: np.ndarray
    views_per_day: np.ndarray
    like_rate: np.ndarray
    featured_p: np.ndarray
    price: np.ndarray
    price_null: np.ndarray


def _make_world(seed: int, users: int, artworks: int, events_per_day: int) -> _World:
    rng = _rng(seed, _WORLD)
    n_cat = len(CATEGORIES)

    country = rng.choice(len(COUNTRIES), size=users, p=_COUNTRY_P / _COUNTRY_P.sum())
    device = rng.choice(len(DEVICES), size=users, p=_DEVICE_P)
    # Sparse Dirichlet: most users care about one or two categories.
    pref = rng.dirichlet(np.full(n_cat, 0.4), size=users)
    pref_cdf = np.cumsum(pref, axis=1)
    affinity = (pref / pref.max(axis=1, keepdims=True)).astype(np.float32)
    has_bio = rng.random(users) >= 0.05

    category = rng.choice(n_cat, size=artworks, p=_CATEGORY_P / _CATEGORY_P.sum())
    quality = rng.standard_normal(artworks)
    popularity_cdf = _zipf_cdf(rng, artworks, 1.05, 0.002 * artworks)
    popularity = np.diff(popularity_cdf, prepend=0.0)
    by_category = np.argsort(category, kind="stable")
    category_cdf = _within_group_cdf(category[by_category], popularity[by_category], n_cat)
    # Views follow feed popularity; the artwork has been live for 5-400 days already.
    views_per_day = popularity * events_per_day * 0.7 + rng.exponential(2.0, artworks)

    return _World(
        user_ids=np.arange(1, users + 1, dtype=np.int64),
        activity_cdf=_zipf_cdf(rng, users, 1.0, 0.01 * users),
        country=country.astype(np.int8),
        device=device.astype(np.int8),
        pref_cdf=pref_cdf,
        affinity=affinity,
        age0=rng.integers(30, 5 * 365, size=users),
        followers0=rng.lognormal(3.0, 1.5, users),
        follower_growth=rng.uniform(0.0, 0.02, users),
        follower_gain=rng.exponential(0.5, users),
        following0=rng.lognormal(4.0, 1.0, users),
        following_gain=rng.exponential(0.3, users),
        bio_length=rng.integers(1, 300, size=users).astype(np.int32),
        bio_null=~has_bio,
        artwork_ids=ARTWORK_ID_BASE + np.arange(artworks, dtype=np.int64),
        category=category.astype(np.int8),
        quality=quality,
        popularity_cdf=popularity_cdf,
        by_category=by_category,
        category_cdf=category_cdf,
        views0=views_per_day * rng.uniform(5.0, 400.0, artworks),
        views_per_day=views_per_day,
        like_rate=_sigmoid(-3.0 + 0.8 * quality),
        featured_p=_sigmoid(-3.5 + 1.2 * quality),
        price=np.round(rng.lognormal(4.0, 1.0, artworks), 2),
        price_null=rng.random(artworks) < 0.03,
    )


def _within_group_cdf(group: np.ndarray, weight: np.ndarray, n_groups: int) -> np.ndarray:
    """``group + cumulative share of weight within the group`` for rows sorted by group.

    One searchsorted for ``g + u`` (u in [0, 1)) then samples an item of group g in
    proportion to its weight, for all rows at once.
    """
    total = np.bincount(group, weights=weight, minlength=n_groups)
    before = np.concatenate([[0.0], np.cumsum(total)[:-1]])
    share = (np.cumsum(weight) - before[group]) / np.where(total > 0, total, 1.0)[group]
    return group + share


def _pick_artworks(world: _World, rng: np.random.Generator, user_idx: np.ndarray, targeted_share: float) -> np.ndarray:
    """Artwork indexes: popular overall, or popular within a category the user likes."""
    n = len(user_idx)
    picked = _sample_cdf(world.popularity_cdf, rng.random(n))
    targeted = np.flatnonzero(rng.random(n) < targeted_share)
    if len(targeted):
        u = rng.random(len(targeted))
        cat = (world.pref_cdf[user_idx[targeted]] < u[:, None]).sum(axis=1)
        cat = np.minimum(cat, len(CATEGORIES) - 1)
        slot = _sample_cdf(world.category_cdf, cat + rng.random(len(targeted)))
        picked[targeted] = world.by_category[slot]
    return picked


def _click_logit(world: _World, user_idx: np.ndarray, art_idx: np.ndarray, position: np.ndarray) -> np.ndarray:
    affinity = world.affinity[user_idx, world.category[art_idx]]
    return (
        _CLICK_BIAS
        + _CLICK_AFFINITY * affinity
        + _CLICK_QUALITY * world.quality[art_idx]
        + _CLICK_POSITION * position
        + _COUNTRY_EFFECT[world.country[user_idx]]
    )


def _timestamps(values_us: np.ndarray) -> pa.Array:
    return pa.array(values_us.astype(np.int64), type=TS)


def _labels(names: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(names, type=pa.string()).take(pa.array(codes.astype(np.int32)))


def _within_group_rank(groups: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """0-based rank of each element among those of its group, by ``order_key``."""
    order = np.lexsort((order_key, groups))
    g = groups[order]
    first = np.r_[True, g[1:] != g[:-1]]
    starts = np.flatnonzero(first)
    rank_sorted = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = rank_sorted
    return rank


@dataclass
class _FeedDay:
    feed: pa.Table  # rows of the sessions that started this day, any day they fall in
    feed_likes: pa.Table
    sessions: int
    spanning: int


def _feed_day(world: _World, seed: int, day: datetime.date, events: int, session_counter: np.ndarray) -> _FeedDay:
    """Sessions starting on ``day``; updates ``session_counter`` (sessions per user so far)."""
    rng = _rng(seed, _FEED, day)
    day_start = _day_start_us(day)
    if events <= 0:
        return _FeedDay(FEED_SCHEMA.empty_table(), LIKES_SCHEMA.empty_table(), 0, 0)

    # Draw a surplus of sessions, keep the shortest prefix reaching ``events`` rows.
    n = int(np.ceil(events / _ROWS_PER_SESSION * 1.3)) + 8
    pages = rng.choice(_PAGES, size=n, p=_PAGES_P)
    pages[0] = max(pages[0], 2)  # session 0 straddles midnight, see below
    page_size = rng.choice(_PAGE_SIZES, size=int(pages.sum()), p=_PAGE_SIZES_P)
    page_session = np.repeat(np.arange(n), pages)
    rows_per_session = np.bincount(page_session, weights=page_size, minlength=n)
    n = min(n, int(np.searchsorted(np.cumsum(rows_per_session), events)) + 1)
    pages = pages[:n]
    n_pages = int(pages.sum())
    page_size, page_session = page_size[:n_pages], page_session[:n_pages]

    user_idx = _sample_cdf(world.activity_cdf, rng.random(n))
    hour = rng.choice(24, size=n, p=_HOUR_W / _HOUR_W.sum())
    start = day_start + hour * 3600 * _S + rng.integers(0, 3600 * _MS, size=n) * _MS
    # Guarantee one session a day that crosses midnight, even at tiny sizes: it starts
    # at 23:59:57.5-59.5 and its second page comes at least 3 s later.
    start[0] = day_start + _DAY_US - rng.integers(500, 2500) * _MS

    first_page = np.r_[True, page_session[1:] != page_session[:-1]]
    gap_ms = np.minimum(3_000 + rng.exponential(45_000, n_pages), 600_000).astype(np.int64)
    gap_ms[first_page] = 0
    elapsed = np.cumsum(gap_ms)
    elapsed -= np.repeat(elapsed[first_page], pages)
    page_ts = start[page_session] + elapsed * _MS

    other_device = rng.choice(len(DEVICES), size=n, p=_DEVICE_P)
    device = np.where(rng.random(n) < 0.85, world.device[user_idx], other_device)
    ordinal = session_counter[user_idx] + _within_group_rank(user_idx, start)
    np.add.at(session_counter, user_idx, 1)
    session_ids = pa.array(
        [f"u{u}-{k}" for u, k in zip(world.user_ids[user_idx].tolist(), ordinal.tolist())],
        type=pa.string(),
    )

    row_page = np.repeat(np.arange(n_pages), page_size)
    page_first_row = np.cumsum(page_size) - page_size
    position = (np.arange(len(row_page)) - page_first_row[row_page]).astype(np.int32)
    row_session = page_session[row_page]
    row_user = user_idx[row_session]
    row_ts = page_ts[row_page]

    art_idx = _pick_artworks(world, rng, row_user, targeted_share=0.5)
    clicked = rng.random(len(row_page)) < _sigmoid(_click_logit(world, row_user, art_idx, position))
    affinity = world.affinity[row_user, world.category[art_idx]]
    like_p = _sigmoid(-1.0 + 0.8 * world.quality[art_idx] + 0.5 * affinity)
    liked = clicked & (rng.random(len(row_page)) < like_p)

    # Unsorted: _Carry sorts each day's rows once they are merged with the spill-over.
    feed = pa.table(
        [
            _timestamps(row_ts),
            pa.array(world.user_ids[row_user]),
            pa.array(world.artwork_ids[art_idx]),
            session_ids.take(pa.array(row_session)),
            pa.array(position),
            _labels(DEVICES, device[row_session]),
            pa.array(clicked),
            pa.array(liked),
        ],
        schema=FEED_SCHEMA,
    )

    like_rows = np.flatnonzero(liked)
    like_ts = row_ts[like_rows] + rng.integers(1_000, 30_000, size=len(like_rows)) * _MS
    feed_likes = pa.table(
        [
            _timestamps(like_ts),
            pa.array(world.user_ids[row_user[like_rows]]),
            pa.array(world.artwork_ids[art_idx[like_rows]]),
            _labels(SURFACES, np.zeros(len(like_rows), dtype=np.int8)),
        ],
        schema=LIKES_SCHEMA,
    )
    session_end = np.maximum.reduceat(page_ts, np.flatnonzero(first_page))
    spanning = int((session_end >= day_start + _DAY_US).sum())
    return _FeedDay(feed, feed_likes, n, spanning)


def _organic_likes(world: _World, seed: int, day: datetime.date, count: int) -> pa.Table:
    """Likes from search and profile pages, spread over the day."""
    rng = _rng(seed, _LIKES, day)
    user_idx = _sample_cdf(world.activity_cdf, rng.random(count))
    art_idx = _pick_artworks(world, rng, user_idx, targeted_share=0.6)
    ts = _day_start_us(day) + rng.integers(0, 86_400 * _MS, size=count) * _MS
    surface = rng.choice([1, 2], size=count, p=[0.6, 0.4])
    return pa.table(
        [
            _timestamps(ts),
            pa.array(world.user_ids[user_idx]),
            pa.array(world.artwork_ids[art_idx]),
            _labels(SURFACES, surface),
        ],
        schema=LIKES_SCHEMA,
    )


def _user_profiles(world: _World, seed: int, day: datetime.date, day_index: int) -> tuple[pa.Table, int]:
    """The day's snapshots and the number of corrections among them."""
    rng = _rng(seed, _PROFILE, day)
    n_users = len(world.user_ids)
    idx = np.arange(n_users) if day_index == 0 else np.flatnonzero(rng.random(n_users) < 0.2)
    sec = rng.integers(0, 86_400 * _MS, size=len(idx)) * _MS
    t_days = day_index + sec / _DAY_US  # monotone in time, so counts only drift upwards
    ts = _day_start_us(day) + sec
    rows = {
        "idx": idx,
        "ts": ts,
        "created": ts + rng.integers(500, 300_000, size=len(idx)) * _MS,
        "followers": np.floor(
            world.followers0[idx] * np.exp(world.follower_growth[idx] * t_days) + world.follower_gain[idx] * t_days
        ).astype(np.int64),
        "following": np.floor(world.following0[idx] + world.following_gain[idx] * t_days).astype(np.int64),
        "bio": world.bio_length[idx],
        "bio_null": world.bio_null[idx],
    }

    # Corrections: same user and event time, written later with other values. At least
    # one a day, so even tiny runs exercise the created_at tie-break.
    fix = np.flatnonzero(rng.random(len(idx)) < 0.01)
    if len(idx) and not len(fix):
        fix = rng.integers(0, len(idx), size=1)
    k = len(fix)
    fixed = {name: values[fix] for name, values in rows.items()}
    fixed["created"] = fixed["created"] + rng.integers(600, 6 * 3600, size=k) * _S
    fixed["followers"] = fixed["followers"] + rng.integers(1, 50, size=k)
    fixed["following"] = np.maximum(fixed["following"] + rng.integers(-3, 4, size=k), 0)
    fixed["bio"] = rng.integers(1, 300, size=k).astype(np.int32)
    fixed["bio_null"] = rng.random(k) < 0.05
    rows = {name: np.concatenate([rows[name], fixed[name]]) for name in rows}

    # Random order among equal timestamps: file order must not decide which row wins.
    order = np.lexsort((rng.random(len(rows["ts"])), rows["ts"]))
    r = {name: values[order] for name, values in rows.items()}
    table = pa.table(
        [
            pa.array(world.user_ids[r["idx"]]),
            _timestamps(r["ts"]),
            _timestamps(r["created"]),
            pa.array(r["followers"]),
            pa.array(r["following"]),
            _labels(COUNTRIES, world.country[r["idx"]]),
            pa.array((world.age0[r["idx"]] + day_index).astype(np.int32)),
            pa.array(r["bio"], mask=r["bio_null"]),
        ],
        schema=USER_PROFILE_SCHEMA,
    )
    return table, k


def _artwork_stats(world: _World, seed: int, day: datetime.date, day_index: int) -> pa.Table:
    rng = _rng(seed, _STATS, day)
    n_art = len(world.artwork_ids)
    idx = np.arange(n_art) if day_index == 0 else np.flatnonzero(rng.random(n_art) < 0.3)
    sec = np.sort(rng.integers(0, 86_400 * _MS, size=len(idx)) * _MS)
    idx = rng.permutation(idx)  # sorted times, shuffled artworks: file order is time order
    t_days = day_index + sec / _DAY_US
    views = np.floor(world.views0[idx] + world.views_per_day[idx] * t_days)
    likes = np.floor(views * world.like_rate[idx])
    return pa.table(
        [
            pa.array(world.artwork_ids[idx]),
            _timestamps(_day_start_us(day) + sec),
            pa.array(likes.astype(np.int64)),
            pa.array(views.astype(np.int64)),
            _labels(CATEGORIES, world.category[idx]),
            pa.array(world.price[idx], mask=world.price_null[idx]),
            pa.array(rng.random(len(idx)) < world.featured_p[idx]),
        ],
        schema=ARTWORK_STATS_SCHEMA,
    )


def _embeddings(world: _World, seed: int, dim: int) -> pa.Table:
    rng = _rng(seed, _EMBED)
    n_art = len(world.artwork_ids)
    centers = rng.standard_normal((len(CATEGORIES), dim))
    vectors = centers[world.category] + 0.7 * rng.standard_normal((n_art, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    present = rng.random(n_art) >= 0.02
    flat = pa.array(vectors[present].astype(np.float32).ravel())
    return pa.table(
        {
            "artwork_id": pa.array(world.artwork_ids[present]),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )


def _int_column(table: pa.Table, name: str) -> np.ndarray:
    column = table[name]
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_numpy()


class _Carry:
    """Rows generated early that belong to later days (sessions and likes after midnight)."""

    def __init__(self, schema: pa.Schema, sort_columns: tuple[str, ...]) -> None:
        self._pending = schema.empty_table()
        self._sort_columns = sort_columns

    def take_day(self, new: pa.Table, day_end_us: int) -> pa.Table:
        """Rows of ``day`` (pending + new, sorted, ties in arrival order); keep the rest."""
        rows = pa.concat_tables([self._pending, new])
        keys = [_int_column(rows, c) for c in reversed(self._sort_columns)]
        rows = rows.take(pa.array(np.lexsort(keys)))
        ts = _int_column(rows, "event_timestamp")
        cut = int(np.searchsorted(ts, day_end_us))
        self._pending = rows.slice(cut)
        return rows.slice(0, cut)

    @property
    def dropped(self) -> int:
        return self._pending.num_rows


def _write_lance(table: pa.Table, path: Path) -> None:
    """Write into a fresh hidden sibling, then swap it in for the old store."""
    import lance  # heavy import, only needed here

    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    tmp = temp_sibling(path)
    # "create" into a fresh directory: a single version, and no "no existing dataset" warning.
    lance.write_dataset(table, str(tmp), mode="create")
    publish_dir(tmp, path)


def _prune(source_dir: Path, keep: set[str]) -> None:
    """Remove partitions outside this run and stray files (e.g. temp files of a killed run)."""
    if not source_dir.is_dir():
        return
    for entry in source_dir.iterdir():
        if entry.name not in keep:
            _remove(entry)
            continue
        for inner in entry.iterdir():
            if inner.name != "part-0.parquet":
                _remove(inner)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _as_date(value: datetime.date) -> datetime.date:
    return value.date() if isinstance(value, datetime.datetime) else value


def generate_demo(
    out_dir: Path,
    *,
    start: datetime.date,
    end: datetime.date,
    lookback_days: int = 31,
    users: int = 2000,
    artworks: int = 5000,
    events_per_day: int = 4000,
    embedding_dim: int = 32,
    seed: int = 0,
) -> dict:
    """Write the demo sources for days ``start - lookback_days .. end`` into ``out_dir``.

    ``events_per_day`` is the number of impressions of the sessions starting each day
    (exact to within one session). Returns row counts per source and a few other figures.
    """
    start, end = _as_date(start), _as_date(end)
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if lookback_days < 0 or users < 1 or artworks < 1 or events_per_day < 0 or embedding_dim < 1:
        raise ValueError("lookback_days, events_per_day must be >= 0; users, artworks, embedding_dim >= 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")

    out = Path(out_dir)
    sources = out / "sources"
    first = start - datetime.timedelta(days=lookback_days)
    days = [first + datetime.timedelta(days=i) for i in range((end - first).days + 1)]
    world = _make_world(seed, users, artworks, events_per_day)

    feed_carry = _Carry(FEED_SCHEMA, ("event_timestamp", "position"))
    likes_carry = _Carry(LIKES_SCHEMA, ("event_timestamp",))
    session_counter = np.zeros(users, dtype=np.int64)
    rows = dict.fromkeys(["feed", "likes", "user_profile", "artwork_stats"], 0)
    totals = dict.fromkeys(
        ["sessions", "sessions_spanning_midnight", "clicks", "feed_likes", "organic_likes", "profile_corrections"], 0
    )

    for day_index, day in enumerate(days):
        part = f"dt={day.isoformat()}/part-0.parquet"
        day_end = _day_start_us(day) + _DAY_US

        fd = _feed_day(world, seed, day, events_per_day, session_counter)
        feed = feed_carry.take_day(fd.feed, day_end)
        organic = _organic_likes(world, seed, day, fd.feed_likes.num_rows)
        likes = likes_carry.take_day(pa.concat_tables([fd.feed_likes, organic]), day_end)
        profiles, corrections = _user_profiles(world, seed, day, day_index)
        stats = _artwork_stats(world, seed, day, day_index)

        for name, table in (("feed", feed), ("likes", likes), ("user_profile", profiles), ("artwork_stats", stats)):
            write_parquet(table, sources / name / part)
            rows[name] += table.num_rows
        totals["sessions"] += fd.sessions
        totals["sessions_spanning_midnight"] += fd.spanning
        totals["clicks"] += int(np.count_nonzero(feed["clicked"].to_numpy()))
        totals["feed_likes"] += fd.feed_likes.num_rows
        totals["organic_likes"] += organic.num_rows
        totals["profile_corrections"] += corrections

    store = _embeddings(world, seed, embedding_dim)
    _write_lance(store, out / "embeddings" / "artworks.lance")

    keep = {f"dt={d.isoformat()}" for d in days}
    for name in rows:
        _prune(sources / name, keep)

    return {
        "out_dir": str(out),
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "days": len(days),
        "rows": rows,
        "embeddings": store.num_rows,
        **totals,
        "feed_rows_after_end_dropped": feed_carry.dropped,
        "likes_after_end_dropped": likes_carry.dropped,
    }
