"""Small edge-case datasets + definitions for the skeleton stage (see tests/test_reference.py).

Each `build_*` function writes a complete working directory (sources, feature views,
feature service, runtime and aggregation config) into `root` and returns a `Dataset`.
Every `expr` used in a definition has its Python equivalent in `EXPRS` (used by
tests/reference.py); every `udf` lives in `<udf_module>.py` (`UDFS_PY`, default `edge_udf_lib/udfs.py`)
in the working directory.

Hive sources respect "partition dt=D holds only rows of day D" (checked when written).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

US = 1_000_000
DAY_US = 86_400 * US


# --------------------------------------------------------------------------- helpers


def T(text: str) -> int:
    """'2026-04-02 10:00:00.000001' (UTC) -> microseconds since the epoch."""
    value = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def D(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


class Raw(int):
    """A timestamp cell given as the raw stored integer in the column's unit (e.g. ns)."""


def _ts_raw(v: int | None, unit: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, Raw):
        return int(v)
    if unit == "s":
        assert v % US == 0, v
        return v // US
    if unit == "ms":
        assert v % 1000 == 0, v
        return v // 1000
    if unit == "us":
        return v
    if unit == "ns":
        return v * 1000
    raise ValueError(unit)


def table_of(schema: pa.Schema, rows: list[tuple]) -> pa.Table:
    """Rows as tuples in schema order; timestamp cells are UTC micros (or Raw)."""
    arrays = []
    for i, f in enumerate(schema):
        vals = [r[i] for r in rows]
        if pa.types.is_timestamp(f.type):
            arrays.append(pa.array([_ts_raw(v, f.type.unit) for v in vals], type=pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(vals, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_file(path: Path, schema: pa.Schema, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table_of(schema, rows), path)


def write_hive(base: Path, schema: pa.Schema, ts_field: str, files: dict[str, list[tuple]]) -> None:
    """files: 'dt=YYYY-MM-DD/name.parquet' -> rows; checks the hive invariant."""
    idx = schema.get_field_index(ts_field)
    unit = schema.field(ts_field).type.unit
    for rel, rows in files.items():
        part = rel.split("/")[0]
        assert part.startswith("dt="), rel
        day = D(part[3:])
        lo = (day - dt.date(1970, 1, 1)).days * DAY_US
        for r in rows:
            v = r[idx]
            us = (
                (int(v) // 1000 if unit == "ns" else int(v) * {"s": US, "ms": 1000, "us": 1}[unit])
                if isinstance(v, Raw)
                else v
            )
            assert lo <= us < lo + DAY_US, (rel, r)
        write_file(base / rel, schema, rows)


def by_day(rows: list[tuple], ts_index: int, name: str = "part-0.parquet") -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in rows:
        day = dt.date(1970, 1, 1) + dt.timedelta(microseconds=r[ts_index])
        out.setdefault(f"dt={day.isoformat()}/{name}", []).append(r)
    return dict(sorted(out.items()))


def write_yaml(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))


UDFS_PY = '''\
"""Arrow UDFs for the edge-case datasets (pyarrow arrays in, a pyarrow array out)."""
import pyarrow as pa


def country_bucket(country):
    # -1 for a null country, else len(country) % 3
    return pa.array([-1 if v is None else len(v) % 3 for v in country.to_pylist()], type=pa.int32())


def boost(followers, is_pro):
    # null followers -> null; else followers * 2 when is_pro is true, followers otherwise
    out = []
    for f, p in zip(followers.to_pylist(), is_pro.to_pylist()):
        out.append(None if f is None else f * (2 if p else 1))
    return pa.array(out, type=pa.int64())


def tag_len(tag):
    # null -> 0, else the length of the tag
    return pa.array([0 if v is None else len(v) for v in tag.to_pylist()], type=pa.int64())
'''


# The module holding the UDFs, relative to the working directory. Not `feature_views.udfs`
# by default: a `feature_views` package elsewhere on sys.path (e.g. the daedalus repository
# itself, put there by an editable install) can shadow the working directory's one; the test
# `test_udf_module_named_like_the_repositorys` covers exactly that case.
DEFAULT_UDF_MODULE = "edge_udf_lib.udfs"


def write_udfs(root: Path, module: str = DEFAULT_UDF_MODULE) -> None:
    parts = module.split(".")
    d = root
    for pkg in parts[:-1]:
        d = d / pkg
        d.mkdir(parents=True, exist_ok=True)
        (d / "__init__.py").write_text("")
    (d / f"{parts[-1]}.py").write_text(UDFS_PY)


# expr (SQL, as written in a view) -> its Python equivalent over the chosen source row.
EXPRS = {
    # ln(1 + x): natural log, null in -> null out (x >= 0 in every dataset)
    "ln(1 + followers)": lambda r: None if r["followers"] is None else math.log(1 + r["followers"]),
    # coalesce: the first non-null
    "coalesce(home_country, 'unknown')": lambda r: "unknown" if r["home_country"] is None else r["home_country"],
    # CASE with a null condition takes the ELSE branch
    "CASE WHEN followers >= 100 THEN 'big' ELSE 'small' END": lambda r: (
        "big" if (r["followers"] is not None and r["followers"] >= 100) else "small"
    ),
    # arithmetic: null in -> null out
    "score * 2": lambda r: None if r["score"] is None else r["score"] * 2,
    "value + 1": lambda r: None if r["value"] is None else r["value"] + 1,
}


@dataclass
class Dataset:
    root: Path
    service: str
    days: list[dt.date]  # feed_start..feed_end
    output_root: str  # relative to root
    chunk_rows: int
    exprs: dict
    udf_module: str = DEFAULT_UDF_MODULE


def _runtime(root: Path, start: str, end: str, chunk_rows: int, output_root: str = "data/training_output") -> None:
    write_yaml(
        root / "config/training/runtime.yaml",
        {
            "feed_start": D(start),
            "feed_end": D(end),
            "output_root": output_root,
            "day_workers": 1,
            "skeleton": {"chunk_rows": chunk_rows},
            "enrich": {"shard_rows": 1000},
        },
    )


def _days(start: str, end: str) -> list[dt.date]:
    a, b = D(start), D(end)
    return [a + dt.timedelta(days=i) for i in range((b - a).days + 1)]


# --------------------------------------------------------------------------- dataset "edge"

FEED_SCHEMA = pa.schema(
    [
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.int64()),
        ("artwork_id", pa.int64()),
        ("feed_session", pa.string()),
        ("clicked", pa.bool_()),
        ("liked", pa.bool_()),
        ("position", pa.int16()),
        ("surface", pa.string()),
        ("dwell_ms", pa.int32()),
        ("bid", pa.float64()),
    ]
)

PROFILE_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("updated_at", pa.timestamp("ns")),  # naive ns
        ("created_at", pa.timestamp("ms")),  # naive ms, nullable
        ("followers", pa.int64()),
        ("home_country", pa.string()),
        ("is_pro", pa.bool_()),
        ("signup", pa.date32()),
        ("artwork_id", pa.int64()),  # NOT an entity of the view: the user's favourite
    ]
)

USER_ARTWORK_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("artwork_id", pa.int64()),
        ("event_timestamp", pa.timestamp("ns")),  # naive ns with sub-microsecond parts; named like the spine's
        ("affinity", pa.float64()),
        ("seen_count", pa.int64()),
    ]
)

ARTWORK_SCHEMA = pa.schema(
    [
        ("artwork_id", pa.int64()),
        ("ts", pa.timestamp("ms", tz="America/New_York")),
        ("like_count", pa.int64()),
        ("category", pa.string()),
        ("published", pa.timestamp("ms", tz="America/New_York")),
        ("rating", pa.float64()),
    ]
)

LIKES_SCHEMA = pa.schema(
    [
        ("liked_at", pa.timestamp("s")),  # naive seconds
        ("artwork_id", pa.int64()),
        ("liker_id", pa.int64()),
        ("liker_name", pa.string()),
        ("weight", pa.float32()),
    ]
)


def ns(text: str, extra_ns: int = 0) -> Raw:
    return Raw(T(text) * 1000 + extra_ns)


def build_edge(root: Path | str, udf_module: str = DEFAULT_UDF_MODULE) -> Dataset:
    """The hand-made dataset: see the comments for what each row probes."""
    root = Path(root)
    write_udfs(root, udf_module)

    # ---- spine: hive, timestamp[us, tz=UTC]; 03-31 and 04-01 are look-back only,
    # 04-04 has no partition, 04-05 an empty file, 04-07 is after feed_end.
    def S(ts, user, art, session, clicked, liked, pos, surface, dwell, bid):
        return (T(ts), user, art, session, clicked, liked, pos, surface, dwell, bid)

    feed = {
        "dt=2026-03-31/part-0.parquet": [
            S("2026-03-31 12:00:00", 1, 10, "s0", True, False, 0, "home", 1000, 1.5),
            S("2026-03-31 23:00:00", 9, 11, "s0", False, False, 0, None, 500, 0.25),
        ],
        "dt=2026-04-01/part-0.parquet": [
            S("2026-04-01 10:00:00", 1, 11, "s1", True, True, 1, "explore", 2000, 2.0),
            S("2026-04-01 23:59:59.999999", 2, 10, "s1", False, None, 2, "home", None, 0.5),
        ],
        "dt=2026-04-02/part-0.parquet": [
            # out of order in the file on purpose (output is sorted by ts, ties in source order)
            S("2026-04-02 23:59:59", 3, 10, "sM", False, False, 0, "home", 5, 0.5),  # session over midnight
            # a feed page: four rows at one instant
            S("2026-04-02 09:00:00", 1, 10, "sA", True, False, 0, "home", 300, 1.0),
            S("2026-04-02 09:00:00", 1, 11, "sA", False, False, 1, "feed", None, 0.5),
            S("2026-04-02 09:00:00", 1, 12, "sA", True, True, 2, "search", 700, 0.25),
            S("2026-04-02 09:00:00", 1, 13, "sA", False, None, 3, None, 100, None),
            # 1h window of this row: [09:00:00.000001, ...) -> the page is at t - w - 1us: excluded
            S("2026-04-02 10:00:00.000001", 1, 11, "sA", False, False, 1, "explore", 60, 2.0),
            # 1h window of this row starts exactly at the page (t - w): included
            S("2026-04-02 10:00:00", 1, 10, "sA", False, False, 0, "explore", 50, 1.0),
            S("2026-04-02 12:00:00", None, 10, "sB", True, False, 0, "home", 10, 0.5),  # null user
            S("2026-04-02 12:00:00", 99, 999, "sB", False, False, 1, "home", 20, 0.5),  # unknown user/artwork
            S("2026-04-02 13:00:00", 2, None, "sC", False, False, 0, "home", 30, 0.5),  # null artwork
            S("2026-04-02 15:00:00", 4, 10, "sD", True, False, 0, "home", 40, 4.0),
            S("2026-04-02 15:00:00", 4, 10, "sD", True, False, 0, "home", 40, 4.0),  # exact duplicate
        ],
        "dt=2026-04-03/part-0.parquet": [
            S("2026-04-03 10:00:00", 5, 10, "sP", False, False, 0, "home", 1, 1.0),  # profile at t - ttl
            S("2026-04-03 10:00:00", 6, 10, "sP", True, False, 1, "home", 2, 1.0),  # profile at t
            S("2026-04-03 10:00:00", 7, 10, "sP", False, True, 2, "home", 3, 1.0),  # profile at t - ttl - 1us
            S("2026-04-03 10:00:00", 8, 10, "sP", False, False, 3, "home", 4, 1.0),  # created tie-break
        ],
        "dt=2026-04-03/part-1.parquet": [
            S("2026-04-03 00:00:01", 3, 11, "sM", True, False, 0, "home", 6, 0.5),  # session over midnight
            S("2026-04-03 09:00:00", 1, 10, "sE", False, False, 0, "home", 7, 0.5),  # user_artwork at t - 36h
            S("2026-04-03 10:00:00", 10, 11, "sQ", False, False, 0, "home", 8, 1.0),  # ns row at t + 500ns
            S("2026-04-03 10:00:00", 11, 11, "sQ", False, False, 1, "home", 9, 1.0),  # null created loses
            S("2026-04-03 10:00:00", 12, 12, "sQ", False, False, 2, "home", 10, 1.0),  # file order part-0/1
            S("2026-04-03 10:00:00", 13, 12, "sQ", False, False, 3, "home", 11, 1.0),  # row order in a file
            S("2026-04-03 10:00:00", 14, 12, "sQ", False, False, 4, "home", 12, 1.0),  # part-10 vs part-9
            S("2026-04-03 10:00:00", 15, 13, "sQ", False, False, 5, "home", 13, 1.0),  # null feature values
            S("2026-04-03 10:00:00", 16, 13, "sQ", False, False, 6, "home", 14, 1.0),  # newest row has nulls
            S("2026-04-03 10:00:00", 99, 13, "sQ", False, False, 7, "home", 15, 1.0),  # unknown user
        ],
        "dt=2026-04-05/part-0.parquet": [],  # empty file
        "dt=2026-04-06/part-0.parquet": [
            S("2026-04-06 00:00:00", 1, 10, "s6", True, False, 0, "home", 16, 1.0),  # exactly at day start
            S("2026-04-06 08:00:00", 6, 11, "s6", False, False, 1, None, None, None),  # profile at t - 2d
        ],
        "dt=2026-04-07/part-0.parquet": [
            S("2026-04-07 00:00:00", 1, 10, "s7", True, False, 0, "home", 17, 1.0),  # after feed_end
        ],
    }
    write_hive(root / "data/sources/feed", FEED_SCHEMA, "event_timestamp", feed)

    # ---- user_profile: hive, ttl 2d, ts naive ns, created naive ms (nullable)
    def P(ts, created, user, followers, country, pro, signup):
        fav = None if followers is None else 500 + followers  # a column named like a spine entity
        return (
            user,
            ts,
            None if created is None else T(created),
            followers,
            country,
            pro,
            None if signup is None else D(signup),
            fav,
        )

    profile = {
        "dt=2026-03-30/part-0.parquet": [
            P(ns("2026-03-30 08:00:00"), "2026-03-30 08:00:00", 1, 10, "DE", False, "2025-01-01"),
        ],
        "dt=2026-03-31/part-0.parquet": [
            P(ns("2026-03-31 10:00:00"), "2026-03-31 10:00:00", 6, 60, "IT", True, "2025-02-02"),
        ],
        "dt=2026-04-01/part-0.parquet": [
            P(ns("2026-04-01 08:00:00"), "2026-04-01 08:00:00", 1, 20, "FR", False, "2025-01-01"),
            P(ns("2026-04-01 10:00:00"), "2026-04-01 10:00:00", 5, 50, "ES", True, "2025-03-03"),  # t - 2d
            P(ns("2026-04-01 09:59:59.999999"), "2026-04-01 10:00:00", 7, 70, "PT", False, "2025-04-04"),  # t-2d-1us
        ],
        # lexical file order: part-10.parquet sorts before part-9.parquet
        "dt=2026-04-02/part-10.parquet": [
            P(ns("2026-04-02 09:00:00"), "2026-04-02 09:00:00", 1, 30, "US", True, "2025-01-01"),  # at the page's t
            P(ns("2026-04-02 08:00:00"), "2026-04-02 08:00:00", 14, 140, "AA", False, "2025-05-05"),
        ],
        "dt=2026-04-02/part-9.parquet": [
            P(ns("2026-04-02 08:00:00"), "2026-04-02 08:00:00", 14, 141, "BBB", False, "2025-05-06"),  # wins
        ],
        "dt=2026-04-03/part-0.parquet": [
            P(ns("2026-04-03 10:00:00"), "2026-04-03 10:00:00", 6, 61, "IT", True, "2025-02-02"),  # at t
            P(ns("2026-04-03 08:00:00"), "2026-04-03 08:30:00", 8, 80, "NL", False, "2025-06-06"),  # wins (created)
            P(
                ns("2026-04-03 08:00:00"), "2026-04-03 08:05:00", 11, 110, "GB", False, "2025-07-07"
            ),  # wins (null created loses)
            P(ns("2026-04-03 08:00:00"), "2026-04-03 08:05:00", 12, 120, "IE", False, "2025-08-08"),
            P(ns("2026-04-03 08:00:00"), "2026-04-03 08:05:00", 13, 130, "SE", False, "2025-09-09"),
            P(ns("2026-04-03 08:00:00"), "2026-04-03 08:05:00", 13, 131, "NOR", True, "2025-09-10"),  # wins (row order)
            P(ns("2026-04-03 09:00:00"), "2026-04-03 09:00:00", 10, 100, "CA", True, "2025-10-10"),
            P(ns("2026-04-03 10:00:00", 500), "2026-04-03 10:00:00", 10, 101, "MX", True, "2025-10-11"),  # t+500ns -> t
            P(ns("2026-04-03 10:00:00.000001"), "2026-04-03 10:00:00", 10, 102, "BR", True, "2025-10-12"),  # after t
            P(ns("2026-04-03 07:00:00"), None, 15, None, None, None, None),  # all nulls
            P(ns("2026-04-03 06:00:00"), "2026-04-03 06:00:00", 16, 160, "JP", True, "2025-11-11"),
            P(ns("2026-04-03 07:00:00"), "2026-04-03 07:00:00", 16, None, "KR", False, "2025-11-12"),  # newest: nulls
        ],
        "dt=2026-04-03/part-1.parquet": [
            P(ns("2026-04-03 08:00:00"), "2026-04-03 08:10:00", 8, 81, "BE", False, "2025-06-07"),
            P(ns("2026-04-03 08:00:00"), None, 11, 111, "UK", True, "2025-07-08"),
            P(
                ns("2026-04-03 08:00:00"), "2026-04-03 08:05:00", 12, 121, "NIR", True, "2025-08-09"
            ),  # wins (file order)
        ],
        "dt=2026-04-04/part-0.parquet": [
            P(ns("2026-04-04 08:00:00"), "2026-04-04 08:00:00", 6, 62, "GR", False, "2025-02-03"),  # t - 2d for 04-06
        ],
    }
    write_hive(root / "data/sources/user_profile", PROFILE_SCHEMA, "updated_at", profile)

    # ---- user_artwork: hive, ttl 36h (look-back must round up to 2 partitions), naive ns
    def UA(ts, user, art, affinity, seen):
        return (user, art, ts, affinity, seen)

    user_artwork = {
        "dt=2026-03-31/part-0.parquet": [
            UA(ns("2026-03-31 20:59:59.999999"), 1, 11, 0.75, 3),  # t - 36h - 1us for (1, 11) at 04-02 09:00
            UA(ns("2026-03-31 21:00:00"), 1, 13, 0.125, 1),  # exactly t - 36h for (1, 13) at 04-02 09:00
        ],
        "dt=2026-04-01/part-0.parquet": [
            UA(ns("2026-04-01 21:00:00"), 1, 10, 0.5, 2),  # exactly t - 36h for (1, 10) at 04-03 09:00
        ],
        "dt=2026-04-02/part-0.parquet": [
            UA(ns("2026-04-02 09:00:00", 400), 1, 12, 0.25, 5),  # truncates to exactly t
            UA(ns("2026-04-02 23:00:00"), 3, 10, 1.0, 7),
            UA(ns("2026-04-02 08:00:00"), None, 10, 9.0, 9),  # null key: joins nothing
        ],
        "dt=2026-04-05/part-0.parquet": [
            UA(ns("2026-04-05 12:00:00"), 1, 10, 2.0, 11),
        ],
    }
    write_hive(root / "data/sources/user_artwork", USER_ARTWORK_SCHEMA, "event_timestamp", user_artwork)

    # ---- artwork_stats: one non-partitioned file, ts in ms with tz America/New_York, no ttl
    write_file(
        root / "data/sources/artwork_stats.parquet",
        ARTWORK_SCHEMA,
        [
            (10, T("2026-01-01 00:00:00"), 5, "paint", T("2025-12-31 23:00:00.123"), 4.5),
            (11, T("2026-04-02 08:00:00"), 1, "photo", T("2026-03-01 00:00:00"), 3.0),
            (11, T("2026-04-02 08:00:00"), 2, "photo2", T("2026-03-02 00:00:00"), 3.5),  # same ts: later row wins
            (10, T("2026-04-02 12:00:00"), 7, "paint2", T("2026-04-01 12:34:56.789"), 4.0),
            (12, T("2026-04-02 09:00:00.001"), 3, "sculpt", None, None),  # 1ms after the page
            (10, T("2026-04-06 00:00:00"), 9, "paint3", T("2026-04-05 00:00:00"), 5.0),  # exactly at t
        ],
    )

    # ---- likes: hive, timestamp[s] naive, an event source for aggregations
    def L(ts, art, liker, name, weight):
        return (T(ts), art, liker, name, weight)

    likes_rows = [
        L("2026-03-27 12:00:00", 10, 7, "gus", 1.0),
        L("2026-04-01 09:59:59", 10, 2, "bob", 8.0),  # t - 1d - 1s for t = 04-02 10:00
        L("2026-04-01 10:00:00", 10, 1, "ann", 0.5),  # exactly t - 1d
        L("2026-04-01 12:00:00", None, 9, "zed", 2.0),  # null group: never matches
        L("2026-04-02 08:30:00", 11, 1, "ann", None),
        L("2026-04-02 09:30:00", 10, 1, "ann", None),
        L("2026-04-02 09:45:00", 10, 4, "dan", 0.25),
        L("2026-04-02 09:45:00", 10, 5, "eve", 0.75),  # same ts, later in the file: more recent
        L("2026-04-02 09:50:00", 10, 6, None, 1.5),  # most recent, but a null name
        L("2026-04-02 10:00:00", 10, 3, "cat", 16.0),  # exactly t: excluded
        L("2026-04-03 09:59:59", 11, 2, "bob", 0.5),
        L("2026-04-05 12:00:00", 10, 1, "ann", 4.0),
    ]
    write_hive(root / "data/sources/likes", LIKES_SCHEMA, "liked_at", by_day(likes_rows, 0))

    # ---- definitions
    write_yaml(
        root / "feature_views/user_profile.yaml",
        {
            "name": "user_profile",
            "entities": ["user_id"],
            "source": {
                "path": "data/sources/user_profile",
                "timestamp_field": "updated_at",
                "created_timestamp_field": "created_at",
            },
            "ttl": "2d",
            "features": [
                {"name": "followers", "dtype": "int64"},
                {"name": "country", "dtype": "string", "column": "home_country"},
                {"name": "followers_f32", "dtype": "float32", "column": "followers"},
                {"name": "log_followers", "dtype": "float64", "expr": "ln(1 + followers)"},
                {"name": "country_or_unknown", "dtype": "string", "expr": "coalesce(home_country, 'unknown')"},
                {
                    "name": "size_class",
                    "dtype": "string",
                    "expr": "CASE WHEN followers >= 100 THEN 'big' ELSE 'small' END",
                },
                {
                    "name": "country_bucket",
                    "dtype": "int32",
                    "udf": f"{udf_module}:country_bucket",
                    "inputs": ["home_country"],
                },
                {"name": "boosted", "dtype": "int64", "udf": f"{udf_module}:boost", "inputs": ["followers", "is_pro"]},
                {"name": "is_pro", "dtype": "bool"},
                {"name": "signup", "dtype": "date"},
                {"name": "fav_artwork", "dtype": "int64", "column": "artwork_id"},  # not the spine's artwork_id
                {"name": "updated", "dtype": "timestamp", "column": "updated_at"},  # ns naive -> us UTC, truncated
            ],
        },
    )
    write_yaml(
        root / "feature_views/artwork_stats.yaml",
        {
            "name": "artwork_stats",
            "entities": ["artwork_id"],
            "source": {"path": "data/sources/artwork_stats.parquet", "timestamp_field": "ts"},
            "features": [
                {"name": "like_count", "dtype": "int64"},
                {"name": "category", "dtype": "string"},
                {"name": "published", "dtype": "timestamp"},
                {"name": "rating", "dtype": "float64"},
            ],
        },
    )
    write_yaml(
        root / "feature_views/user_artwork.yaml",
        {
            "name": "user_artwork",
            "entities": ["user_id", "artwork_id"],
            "source": {"path": "data/sources/user_artwork", "timestamp_field": "event_timestamp"},
            "ttl": "36h",
            "features": [
                {"name": "affinity", "dtype": "float64"},
                {"name": "seen", "dtype": "int32", "column": "seen_count"},
            ],
        },
    )
    write_yaml(
        root / "config/training/aggregations.yaml",
        {
            "aggregations": [
                {
                    "name": "user_engagement",
                    "source": "spine",
                    "group_by": ["user_id"],
                    "windows": ["1h", "1d", "2d"],
                    "features": [
                        {"name": "impressions", "function": "count"},
                        {"name": "dwell_events", "column": "dwell_ms", "function": "count"},
                        {"name": "clicks", "column": "clicked", "function": "sum"},
                        {"name": "ctr", "column": "clicked", "function": "mean"},
                        {"name": "dwell_total", "column": "dwell_ms", "function": "sum"},
                        {"name": "dwell_min", "column": "dwell_ms", "function": "min"},
                        {"name": "dwell_max", "column": "dwell_ms", "function": "max"},
                        {"name": "bid_sum", "column": "bid", "function": "sum", "windows": ["1d"]},
                        {"name": "bid_mean", "column": "bid", "function": "mean", "windows": ["1d"]},
                        {"name": "artworks_seen", "column": "artwork_id", "function": "count_distinct"},
                        {"name": "last_surface", "column": "surface", "function": "last"},
                        {
                            "name": "recent_artworks",
                            "column": "artwork_id",
                            "function": "last_k",
                            "k": 3,
                            "windows": ["2d"],
                        },
                    ],
                },
                {
                    "name": "artwork_likes",
                    "source": {"path": "data/sources/likes", "timestamp_field": "liked_at"},
                    "group_by": ["artwork_id"],
                    "windows": ["1d"],
                    "features": [
                        {"name": "likes", "function": "count"},
                        {"name": "weighted_likes", "column": "weight", "function": "count"},
                        {"name": "likers", "column": "liker_id", "function": "count_distinct"},
                        {"name": "weight_sum", "column": "weight", "function": "sum"},
                        {"name": "weight_mean", "column": "weight", "function": "mean"},
                        {"name": "weight_min", "column": "weight", "function": "min"},
                        {"name": "weight_max", "column": "weight", "function": "max"},
                        {"name": "last_liker", "column": "liker_name", "function": "last", "windows": ["1d", "1w"]},
                        {
                            "name": "recent_likers",
                            "column": "liker_id",
                            "function": "last_k",
                            "k": 3,
                            "windows": ["2d"],
                        },
                    ],
                },
            ]
        },
    )
    write_yaml(
        root / "feature_services/edge_ranking.yaml",
        {
            "name": "edge_ranking",
            "spine": {
                "source": {"path": "data/sources/feed", "timestamp_field": "event_timestamp"},
                "entities": ["user_id", "artwork_id"],
                "session_field": "feed_session",
                "labels": ["clicked", "liked"],
                "passthrough": ["position", "surface"],
            },
            "features": [
                "user_profile",
                {"view": "artwork_stats", "features": ["category", "like_count", "published"]},
                "user_artwork",
            ],
            "aggregations": ["user_engagement", "artwork_likes"],
        },
    )
    _runtime(root, "2026-04-02", "2026-04-06", chunk_rows=3)
    return Dataset(
        root, "edge_ranking", _days("2026-04-02", "2026-04-06"), "data/training_output", 3, EXPRS, udf_module
    )


# --------------------------------------------------------------------------- dataset "simple"


def build_simple(root: Path | str, udf_module: str = DEFAULT_UDF_MODULE) -> Dataset:
    """A second shape: non-hive spine file (naive ns, not sorted, timestamp column not named
    event_timestamp), string entity, no session field, a glob view source with a tz-aware
    ms timestamp, a view without ttl over old hive partitions, windows 90m and 1w, int8 labels."""
    root = Path(root)
    write_udfs(root, udf_module)

    spine_schema = pa.schema(
        [
            ("impression_ts", pa.timestamp("ns")),
            ("user_id", pa.string()),
            ("label", pa.int8()),
            ("item", pa.string()),
        ]
    )
    write_file(
        root / "data/sources/impressions.parquet",
        spine_schema,
        [
            (T("2026-04-03 12:00:00"), "bob", 1, "x"),
            (T("2026-03-28 08:00:00"), "ann", 3, "old"),  # look-back (1w)
            (T("2026-04-01 06:30:00"), "ann", 1, "a"),
            (T("2026-04-01 08:00:00"), "ann", 0, "b"),  # 90m window starts exactly at 06:30
            (T("2026-04-01 08:00:00"), "bob", None, "c"),
            (T("2026-04-01 00:00:00"), None, 2, "d"),  # null entity, at day start
            (T("2026-04-03 12:00:00"), "bob", 1, "x"),  # duplicate
            (T("2026-04-03 13:29:59.999"), "bob", 0, "y"),  # 90m window: 12:00 is t - w + 1ms: in
            (T("2026-04-03 13:30:00.001"), "bob", 5, "z"),  # 90m window: 12:00 is t - w - 1ms: out
            (T("2026-04-03 23:59:59.999"), "zoe", 4, "w"),
            # equal once truncated to us: same timestamp, so source order (p before q), and
            # neither is strictly before the other (each one's window excludes the other)
            (Raw(T("2026-04-03 15:00:00") * 1000 + 900), "cy", 1, "p"),
            (Raw(T("2026-04-03 15:00:00") * 1000 + 100), "cy", 2, "q"),
            (T("2026-04-04 00:00:00"), "ann", 1, "after"),  # after feed_end
        ],
    )

    stats_schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("ts", pa.timestamp("ms", tz="Asia/Tokyo")),
            ("created", pa.timestamp("us", tz="UTC")),
            ("score", pa.float64()),
            ("tier", pa.string()),
            ("active", pa.bool_()),
        ]
    )
    # glob source: a.parquet sorts before b.parquet; b is written first
    write_file(
        root / "data/sources/user_stats/b.parquet",
        stats_schema,
        [
            ("ann", T("2026-04-01 05:00:00"), T("2026-04-01 05:00:00"), 2.5, "gold", True),  # t - 90m for 06:30
            ("ann", T("2026-04-01 06:30:00"), T("2026-04-01 06:00:00"), 3.5, "plat", False),  # same ts as in a: wins
            ("bob", T("2026-04-03 10:29:59.999"), None, 1.0, "tin", True),  # t - 90m - 1ms for 12:00
        ],
    )
    write_file(
        root / "data/sources/user_stats/a.parquet",
        stats_schema,
        [
            ("ann", T("2026-04-01 06:30:00"), T("2026-04-01 06:00:00"), 9.0, "lost", True),
            ("bob", T("2026-04-03 12:00:00"), T("2026-04-03 12:00:00"), None, None, None),  # exactly at t, nulls
            ("zoe", T("2026-04-03 22:30:00"), T("2026-04-03 22:30:00"), 0.125, "new", True),
        ],
    )
    write_file(root / "data/sources/user_stats/notes.txt.parquet.bak", stats_schema, [])  # not matched by the glob

    static_schema = pa.schema(
        [
            ("user_id", pa.string()),
            ("valid_from", pa.timestamp("us")),
            ("cohort", pa.int32()),
            ("signup", pa.date32()),
        ]
    )
    write_hive(
        root / "data/sources/user_static",
        static_schema,
        "valid_from",
        {
            "dt=2026-01-15/part-0.parquet": [
                ("ann", T("2026-01-15 00:00:00"), 1, D("2026-01-15")),
                ("bob", T("2026-01-15 12:00:00"), 2, None),
            ],
            "dt=2026-03-31/part-0.parquet": [
                ("ann", T("2026-03-31 23:59:59.999999"), 3, D("2026-03-31")),
            ],
            "dt=2026-04-03/part-0.parquet": [
                ("zoe", T("2026-04-03 23:59:59.999"), 4, D("2026-04-03")),  # exactly at t
            ],
        },
    )

    write_yaml(
        root / "feature_views/user_stats.yaml",
        {
            "name": "user_stats",
            "entities": ["user_id"],
            "source": {
                "path": "data/sources/user_stats/*.parquet",
                "timestamp_field": "ts",
                "created_timestamp_field": "created",
            },
            "ttl": "90m",
            "features": [
                {"name": "score", "dtype": "float64"},
                {"name": "tier", "dtype": "string"},
                {"name": "double_score", "dtype": "float64", "expr": "score * 2"},
                {"name": "active", "dtype": "bool"},
                {"name": "tier_len", "dtype": "int64", "udf": f"{udf_module}:tag_len", "inputs": ["tier"]},
            ],
        },
    )
    write_yaml(
        root / "feature_views/user_static.yaml",
        {
            "name": "user_static",
            "entities": ["user_id"],
            "source": {"path": "data/sources/user_static", "timestamp_field": "valid_from"},
            "features": [
                {"name": "cohort", "dtype": "int32"},
                {"name": "signup", "dtype": "date"},
            ],
        },
    )
    write_yaml(
        root / "config/training/aggregations.yaml",
        {
            "aggregations": [
                {
                    "name": "user_activity",
                    "source": "spine",
                    "group_by": ["user_id"],
                    "windows": ["90m", "1w"],
                    "features": [
                        {"name": "n", "function": "count"},
                        {"name": "n_recent", "function": "count", "windows": ["45s"]},
                        {"name": "label_sum", "column": "label", "function": "sum"},
                        {"name": "label_mean", "column": "label", "function": "mean"},
                        {"name": "label_max", "column": "label", "function": "max"},
                        {"name": "label_min", "column": "label", "function": "min", "windows": ["1w"]},
                        {"name": "recent_labels", "column": "label", "function": "last_k", "k": 3, "windows": ["1w"]},
                        {"name": "last_item", "column": "item", "function": "last", "windows": ["1w"]},
                        {"name": "items", "column": "item", "function": "count_distinct", "windows": ["1w"]},
                    ],
                },
            ]
        },
    )
    write_yaml(
        root / "feature_services/simple.yaml",
        {
            "name": "simple",
            "spine": {
                "source": {"path": "data/sources/impressions.parquet", "timestamp_field": "impression_ts"},
                "entities": ["user_id"],
                "labels": ["label"],
            },
            "features": [{"view": "user_static", "features": ["signup", "cohort"]}, "user_stats"],
            "aggregations": ["user_activity"],
        },
    )
    _runtime(root, "2026-04-01", "2026-04-03", chunk_rows=2, output_root="out/skeleton")
    return Dataset(root, "simple", _days("2026-04-01", "2026-04-03"), "out/skeleton", 2, EXPRS, udf_module)


# --------------------------------------------------------------------------- random datasets

GRID_US = 30 * 60 * US  # 30-minute grid: ties and exact window bounds are frequent
RANDOM_BASE = T("2026-04-01 00:00:00")  # 04-01 is look-back only; feed 04-02..04-03
RANDOM_SLOTS = 3 * 48  # 04-01 00:00 .. 04-03 23:30


def random_spec_strategy():
    """A hypothesis strategy for `build_random`'s spec (imported lazily: hypothesis is test-only)."""
    from hypothesis import strategies as st

    @st.composite
    def spec(draw):
        # clustered around a base slot in the feed days (slot 48 = 04-02 00:00) so that windows
        # and ttls catch rows often; some spread, a few in the look-back day
        base = draw(st.integers(48, RANDOM_SLOTS - 4))
        offset = st.one_of(st.integers(-3, 3), st.integers(-3, 3), st.integers(-52, 6))
        slots = draw(
            st.lists(
                offset.map(lambda o: min(max(base + o, 36), RANDOM_SLOTS - 1)), min_size=2, max_size=6, unique=True
            )
        )
        slot = st.sampled_from(slots)
        user = st.one_of(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.none())
        art = st.one_of(st.integers(1, 3), st.integers(1, 3), st.none())
        opt_int = st.one_of(st.integers(0, 5), st.none())
        opt_float = st.one_of(st.sampled_from([0.0, 0.5, 1.25, -2.0, 8.0]), st.none())
        opt_tag = st.one_of(st.sampled_from(["a", "b", "cc"]), st.none())
        spine = draw(
            st.lists(
                st.tuples(slot, user, art, st.sampled_from(["s1", "s2", "s3", "s4"]), st.booleans(), opt_int),
                min_size=4,
                max_size=14,
            )
        )
        profile = draw(
            st.lists(st.tuples(slot, user, st.one_of(slot, st.none()), opt_int, opt_tag), min_size=2, max_size=10)
        )
        events = draw(st.lists(st.tuples(slot, art, opt_float, opt_tag), min_size=2, max_size=10))
        return {
            "spine": spine,
            "profile": profile,
            "events": events,
            "spine_split": draw(st.integers(0, 14)),  # where each spine partition splits into 2 files
            "profile_split": draw(st.integers(0, 10)),
            "ttl": draw(st.sampled_from([None, "1h", "90m", "1d"])),
            "user_windows": draw(st.lists(st.sampled_from(["1h", "2h", "1d"]), min_size=1, max_size=2, unique=True)),
            "event_window": draw(st.sampled_from(["30m", "1h", "1d", "2d"])),
            "chunk_rows": draw(st.integers(1, 7)),
        }

    return spec()


def build_random(root: Path | str, specs: list[dict], udf_module: str = DEFAULT_UDF_MODULE) -> Dataset:
    """Several random specs merged into ONE working directory (one CLI run for all of them):
    spec i gets its own view `profile_<i>` (own source and ttl) and aggregations
    `user_agg_<i>` / `art_events_<i>` (own windows), and disjoint keys (user and artwork ids
    10*i + 1..3, sessions prefixed by i). All specs share the spine (and its time grid, so
    spine ties across specs are frequent). chunk_rows and file splits come from specs[0]."""
    root = Path(root)
    write_udfs(root, udf_module)

    def ts(slot):
        return RANDOM_BASE + slot * GRID_US

    def two_files(rows, ts_index, split):
        files: dict[str, list] = {}
        for d_rel, rs in by_day(rows, ts_index).items():
            part = d_rel.split("/")[0]
            cut = min(split, len(rs))
            files[f"{part}/part-0.parquet"] = rs[:cut]
            if rs[cut:]:
                files[f"{part}/part-1.parquet"] = rs[cut:]
        return files

    def key(i, v):
        return None if v is None else 10 * i + v

    spine_schema = pa.schema(
        [
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
            ("user_id", pa.int64()),
            ("artwork_id", pa.int64()),
            ("session", pa.string()),
            ("clicked", pa.bool_()),
            ("value", pa.int64()),
        ]
    )
    spine_rows = [
        (ts(sl), key(i, u), key(i, a), f"{i}{sess}", c, v)
        for i, spec in enumerate(specs)
        for (sl, u, a, sess, c, v) in spec["spine"]
    ]
    write_hive(
        root / "data/sources/feed", spine_schema, "event_timestamp", two_files(spine_rows, 0, specs[0]["spine_split"])
    )

    profile_schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("ts", pa.timestamp("ms")),
            ("created", pa.timestamp("s")),
            ("value", pa.int64()),
            ("tag", pa.string()),
        ]
    )
    events_schema = pa.schema(
        [
            ("ts", pa.timestamp("s", tz="Europe/Berlin")),
            ("artwork_id", pa.int64()),
            ("amount", pa.float32()),
            ("tag", pa.string()),
        ]
    )
    aggregations = []
    service_features = []
    service_aggs = []
    for i, spec in enumerate(specs):
        profile_rows = [
            (key(i, u), ts(sl), None if c is None else ts(c), v, tag) for (sl, u, c, v, tag) in spec["profile"]
        ]
        write_hive(
            root / f"data/sources/profile_{i}", profile_schema, "ts", two_files(profile_rows, 1, spec["profile_split"])
        )
        event_rows = [(ts(sl), key(i, a), amt, tag) for (sl, a, amt, tag) in spec["events"]]
        write_file(root / f"data/sources/events_{i}.parquet", events_schema, event_rows)

        view = {
            "name": f"profile_{i}",
            "entities": ["user_id"],
            "source": {
                "path": f"data/sources/profile_{i}",
                "timestamp_field": "ts",
                "created_timestamp_field": "created",
            },
            "features": [
                {"name": "value", "dtype": "int64"},
                {"name": "label", "dtype": "string", "column": "tag"},
                {"name": "value_plus_one", "dtype": "int64", "expr": "value + 1"},
                {"name": "tag_len", "dtype": "int64", "udf": f"{udf_module}:tag_len", "inputs": ["tag"]},
            ],
        }
        if spec["ttl"]:
            view["ttl"] = spec["ttl"]
        write_yaml(root / f"feature_views/profile_{i}.yaml", view)
        service_features.append(f"profile_{i}")
        aggregations += [
            {
                "name": f"user_agg_{i}",
                "source": "spine",
                "group_by": ["user_id"],
                "windows": spec["user_windows"],
                "features": [
                    {"name": "n", "function": "count"},
                    {"name": "clicks", "column": "clicked", "function": "sum"},
                    {"name": "ctr", "column": "clicked", "function": "mean"},
                    {"name": "value_sum", "column": "value", "function": "sum"},
                    {"name": "value_min", "column": "value", "function": "min"},
                    {"name": "arts", "column": "artwork_id", "function": "last_k", "k": 2},
                ],
            },
            {
                "name": f"art_events_{i}",
                "source": {"path": f"data/sources/events_{i}.parquet", "timestamp_field": "ts"},
                "group_by": ["artwork_id"],
                "windows": [spec["event_window"]],
                "features": [
                    {"name": "n_amount", "column": "amount", "function": "count"},
                    {"name": "amount_sum", "column": "amount", "function": "sum"},
                    {"name": "amount_mean", "column": "amount", "function": "mean"},
                    {"name": "amount_max", "column": "amount", "function": "max"},
                    {"name": "tags", "column": "tag", "function": "count_distinct"},
                    {"name": "last_tag", "column": "tag", "function": "last"},
                    {"name": "recent_tags", "column": "tag", "function": "last_k", "k": 3},
                ],
            },
        ]
        service_aggs += [f"user_agg_{i}", f"art_events_{i}"]
    write_yaml(root / "config/training/aggregations.yaml", {"aggregations": aggregations})
    write_yaml(
        root / "feature_services/rand.yaml",
        {
            "name": "rand",
            "spine": {
                "source": {"path": "data/sources/feed", "timestamp_field": "event_timestamp"},
                "entities": ["user_id", "artwork_id"],
                "session_field": "session",
                "labels": ["clicked"],
            },
            "features": service_features,
            "aggregations": service_aggs,
        },
    )
    chunk = specs[0]["chunk_rows"]
    _runtime(root, "2026-04-02", "2026-04-03", chunk_rows=chunk)
    return Dataset(root, "rand", _days("2026-04-02", "2026-04-03"), "data/training_output", chunk, EXPRS, udf_module)
