"""A naive, obviously-correct reference for the skeleton stage (CONTRACT.md sections 1-5, 7).

Independent of the `daedalus` package on purpose: plain Python loops over rows, pyarrow
only to read parquet (and to call `udf` features with pyarrow arrays). It is quadratic
and only meant for the tiny datasets in `tests/edge_data.py`.

Representation used throughout:

* every timestamp (source or feature column of any Arrow timestamp type) becomes an int:
  UTC microseconds since the epoch. Arrow stores tz-aware timestamps as UTC instants and
  a naive timestamp means UTC (contract §1), so the stored integer *is* the UTC instant in
  its unit; it is scaled to microseconds, and finer units are truncated (floor: the
  datasets only use post-1970 instants, where floor == truncation).
* a `date32` value stays a `datetime.date`; everything else is `Array.to_pylist()`'s value.
* "source order" = (file path in lexical order, row position in the file), represented as
  one global integer `_ord` per source (files read in sorted path order).

Decisions where the contract is silent (documented here, asserted by the tests):

* created timestamp tie-break: a null `created_timestamp_field` value sorts LOWEST, i.e.
  the row loses against any row with a non-null created timestamp and the same `ts`;
  two null created values tie and fall through to source order.
* a spine row with a null entity (any of a view's entities null) joins nothing: all of the
  view's features are null, derived ones included (no row chosen -> no expr/udf evaluation).
* aggregations use `e.group = k` with SQL semantics: a spine row whose group value is null
  matches no event (empty-window values), and an event with a null group value matches no
  spine row.
* a source row whose timestamp is null never joins and is never in a window.

The datasets respect the hive invariant ("partition dt=D holds only rows of day D"), so
reading every file of a source and filtering by timestamp is equivalent to reading only
the partitions D-L..D (the look-back is a performance detail, not a semantic one).
"""

from __future__ import annotations

import datetime as dt
import decimal
import glob
import hashlib
import importlib.util
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

US = 1_000_000
DAY_US = 86_400 * US
_UNIT_US = {"s": US, "m": 60 * US, "h": 3600 * US, "d": DAY_US, "w": 7 * DAY_US}
UTC_US = pa.timestamp("us", tz="UTC")

DTYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": UTC_US,
}


# --------------------------------------------------------------------------- time helpers


def duration_us(text: str) -> int:
    m = re.fullmatch(r"([1-9][0-9]*)([smhdw])", str(text).strip())
    if not m:
        raise ValueError(f"bad duration {text!r}")
    return int(m.group(1)) * _UNIT_US[m.group(2)]


def day_start_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_US


def us_of(value: dt.datetime) -> int:
    """A datetime (naive = UTC) -> UTC microseconds since the epoch."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def parse_day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _scale_to_us(raw: int, unit: str) -> int:
    if unit == "s":
        return raw * US
    if unit == "ms":
        return raw * 1000
    if unit == "us":
        return raw
    if unit == "ns":
        return raw // 1000  # floor == truncation for the post-1970 instants used here
    raise ValueError(unit)


def column_values(arr: pa.Array | pa.ChunkedArray) -> list:
    """Python values of a column; timestamps become UTC microseconds (ints)."""
    if pa.types.is_timestamp(arr.type):
        raw = arr.cast(pa.int64()).to_pylist()  # the stored integers (UTC instants)
        return [None if v is None else _scale_to_us(v, arr.type.unit) for v in raw]
    return arr.to_pylist()


def normalize_type(t: pa.DataType) -> pa.DataType:
    """The type a value of source type `t` has in an output (docs/concepts.md, "Types"):
    timestamps -> us UTC; one type per kind of value, whatever the writer's encoding:
    dictionaries (pandas categoricals) -> their values, large/view strings -> string,
    date64 -> date32."""
    if pa.types.is_timestamp(t):
        return UTC_US
    if pa.types.is_dictionary(t):
        return normalize_type(t.value_type)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_date64(t):
        return pa.date32()
    return t


def time_us(v: Any) -> int | None:
    """A time-role value (timestamp micros, or a date: its midnight UTC) as UTC micros."""
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return (v - dt.date(1970, 1, 1)).days * DAY_US
    return v


def to_f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def cast_value(v: Any, dtype: str) -> Any:
    """A declared view dtype applied to one Python value (None stays None)."""
    if v is None:
        return None
    if dtype == "bool":
        return bool(v)
    if dtype in ("int32", "int64"):
        if isinstance(v, float):
            raise TypeError("refusing to guess float->int rounding in the reference")
        return int(v)
    if dtype == "float32":
        return to_f32(float(v))
    if dtype == "float64":
        return float(v)
    if dtype == "string":
        return v if isinstance(v, str) else str(v)
    if dtype == "date":
        if isinstance(v, dt.datetime):
            raise TypeError("datetime -> date not used")
        assert isinstance(v, dt.date)
        return v
    if dtype == "timestamp":
        v = time_us(v)  # a date column declared timestamp: its midnight UTC
        assert isinstance(v, int) and not isinstance(v, bool), v  # already UTC micros
        return v
    raise ValueError(dtype)


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    rows: list[dict]  # column -> value, plus _ts, _cts, _ord, _file
    schema: pa.Schema  # the source's columns with their *file* types
    files: list[str]


def source_files(path: str, workdir: Path) -> list[str]:
    p = Path(path)
    full = p if p.is_absolute() else workdir / p
    if full.is_file():
        return [str(full)]
    if full.is_dir():
        out = []
        for root, _dirs, files in os.walk(full):
            for f in files:
                if f.endswith(".parquet"):
                    out.append(os.path.join(root, f))
        return sorted(out)
    return sorted(f for f in glob.glob(str(full), recursive=True) if os.path.isfile(f))


def read_source(src: dict, workdir: Path, cache: dict | None = None) -> Source:
    key = (str(workdir), src["path"], src["timestamp_field"], src.get("created_timestamp_field"))
    if cache is not None and key in cache:
        return cache[key]
    files = source_files(src["path"], workdir)
    if not files:
        raise FileNotFoundError(src["path"])
    rows: list[dict] = []
    schema = None
    order = 0
    tsf = src["timestamp_field"]
    ctsf = src.get("created_timestamp_field")
    for f in files:  # lexical path order
        table = pq.ParquetFile(f).read()  # plain file read: no hive `dt` column added
        if schema is None:
            schema = table.schema
        cols = {name: column_values(table.column(name)) for name in table.column_names}
        for i in range(table.num_rows):  # row position inside the file
            r = {name: cols[name][i] for name in table.column_names}
            r["_ts"] = time_us(r[tsf])
            r["_cts"] = time_us(r[ctsf]) if ctsf else None
            r["_ord"] = order
            r["_file"] = f
            order += 1
            rows.append(r)
    out = Source(rows, schema, files)
    if cache is not None:
        cache[key] = out
    return out


# --------------------------------------------------------------------------- definitions


@dataclass
class Defs:
    workdir: Path
    views: dict[str, dict]
    services: dict[str, dict]
    aggregations: dict[str, dict]
    runtime: dict
    exprs: dict[str, Callable[[dict], Any]] = field(default_factory=dict)


def load_defs(workdir: Path | str, exprs: dict | None = None) -> Defs:
    workdir = Path(workdir)
    views = {}
    for f in sorted((workdir / "feature_views").glob("*.yaml")):
        d = yaml.safe_load(f.read_text())
        assert d["name"] == f.stem, f
        views[d["name"]] = d
    services = {}
    for f in sorted((workdir / "feature_services").glob("*.yaml")):
        d = yaml.safe_load(f.read_text())
        services[d["name"]] = d
    aggs_doc = yaml.safe_load((workdir / "config/training/aggregations.yaml").read_text()) or {}
    aggregations = {a["name"]: a for a in aggs_doc.get("aggregations") or []}
    runtime = yaml.safe_load((workdir / "config/training/runtime.yaml").read_text())
    return Defs(workdir, views, services, aggregations, runtime, dict(exprs or {}))


def run_days(defs: Defs) -> list[dt.date]:
    return day_range(parse_day(defs.runtime["feed_start"]), parse_day(defs.runtime["feed_end"]))


def _service_view_features(service: dict, views: dict) -> list[tuple[str, dict]]:
    out = []
    for item in service.get("features") or []:
        if isinstance(item, str):
            view = views[item]
            out += [(item, f) for f in view["features"]]
        else:
            view = views[item["view"]]
            by_name = {f["name"]: f for f in view["features"]}
            out += [(item["view"], by_name[n]) for n in item["features"]]
    return out


def _agg_source(agg: dict, service: dict) -> dict:
    return service["spine"]["source"] if agg["source"] == "spine" else agg["source"]


def _agg_out_type(function: str, col_type: pa.DataType | None) -> pa.DataType:
    if function in ("count", "count_distinct"):
        return pa.int64()
    if function == "sum":
        if pa.types.is_floating(col_type) or pa.types.is_decimal(col_type):
            return pa.float64()
        assert pa.types.is_integer(col_type) or pa.types.is_boolean(col_type), col_type
        return pa.int64()
    if function == "mean":
        return pa.float64()
    if function in ("min", "max", "last", "first", "approx_percentile"):
        return normalize_type(col_type)
    if function in ("last_k", "first_k", "last_distinct_k", "top_k", "bottom_k"):
        return pa.list_(normalize_type(col_type))
    if function in ("variance", "stddev", "skew", "kurtosis", "time_since_last", "exp_decay_sum"):
        return pa.float64()
    if function == "approx_count_distinct":
        return pa.int64()
    if function == "histogram":
        return pa.map_(pa.string(), pa.int64())
    raise ValueError(function)


def output_columns(defs: Defs, service_name: str, cache: dict | None = None) -> list[tuple[str, pa.DataType]]:
    """Contract §7 column order with the expected Arrow types."""
    cache = {} if cache is None else cache
    service = defs.services[service_name]
    spine = service["spine"]
    spine_schema = read_source(spine["source"], defs.workdir, cache).schema
    cols: list[tuple[str, pa.DataType]] = [("event_timestamp", UTC_US)]
    for e in spine["entities"]:
        cols.append((e, normalize_type(spine_schema.field(e).type)))
    if spine.get("session_field"):
        cols.append((spine["session_field"], normalize_type(spine_schema.field(spine["session_field"]).type)))
        cols.append(("qid", pa.int64()))
    for c in list(spine.get("labels") or []) + list(spine.get("passthrough") or []):
        cols.append((c, normalize_type(spine_schema.field(c).type)))
    for view_name, f in _service_view_features(service, defs.views):
        cols.append((f"{view_name}__{f['name']}", DTYPES[f["dtype"]]))
    for agg_name in service.get("aggregations") or []:
        agg = defs.aggregations[agg_name]
        src_schema = read_source(_agg_source(agg, service), defs.workdir, cache).schema
        for f in agg["features"]:
            col_type = src_schema.field(f["column"]).type if f.get("column") else None
            out_type = _agg_out_type(f["function"], col_type)
            for w in f.get("windows") or agg["windows"]:
                if f.get("buckets") is not None:
                    cols += [(f"{agg_name}__{f['name']}_{_key(b)}_{w}", out_type) for b in f["buckets"]]
                elif f.get("bucket_by") is not None:
                    cols.append((f"{agg_name}__{f['name']}_{w}", pa.map_(pa.string(), out_type)))
                else:
                    cols.append((f"{agg_name}__{f['name']}_{w}", out_type))
    return cols


# --------------------------------------------------------------------------- udf loading

_UDF_CACHE: dict[tuple[str, str], Callable] = {}


def load_udf(spec: str, workdir: Path) -> Callable:
    """`package.module:function`, resolved as a file under the working directory."""
    key = (str(workdir), spec)
    if key not in _UDF_CACHE:
        mod, func = spec.split(":")
        base = workdir / Path(*mod.split("."))
        path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        unique = "_ref_udf_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        s = importlib.util.spec_from_file_location(unique, path)
        module = importlib.util.module_from_spec(s)
        s.loader.exec_module(module)
        _UDF_CACHE[key] = getattr(module, func)
    return _UDF_CACHE[key]


# --------------------------------------------------------------------------- the PIT join


def _created_key(cts):
    # a null created timestamp sorts lowest
    return (0, 0) if cts is None else (1, cts)


def pit_choose(rows: list[dict], entities: list[str], key: dict, t: int, ttl: int | None) -> dict | None:
    """The source row a spine row (entity values `key`, timestamp `t`) joins, or None."""
    if any(key[e] is None for e in entities):
        return None  # a null entity joins nothing
    best = None
    best_key = None
    for r in rows:
        if r["_ts"] is None:
            continue
        if not all(r[e] is not None and r[e] == key[e] for e in entities):
            continue
        if not r["_ts"] <= t:
            continue
        if ttl is not None and not r["_ts"] >= t - ttl:  # both bounds inclusive
            continue
        k = (r["_ts"], _created_key(r["_cts"]), r["_ord"])
        if best_key is None or k > best_key:
            best, best_key = r, k
    return best


def view_feature_value(defs: Defs, view: dict, f: dict, chosen: dict | None, src: Source) -> Any:
    if chosen is None:
        return None  # no row: every feature of the view is null, derived ones too
    if f.get("expr") is not None:
        fn = defs.exprs.get(f["expr"])
        if fn is None:
            raise KeyError(f"no python equivalent registered for expr {f['expr']!r}")
        return cast_value(fn(chosen), f["dtype"])
    if f.get("udf") is not None:
        fn = load_udf(f["udf"], defs.workdir)
        args = []
        for c in f["inputs"]:
            t = normalize_type(src.schema.field(c).type)
            args.append(pa.array([chosen[c]], type=t))
        result = fn(*args)
        return cast_value(result.to_pylist()[0], f["dtype"])
    return cast_value(chosen[f.get("column") or f["name"]], f["dtype"])


# --------------------------------------------------------------------------- windows


def _numeric(v):
    if isinstance(v, decimal.Decimal):  # decimals aggregate as float64 (docs/concepts.md)
        return float(v)
    return int(v) if isinstance(v, bool) else v


def _key(v) -> str:
    """A histogram key: the value as SQL prints it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _moments(xs: list[float]):
    n = len(xs)
    mu = math.fsum(xs) / n
    return mu, *(math.fsum((x - mu) ** p for x in xs) / n for p in (2, 3, 4))


def aggregate(
    function: str,
    events: list[dict],
    column: str | None,
    k: int | None,
    col_type,
    t: int | None = None,
    params: dict | None = None,
):
    """`events` = the window's events (any order); `t` the row's time (us); `params` the
    feature's q, half_life, top_n (where is applied by the caller: `where_events`)."""
    params = params or {}
    if function == "count":
        if column is None:
            return len(events)
        return sum(1 for e in events if e[column] is not None)
    if function == "time_since_last":
        with_value = [e["_ts"] for e in events if column is None or e[column] is not None]
        return (t - max(with_value)) / 1e6 if with_value else None
    vals = [e for e in events if e[column] is not None]
    if function in ("count_distinct", "approx_count_distinct"):
        return len({e[column] for e in vals})  # the sketch is exact on the few values tests draw
    if function == "sum":
        if not vals:
            return 0.0 if (pa.types.is_floating(col_type) or pa.types.is_decimal(col_type)) else 0
        total = 0.0 if (pa.types.is_floating(col_type) or pa.types.is_decimal(col_type)) else 0
        for e in vals:
            total += _numeric(e[column])
        return total
    if function == "mean":
        if not vals:
            return None
        return sum(float(_numeric(e[column])) for e in vals) / len(vals)
    if function == "min":
        return min(e[column] for e in vals) if vals else None
    if function == "max":
        return max(e[column] for e in vals) if vals else None
    if function in ("variance", "stddev", "skew", "kurtosis"):
        xs = [float(_numeric(e[column])) for e in vals]
        if not xs:
            return None
        _, m2, m3, m4 = _moments(xs)
        if function == "variance":
            return m2
        if function == "stddev":
            return math.sqrt(m2)
        if min(xs) == max(xs):
            return None
        return m3 / m2**1.5 if function == "skew" else m4 / m2**2 - 3
    if function == "exp_decay_sum":
        hl = duration_us(params["half_life"])
        return math.fsum(float(_numeric(e[column])) * 0.5 ** ((t - e["_ts"]) / hl) for e in vals)
    if function == "approx_percentile":
        xs = sorted(e[column] for e in vals)
        return xs[max(1, math.ceil(params["q"] * len(xs))) - 1] if xs else None
    if function == "histogram":
        counts: dict[str, int] = {}
        for e in vals:
            counts[_key(e[column])] = counts.get(_key(e[column]), 0) + 1
        kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if params.get("top_n"):
            kept = kept[: params["top_n"]]
        return sorted(kept)
    if function == "top_k":
        return sorted((e[column] for e in vals), reverse=True)[:k]
    if function == "bottom_k":
        return sorted(e[column] for e in vals)[:k]
    recent_first = sorted(vals, key=lambda e: (e["_ts"], e["_ord"]), reverse=True)
    if function == "last":
        return recent_first[0][column] if recent_first else None
    if function == "first":
        return recent_first[-1][column] if recent_first else None
    if function == "last_k":
        return [e[column] for e in recent_first[:k]]
    if function == "first_k":
        return [e[column] for e in reversed(recent_first)][:k]
    if function == "last_distinct_k":
        out: list = []
        for e in recent_first:
            if e[column] not in out:
                out.append(e[column])
        return out[:k]
    raise ValueError(function)


def bucket_events(events: list[dict], bucket_by: str, bucket) -> list[dict]:
    """The events of one bucket: their `bucket_by` value prints as the bucket does."""
    return [e for e in events if e[bucket_by] is not None and _key(e[bucket_by]) == _key(bucket)]


def bucket_map(function: str, events: list[dict], f: dict, col_type, t: int) -> list[tuple[str, Any]]:
    """A bucket map: for each bucket value (as text, sorted) whose events give the function an
    input (a non-null `column`; without one, any event), the function over those events."""
    column = f.get("column")
    out = []
    for key in sorted({_key(e[f["bucket_by"]]) for e in events if e[f["bucket_by"]] is not None}):
        inside = bucket_events(events, f["bucket_by"], key)
        if column is not None and all(e[column] is None for e in inside):
            continue
        out.append((key, aggregate(function, inside, column, f.get("k"), col_type, t, f)))
    return out


def where_events(events: list[dict], where: str | None) -> list[dict]:
    """The events for which the SQL expression `where` is true (null: false), each evaluated
    alone by DuckDB over a one-row table of its values."""
    if where is None:
        return events
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    kept = []
    for e in events:
        row = pa.table({c: pa.array([v]) for c, v in e.items() if not c.startswith("_")})
        con.register("__e", row)
        if con.execute(f"SELECT coalesce(CAST(({where}) AS BOOLEAN), false) FROM __e").fetchall()[0][0]:
            kept.append(e)
        con.unregister("__e")
    return kept


def window_events(rows: list[dict], group_by: list[str], key: dict, t: int, w: int) -> list[dict]:
    if any(key[g] is None for g in group_by):
        return []  # SQL `e.group = k` with k null matches nothing
    out = []
    for e in rows:
        if e["_ts"] is None:
            continue
        if not all(e[g] is not None and e[g] == key[g] for g in group_by):
            continue
        if t - w <= e["_ts"] < t:  # strictly before t
            out.append(e)
    return out


# --------------------------------------------------------------------------- one day


def expected_day(defs: Defs, service_name: str, day: dt.date, cache: dict | None = None) -> list[dict]:
    """The skeleton rows of `day` (qid left as None: see `expected_run`)."""
    cache = {} if cache is None else cache
    service = defs.services[service_name]
    spine = service["spine"]
    spine_src = read_source(spine["source"], defs.workdir, cache)
    lo = day_start_us(day)
    hi = lo + DAY_US
    day_rows = [r for r in spine_src.rows if r["_ts"] is not None and lo <= r["_ts"] < hi]
    day_rows.sort(key=lambda r: (r["_ts"], r["_ord"]))  # ties in (spine) source order

    view_feats = _service_view_features(service, defs.views)
    out = []
    for s in day_rows:
        t = s["_ts"]
        row: dict[str, Any] = {"event_timestamp": t}
        for e in spine["entities"]:
            row[e] = s[e]
        if spine.get("session_field"):
            row[spine["session_field"]] = s[spine["session_field"]]
            row["qid"] = None
        for c in list(spine.get("labels") or []) + list(spine.get("passthrough") or []):
            row[c] = s[c]
        chosen_by_view: dict[str, dict | None] = {}
        for view_name, f in view_feats:
            view = defs.views[view_name]
            src = read_source(view["source"], defs.workdir, cache)
            if view_name not in chosen_by_view:
                ttl = duration_us(view["ttl"]) if view.get("ttl") is not None else None
                chosen_by_view[view_name] = pit_choose(src.rows, view["entities"], s, t, ttl)
            row[f"{view_name}__{f['name']}"] = view_feature_value(defs, view, f, chosen_by_view[view_name], src)
        for agg_name in service.get("aggregations") or []:
            agg = defs.aggregations[agg_name]
            src = read_source(_agg_source(agg, service), defs.workdir, cache)
            for f in agg["features"]:
                col_type = src.schema.field(f["column"]).type if f.get("column") else None
                for w in f.get("windows") or agg["windows"]:
                    events = where_events(
                        window_events(src.rows, agg["group_by"], s, t, duration_us(w)), f.get("where")
                    )
                    name = f"{agg_name}__{f['name']}"
                    if f.get("buckets") is not None:
                        for b in f["buckets"]:
                            row[f"{name}_{_key(b)}_{w}"] = aggregate(
                                f["function"],
                                bucket_events(events, f["bucket_by"], b),
                                f.get("column"),
                                f.get("k"),
                                col_type,
                                t,
                                f,
                            )
                    elif f.get("bucket_by") is not None:
                        row[f"{name}_{w}"] = bucket_map(f["function"], events, f, col_type, t)
                    else:
                        row[f"{name}_{w}"] = aggregate(
                            f["function"], events, f.get("column"), f.get("k"), col_type, t, f
                        )
        out.append(row)
    return out


# --------------------------------------------------------------------------- qids / runs


def assign_qids(rows_written: list[dict], session_field: str, existing: dict | None = None) -> dict:
    """Contract §7: existing qids stay; sessions new to the run get qids above every existing
    one, numbered by their first row among `rows_written` (which must already be in
    (event_timestamp, source order) order, i.e. the days in order, each day's rows in
    output order). A fresh output root starts at 0."""
    qmap = dict(existing or {})
    nxt = (max(qmap.values()) + 1) if qmap else 0
    for r in rows_written:
        s = r[session_field]
        if s not in qmap:
            qmap[s] = nxt
            nxt += 1
    return qmap


def expected_run(
    defs: Defs, service_name: str, days: list[dt.date], existing_qids: dict | None = None, cache: dict | None = None
) -> tuple[dict[dt.date, list[dict]], dict | None]:
    """Rows of every day a run writes (qid filled in) and the qid map after the run
    (None without a session field)."""
    cache = {} if cache is None else cache
    per_day = {d: expected_day(defs, service_name, d, cache) for d in sorted(days)}
    sf = defs.services[service_name]["spine"].get("session_field")
    if not sf:
        return per_day, None
    written = [r for d in sorted(days) for r in per_day[d]]
    qmap = assign_qids(written, sf, existing_qids)
    for r in written:
        r["qid"] = qmap[r[sf]]
    return per_day, qmap


# --------------------------------------------------------------------------- comparison


def table_values(table: pa.Table) -> dict[str, list]:
    """Output table -> column -> Python values in the reference's representation."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            out[name] = column_values(col)
        elif pa.types.is_map(col.type) and pa.types.is_timestamp(col.type.item_type):
            out[name] = [
                None if m is None else [(k, None if x is None else us_of(x)) for k, x in m] for m in col.to_pylist()
            ]
        elif (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)) and pa.types.is_timestamp(
            col.type.value_type
        ):
            vals = []
            for item in col.to_pylist():
                vals.append(None if item is None else [None if x is None else us_of(x) for x in item])
            out[name] = vals
        else:
            out[name] = col.to_pylist()
    return out


def types_equal(expected: pa.DataType, got: pa.DataType) -> bool:
    if pa.types.is_list(expected):
        return pa.types.is_list(got) and types_equal(expected.value_type, got.value_type)
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(got) and got.unit == expected.unit and got.tz == expected.tz
    return expected.equals(got)


def values_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0) or a == b
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (
            isinstance(a, (list, tuple))
            and isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(values_equal(x, y) for x, y in zip(a, b))
        )
    return type(a) is type(b) and a == b


def compare_rows(
    columns: list[tuple[str, pa.DataType]], expected: list[dict], table: pa.Table, label: str = "", limit: int = 60
) -> list[str]:
    """Every difference between `expected` rows and an output table, as readable lines."""
    problems: list[str] = []
    names = [c for c, _ in columns]
    if table.column_names != names:
        problems.append(f"{label}: columns differ:\n  expected {names}\n  got      {table.column_names}")
    for name, t in columns:
        if name in table.column_names and not types_equal(t, table.schema.field(name).type):
            problems.append(f"{label}: column {name}: expected type {t}, got {table.schema.field(name).type}")
    if table.num_rows != len(expected):
        problems.append(f"{label}: expected {len(expected)} rows, got {table.num_rows}")
    got = table_values(table)
    for i in range(min(table.num_rows, len(expected))):
        for name in names:
            if name not in got:
                continue
            e, g = expected[i][name], got[name][i]
            if not values_equal(e, g):
                ctx = f"ts={fmt_us(expected[i]['event_timestamp'])}"
                problems.append(f"{label}: row {i} ({ctx}) column {name}: expected {show(e)}, got {show(g)}")
                if len(problems) >= limit:
                    return problems + ["... (truncated)"]
    return problems


def fmt_us(v: int | None) -> str:
    if v is None:
        return "None"
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=v)).isoformat() + "Z"


def show(v: Any) -> str:
    return f"{v!r} ({fmt_us(v)})" if isinstance(v, int) and not isinstance(v, bool) and v > 10**15 else repr(v)
