"""One logical dataset, written the ways users write theirs (see tests/test_type_matrix.py).

The same rows (a feed spine, a profile view, an event log for aggregations) are written by
pyarrow, pandas (pyarrow engine), polars and DuckDB, each with its own partitioned-dataset
API (`write_to_dataset`, `to_parquet(partition_cols=...)`, `write_parquet(partition_by=...)`,
`COPY ... (PARTITION_BY ...)`), in every timestamp unit and zone the writer offers, and with
the physical types each writer naturally produces for the other columns:

| column kind | pyarrow | pandas | polars | DuckDB |
|---|---|---|---|---|
| spine `user_id` | int8 | UInt16 (nullable) | UInt32 | UTINYINT |
| view `user_id` | int64 | Int64 | Int64 | BIGINT |
| events `user_id` | uint16 | UInt32 | UInt8 | USMALLINT |
| categories (`item`, `tier`, `tag`) | dictionary<int32, string> | Categorical | Categorical / Enum | ENUM |
| `session` | string_view | str (large_string) | String (large_string) | VARCHAR |
| money (`price`, `score`, `amount`) | decimal128(10, 2) | Decimal objects | Decimal(10, 2) | DECIMAL(10, 2) |
| small ints (`level`, `n`) | uint8, int16 | UInt8, Int16 | UInt8, Int16 | UTINYINT, SMALLINT |

Every time role (the spine's timestamp, the view's timestamp_field and
created_timestamp_field, the aggregation source's timestamp, timestamp-typed feature and
aggregated columns) uses the cell's unit and zone. Canonical times are UTC nanoseconds;
each writer converts them the way its users do (so an `s` or `ms` cell holds truncated
values, and the reference reads what the file holds).
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

NS = 1_000_000_000
DAY_NS = 86_400 * NS
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
START, END = "2026-04-02", "2026-04-03"
CHUNK_ROWS = 7


def t(text: str, extra_ns: int = 0) -> int:
    """'2026-04-02 10:00:00.25' (UTC) -> nanoseconds since the epoch."""
    value = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000 + extra_ns


def day_of(ns: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ns // DAY_NS)).isoformat()


def money(text: str | None) -> decimal.Decimal | None:
    return None if text is None else decimal.Decimal(text)


# --------------------------------------------------------------------------- the logical rows

SPINE = [  # event_timestamp, user_id, item, session, clicked, price
    (t("2026-04-01 10:00:00"), 1, "a", "s0", True, "1.50"),  # look-back of the spine aggregation
    (t("2026-04-01 23:30:00"), 2, "b", "s0", False, "2.00"),  # 05:00 the next day in Kolkata
    (t("2026-04-02 00:00:00"), 1, "a", "s1", True, "0.99"),  # exactly at the day's start
    (t("2026-04-02 09:00:00"), 1, "a", "s1", False, None),
    (t("2026-04-02 09:00:00"), 2, "b", "s1", True, "3.00"),  # same instant, source order
    (t("2026-04-02 10:00:00"), 3, "c", "s2", False, "1.00"),
    (t("2026-04-02 10:00:00.25"), 1, "b", "s2", True, "2.50"),  # sub-second (truncated in s cells)
    (t("2026-04-02 18:29:59"), None, "a", "s3", False, "1.00"),  # null user; 23:59:59 in Kolkata
    (t("2026-04-02 18:30:00"), 2, None, "s3", True, "1.25"),  # null item; midnight in Kolkata
    (t("2026-04-02 23:59:59.999999", 999), 4, "a", "s4", False, "0.10"),  # last nanosecond of the day
    (t("2026-04-03 01:00:00"), 1, "c", "s4", True, "5.00"),  # a session over midnight
    (t("2026-04-03 04:59:59"), 3, "a", "s5", False, None),  # 00:59:59 in New York (EDT)
    (t("2026-04-03 09:00:00"), 2, "a", "s5", False, None),
    (t("2026-04-03 09:00:00"), 9, "a", "s5", True, "1.00"),  # a user no source knows
    (t("2026-04-03 12:00:00"), 3, "b", "s6", False, "2.00"),
    (t("2026-04-03 12:00:00"), 3, "b", "s6", False, "2.00"),  # an exact duplicate row
]

PROFILE = [  # user_id, updated_at, created_at, signup_at, signup_day, score, level, tier
    (1, t("2026-04-01 09:00:00"), t("2026-04-01 09:00:00"), t("2025-01-01 08:00:00"), "2025-01-01", "10.50", 3, "gold"),
    (1, t("2026-04-02 09:00:00"), None, t("2025-01-01 08:00:00"), "2025-01-01", "11.00", 4, "gold"),
    (
        1,
        t("2026-04-02 09:00:00"),
        t("2026-04-02 09:00:00"),
        t("2025-01-02 08:00:00.5"),
        "2025-01-02",
        "12.00",
        5,
        "plat",
    ),
    (2, t("2026-04-01 08:59:59"), t("2026-04-01 09:00:00"), t("2025-02-01 00:00:00"), "2025-02-01", "20.00", 1, "gold"),
    (2, t("2026-04-02 09:00:00.5"), t("2026-04-02 09:00:00.5"), None, None, None, None, None),
    (2, t("2026-04-02 12:00:00"), t("2026-04-02 13:00:00"), t("2025-02-03 00:00:00"), "2025-02-03", "21.25", 2, None),
    (
        3,
        t("2026-04-02 10:00:00"),
        t("2026-04-02 10:00:00", 100),
        t("2025-03-01 00:00:00"),
        "2025-03-01",
        "30.00",
        7,
        "bronze",
    ),
    (
        3,
        t("2026-04-02 10:00:00"),
        t("2026-04-02 10:00:00", 200),
        t("2025-03-02 00:00:00"),
        "2025-03-02",
        "31.00",
        8,
        "silver",
    ),
    (
        3,
        None,
        t("2026-04-02 10:00:00"),
        t("2025-03-03 00:00:00"),
        "2025-03-03",
        "99.00",
        9,
        "gold",
    ),  # no timestamp: never joins
    (
        4,
        t("2026-04-02 23:00:00"),
        t("2026-04-02 23:00:00"),
        t("2025-04-01 00:00:00"),
        "2025-04-01",
        "40.00",
        10,
        "gold",
    ),
    (1, t("2026-04-02 23:30:00"), t("2026-04-02 23:30:00"), t("2025-01-03 00:00:00"), "2025-01-03", "13.00", 6, "plat"),
    (
        3,
        t("2026-04-02 04:59:59"),
        t("2026-04-02 05:00:00"),
        t("2025-03-04 00:00:00"),
        "2025-03-04",
        "32.00",
        11,
        "gold",
    ),
]


def _events() -> list[tuple]:
    """user_id, ts, seen_at, seen_day, tag, amount, n: boundary rows, then seeded filler."""
    rows = [
        (1, t("2026-04-02 08:00:00"), t("2026-03-01 00:00:00"), "2026-03-01", "x", "1.00", 1),  # t - 1h: in
        (1, t("2026-04-02 09:00:00"), t("2026-03-02 00:00:00"), "2026-03-02", "y", "2.00", 2),  # at t: out
        (1, t("2026-04-01 09:00:00"), t("2026-03-03 00:00:00"), "2026-03-03", "z", "3.00", 3),  # t - 1d: in
        (2, t("2026-04-02 08:59:59.999999"), None, None, None, None, None),  # all nulls
        (2, t("2026-04-02 08:30:00"), t("2026-03-04 00:00:00"), "2026-03-04", "x", "4.50", 4),
        (2, t("2026-04-02 08:30:00"), t("2026-03-05 00:00:00"), "2026-03-05", "y", "5.25", 5),  # tie: source order
        (3, t("2026-04-01 23:59:59.999999", 500), t("2026-03-06 00:00:00"), "2026-03-06", "z", "6.00", 6),
        (None, t("2026-04-02 09:30:00"), t("2026-03-07 00:00:00"), "2026-03-07", "x", "7.00", 7),  # null group
    ]
    rng = random.Random(12)
    users = [1, 2, 3, 4, None]
    tags = ["x", "y", "z", "w", None]
    for _ in range(48):
        day = rng.choice(["2026-03-31", "2026-04-01", "2026-04-02", "2026-04-03"])
        minute = rng.randrange(0, 24 * 60, 15)
        ts = t(f"{day} 00:00:00") + minute * 60 * NS + rng.choice([0, 0, 0, 250_000_000, 999])
        seen = None if rng.random() < 0.2 else t("2026-02-01 00:00:00") + rng.randrange(0, 40 * 86_400) * NS
        seen_day = (
            None if rng.random() < 0.2 else (dt.date(2026, 2, 1) + dt.timedelta(days=rng.randrange(40))).isoformat()
        )
        amount = None if rng.random() < 0.2 else f"{rng.randrange(0, 10_000) / 100:.2f}"
        n = None if rng.random() < 0.2 else rng.randrange(-5, 50)
        rows.append((rng.choice(users), ts, seen, seen_day, rng.choice(tags), amount, n))
    return rows


EVENTS = _events()
CATEGORIES = {"item": ["a", "b", "c"], "tier": ["bronze", "silver", "gold", "plat"], "tag": ["w", "x", "y", "z"]}

# Column kinds: time (a time role: the cell's unit/zone), date, id:<table>, cat, session,
# money, int8u (small unsigned), int16, bool.
SPINE_COLS = [
    ("event_timestamp", "time"),
    ("user_id", "id:spine"),
    ("item", "cat"),
    ("session", "session"),
    ("clicked", "bool"),
    ("price", "money"),
]
PROFILE_COLS = [
    ("user_id", "id:view"),
    ("updated_at", "time"),
    ("created_at", "time"),
    ("signup_at", "time"),
    ("signup_day", "date"),
    ("score", "money"),
    ("level", "int8u"),
    ("tier", "cat"),
]
EVENT_COLS = [
    ("user_id", "id:events"),
    ("ts", "time"),
    ("seen_at", "time"),
    ("seen_day", "date"),
    ("tag", "cat"),
    ("amount", "money"),
    ("n", "int16"),
]


def _columns(cols: list[tuple[str, str]], rows: list[tuple]) -> dict[str, tuple[str, list]]:
    out = {}
    for i, (name, kind) in enumerate(cols):
        values = [r[i] for r in rows]
        if kind == "money":
            values = [money(v) for v in values]
        elif kind == "date":
            values = [None if v is None else dt.date.fromisoformat(v) for v in values]
        out[name] = (kind, values)
    return out


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    writer: str  # pyarrow | pandas | polars | duckdb
    unit: str  # s ms us ns | date | date64 | int96 | a DuckDB type name
    zone: str | None = None

    @property
    def id(self) -> str:
        return f"{self.writer}-{self.unit}" + (f"-{self.zone.replace('/', '_')}" if self.zone else "")


ZONES = [None, "UTC", "Asia/Kolkata"]
CELLS: list[Cell] = (
    [Cell("pyarrow", u, z) for u in ("s", "ms", "us", "ns") for z in ZONES]
    + [Cell("pyarrow", "int96"), Cell("pyarrow", "date"), Cell("pyarrow", "date64")]
    + [Cell("pandas", u, z) for u in ("s", "ms", "us", "ns") for z in ZONES]
    + [Cell("pandas", "ns", "America/New_York"), Cell("pandas", "date")]
    + [Cell("polars", u, z) for u in ("ms", "us", "ns") for z in ZONES]  # polars has no seconds unit
    + [Cell("polars", "date")]
    + [
        Cell("duckdb", u)
        for u in ("TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMPTZ", "TIMESTAMPTZ_NS", "DATE")
    ]
)


def _is_date_cell(cell: Cell) -> bool:
    return cell.unit in ("date", "date64", "DATE")


def _as_dates(ns_values: list) -> list:
    return [None if v is None else dt.date.fromisoformat(day_of(v)) for v in ns_values]


# --------------------------------------------------------------------------- writers


def _pa_array(cell: Cell, kind: str, values: list) -> pa.Array:
    if kind == "time":
        if _is_date_cell(cell):
            return pa.array(_as_dates(values), pa.date64() if cell.unit == "date64" else pa.date32())
        unit = "ns" if cell.unit == "int96" else cell.unit
        arr = pa.array(values, pa.int64()).cast(pa.timestamp("ns")).cast(pa.timestamp(unit), safe=False)
        return arr.cast(pa.timestamp(unit, tz=cell.zone)) if cell.zone else arr
    types = {
        "id:spine": pa.int8(),
        "id:view": pa.int64(),
        "id:events": pa.uint16(),
        "session": pa.string_view(),
        "money": pa.decimal128(10, 2),
        "int8u": pa.uint8(),
        "int16": pa.int16(),
        "bool": pa.bool_(),
        "date": pa.date32(),
    }
    if kind == "cat":
        return pa.array(values, pa.string()).dictionary_encode()
    return pa.array(values, types[kind])


def _write_pyarrow(cell: Cell, path: Path, columns: dict, partition: str | None) -> None:
    table = pa.table({name: _pa_array(cell, kind, vals) for name, (kind, vals) in columns.items()})
    int96 = cell.unit == "int96"
    if partition is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, use_deprecated_int96_timestamps=int96)
        return
    # write_to_dataset has no kernels for string_view: one file per day, as many pipelines do
    days = [day_of(v) for v in columns[partition][1]]
    for day in sorted(set(days)):
        rows = [i for i, d in enumerate(days) if d == day]
        part = pa.table(
            {name: _pa_array(cell, kind, [vals[i] for i in rows]) for name, (kind, vals) in columns.items()}
        )
        (path / f"dt={day}").mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path / f"dt={day}" / "part-0.parquet", use_deprecated_int96_timestamps=int96)


def _pd_series(cell: Cell, kind: str, name: str, values: list):
    import pandas as pd

    if kind == "time":
        if _is_date_cell(cell):
            return pd.Series(_as_dates(values), dtype="object")
        s = pd.Series(pd.to_datetime(pd.array(values, dtype="Int64"), unit="ns", utc=True))
        s = s.dt.tz_convert(cell.zone) if cell.zone else s.dt.tz_localize(None)
        return s.astype(f"datetime64[{cell.unit}, {cell.zone}]" if cell.zone else f"datetime64[{cell.unit}]")
    if kind == "cat":
        return pd.Series(pd.Categorical(values, categories=CATEGORIES[name]))
    dtypes = {
        "id:spine": "UInt16",
        "id:view": "Int64",
        "id:events": "UInt32",
        "int8u": "UInt8",
        "int16": "Int16",
        "bool": "boolean",
        "session": "str",
    }
    if kind in dtypes:
        return pd.Series(values, dtype=dtypes[kind])
    return pd.Series(values, dtype="object")  # money (Decimal objects) and dates


def _write_pandas(cell: Cell, path: Path, columns: dict, partition: str | None) -> None:
    import pandas as pd

    df = pd.DataFrame({name: _pd_series(cell, kind, name, vals) for name, (kind, vals) in columns.items()})
    if partition is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(path, engine="pyarrow", index=False)
        return
    df["dt"] = [day_of(v) for v in columns[partition][1]]
    df.to_parquet(path, engine="pyarrow", index=False, partition_cols=["dt"])


def _pl_series(cell: Cell, kind: str, name: str, values: list):
    import polars as pl

    if kind == "time":
        if _is_date_cell(cell):
            return pl.Series(name, _as_dates(values), dtype=pl.Date)
        s = pl.Series(name, values, dtype=pl.Int64).cast(pl.Datetime("ns")).cast(pl.Datetime(cell.unit))
        return s.dt.replace_time_zone("UTC").dt.convert_time_zone(cell.zone) if cell.zone else s
    if kind == "cat":
        dtype = pl.Enum(CATEGORIES[name]) if name == "tag" else pl.Categorical
        return pl.Series(name, values, dtype=dtype)
    dtypes = {
        "id:spine": pl.UInt32,
        "id:view": pl.Int64,
        "id:events": pl.UInt8,
        "int8u": pl.UInt8,
        "int16": pl.Int16,
        "bool": pl.Boolean,
        "session": pl.String,
        "money": pl.Decimal(10, 2),
        "date": pl.Date,
    }
    return pl.Series(name, values, dtype=dtypes[kind])


def _write_polars(cell: Cell, path: Path, columns: dict, partition: str | None) -> None:
    import polars as pl

    df = pl.DataFrame([_pl_series(cell, kind, name, vals) for name, (kind, vals) in columns.items()])
    if partition is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(path)
        return
    df = df.with_columns(pl.Series("dt", [day_of(v) for v in columns[partition][1]]))
    path.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, partition_by="dt")  # polars keeps `dt` in the files too


def _write_duckdb(cell: Cell, path: Path, columns: dict, partition: str | None) -> None:
    import duckdb

    raw = {}
    for name, (kind, vals) in columns.items():
        raw[name] = (
            pa.array(vals, pa.int64())
            if kind == "time"
            else (
                pa.array([None if v is None else str(v) for v in vals], pa.string())
                if kind in ("money", "cat")
                else pa.array(vals, pa.date32() if kind == "date" else None)
            )
        )
    con = duckdb.connect(config={"threads": 1})
    con.execute("SET TimeZone = 'UTC'")
    con.register("raw", pa.table(raw))
    types = {
        "id:spine": "UTINYINT",
        "id:view": "BIGINT",
        "id:events": "USMALLINT",
        "money": "DECIMAL(10, 2)",
        "int8u": "UTINYINT",
        "int16": "SMALLINT",
        "bool": "BOOLEAN",
        "session": "VARCHAR",
        "date": "DATE",
    }
    select = []
    for name, (kind, _vals) in columns.items():
        q = f'"{name}"'
        if kind == "time":
            ns = f"make_timestamp_ns({q})"  # DuckDB casts to TIMESTAMP_S/_MS only from TIMESTAMP
            coarse = cell.unit in ("TIMESTAMP_S", "TIMESTAMP_MS", "DATE")
            select.append(f"CAST({'CAST(' + ns + ' AS TIMESTAMP)' if coarse else ns} AS {cell.unit}) AS {q}")
        elif kind == "cat":
            enum = ", ".join(f"'{c}'" for c in CATEGORIES[name])
            select.append(f"CAST({q} AS ENUM({enum})) AS {q}")
        else:
            select.append(f"CAST({q} AS {types[kind]}) AS {q}")
    query = f"SELECT {', '.join(select)} FROM raw"
    if partition is not None:
        # The day of the value as written (DuckDB rounds when it casts nanoseconds away), as a
        # DuckDB user partitions: dt=D holds exactly the rows of day D.
        day = f'CAST(epoch_ns("{partition}") // {DAY_NS} AS INTEGER)'  # (its DATE cast of TIMESTAMP_NS rounds too)
        query = f"SELECT *, CAST(DATE '1970-01-01' + {day} AS VARCHAR) AS dt FROM ({query})"

    path.parent.mkdir(parents=True, exist_ok=True)
    if partition is None:
        con.execute(f"COPY ({query}) TO '{path.as_posix()}' (FORMAT parquet)")
    else:
        con.execute(f"COPY ({query}) TO '{path.as_posix()}' (FORMAT parquet, PARTITION_BY (dt))")
    con.close()


WRITERS = {"pyarrow": _write_pyarrow, "pandas": _write_pandas, "polars": _write_polars, "duckdb": _write_duckdb}


# --------------------------------------------------------------------------- definitions

VIEW = {
    "name": "profile",
    "entities": ["user_id"],
    "source": {
        "path": "data/profile.parquet",
        "timestamp_field": "updated_at",
        "created_timestamp_field": "created_at",
    },
    "ttl": "1d",
    "features": [
        {"name": "signup_at", "dtype": "timestamp"},
        {"name": "signup_day", "dtype": "date"},
        {"name": "score", "dtype": "float64"},  # a decimal column declared float64
        {"name": "level", "dtype": "int64"},  # an unsigned byte declared int64
        {"name": "tier", "dtype": "string"},  # a categorical declared string
        {"name": "level2", "dtype": "int64", "expr": "level * 2"},
    ],
}
EXPRS = {"level * 2": lambda r: None if r["level"] is None else r["level"] * 2}
SERVICE = {
    "name": "matrix",
    "spine": {
        "source": {"path": "data/feed", "timestamp_field": "event_timestamp"},
        "entities": ["user_id", "item"],
        "session_field": "session",
        "labels": ["clicked"],
        "passthrough": ["price"],
    },
    "features": ["profile"],
    "aggregations": ["ev", "sp"],
}
AGGREGATIONS = {
    "aggregations": [
        {
            "name": "ev",
            "source": {"path": "data/events", "timestamp_field": "ts"},
            "group_by": ["user_id"],
            "windows": ["1h", "1d"],
            "features": [
                {"name": "events", "function": "count"},
                {"name": "n_sum", "column": "n", "function": "sum"},
                {"name": "amount_sum", "column": "amount", "function": "sum"},
                {"name": "amount_mean", "column": "amount", "function": "mean"},
                {"name": "amount_max", "column": "amount", "function": "max"},
                {"name": "seen_min", "column": "seen_at", "function": "min"},
                {"name": "seen_max", "column": "seen_at", "function": "max"},
                {"name": "seen_last", "column": "seen_at", "function": "last"},
                {"name": "seen_recent", "column": "seen_at", "function": "last_k", "k": 2, "windows": ["2d"]},
                {"name": "day_min", "column": "seen_day", "function": "min"},
                {"name": "day_max", "column": "seen_day", "function": "max"},
                {"name": "day_last", "column": "seen_day", "function": "last"},
                {"name": "tags", "column": "tag", "function": "count_distinct"},
                {"name": "recent_tags", "column": "tag", "function": "last_k", "k": 3},
            ],
        },
        {
            "name": "sp",
            "source": "spine",
            "group_by": ["item"],
            "windows": ["1d"],
            "features": [
                {"name": "rows", "function": "count"},
                {"name": "clicks", "column": "clicked", "function": "sum"},
                {"name": "top_price", "column": "price", "function": "max"},
            ],
        },
    ]
}


def _yaml(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def build(root: Path, cell: Cell) -> Path:
    """The cell's working directory: sources written by the cell's writer, and definitions."""
    write = WRITERS[cell.writer]
    write(cell, root / "data/feed", _columns(SPINE_COLS, SPINE), "event_timestamp")
    write(cell, root / "data/profile.parquet", _columns(PROFILE_COLS, PROFILE), None)
    write(cell, root / "data/events", _columns(EVENT_COLS, EVENTS), "ts")
    _yaml(root / "feature_views/profile.yaml", VIEW)
    _yaml(root / "feature_services/matrix.yaml", SERVICE)
    _yaml(root / "config/training/aggregations.yaml", AGGREGATIONS)
    _yaml(
        root / "config/training/runtime.yaml",
        {"feed_start": START, "feed_end": END, "output_root": "out", "skeleton": {"chunk_rows": CHUNK_ROWS}},
    )
    return root
