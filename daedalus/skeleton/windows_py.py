"""The pythonic window engine: the same values as the SQL one, from sorted arrays.

Events are sorted by (group, ts, source order); for each query point (group, t) and window w
two binary searches give the half-open slice of events in [t - w, t). Counts and sums come
from prefix sums, `last`/`last_k` from the slice's end, min/max/count_distinct per slice.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus import functions
from daedalus.plan import WindowAggOp, WindowAggParams, WindowFeature
from daedalus.skeleton.context import DayContext, table
from daedalus.skeleton.keys import entity_codes, micros, source_order
from daedalus.skeleton.windows import events_sql
from daedalus.sources import sql_ident
from daedalus.timeutil import duration_micros


def _slices(
    ecode: np.ndarray, ets: np.ndarray, qcode: np.ndarray, qts: np.ndarray, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, [lo, hi) of the events of its group with t - w <= ts < t."""
    lo = np.empty(len(qcode), np.int64)
    hi = np.empty(len(qcode), np.int64)
    g_start = np.searchsorted(ecode, qcode, "left")
    g_end = np.searchsorted(ecode, qcode, "right")
    # Group by code so each group's events are searched once, vectorised over its queries.
    order = np.argsort(qcode, kind="stable")
    bounds = np.flatnonzero(np.diff(qcode[order])) + 1
    for part in np.split(order, bounds) if len(order) else []:
        s, e = g_start[part[0]], g_end[part[0]]
        ts = ets[s:e]
        lo[part] = s + np.searchsorted(ts, qts[part] - w, "left")
        hi[part] = s + np.searchsorted(ts, qts[part], "left")
    return lo, hi


def _to_numeric(arr: pa.Array) -> tuple[np.ndarray, pa.DataType] | None:
    t = arr.type
    if pa.types.is_boolean(t):
        return arr.cast(pa.int64()).fill_null(0).to_numpy(), t
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return arr.fill_null(0).to_numpy(zero_copy_only=False), t
    if pa.types.is_decimal(t):  # summed as float64, as the SQL engine sums decimals
        return arr.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False), pa.float64()
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return arr.cast(pa.int64() if pa.types.is_timestamp(t) or t == pa.date64() else pa.int32()).fill_null(
            0
        ).to_numpy(), t
    return None


def window_agg_pythonic(ctx: DayContext, op: WindowAggOp) -> None:
    p: WindowAggParams = op.params
    ev_sql, value_cols, _ = events_sql(ctx, p)
    ev = ctx.con.sql(ev_sql).to_arrow_table()
    groups = [sql_ident(g) for g in p.group_by]
    not_null = " AND ".join(f"{g} IS NOT NULL" for g in groups)
    spine = table(ctx.plan.input_of(op, "spine").name)
    q = ctx.con.sql(
        f"SELECT DISTINCT {', '.join(groups)}, __ts FROM {spine} WHERE {not_null} ORDER BY ALL"
    ).to_arrow_table()
    ecode, qcode = entity_codes([ev[g] for g in p.group_by], [q[g] for g in p.group_by])
    ets, qts = micros(ev["__ts"]), micros(q["__ts"])
    forder, frow = source_order(ev["__file"], ev["__row"])
    order = np.lexsort((frow, forder, ets, ecode))
    ev = ev.take(pa.array(order))
    ecode, ets = ecode[order], ets[order]

    out: dict[str, pa.Array] = {g: q[g] for g in p.group_by}
    out["__ts"] = q["__ts"]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for f in p.features:
        w = duration_micros(f.window)
        if w not in cache:
            cache[w] = _slices(ecode, ets, qcode, qts, w)
        lo, hi = cache[w]
        if f.value is None:  # every event counts: its value is its time
            col = pa.array(ets, pa.int64())
        else:
            col = ev["v:" + f.value].combine_chunks()
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        vpos = np.flatnonzero(valid)
        if f.bucket_map:
            buckets = ev["v:" + (f.bucket_key or "")].combine_chunks()
            out[f.output] = _bucket_map(
                f, col.take(pa.array(vpos)), buckets.take(pa.array(vpos)), ecode[vpos], ets[vpos], qcode, qts, w
            )
            continue
        vlo, vhi = np.searchsorted(vpos, lo, "left"), np.searchsorted(vpos, hi, "left")
        vals = col.filter(pa.array(valid)) if len(col) else col
        out[f.output] = IMPLEMENTATIONS[f.function](Slices(vals, vlo, vhi, f.k, ets[vpos], qts, f))
    result = pa.table(out)
    ctx.con.register("__win_arrow", result)
    ctx.con.execute(f"CREATE TEMP TABLE {table(op.name)} AS SELECT * FROM __win_arrow")
    ctx.con.unregister("__win_arrow")


@dataclass(frozen=True)
class Slices:
    """A feature's events per query point: the non-null values `vals` of its column in
    (group, ts, source order) order, and for query i the slice vals[lo[i]:hi[i]] of its window."""

    vals: pa.Array
    lo: np.ndarray
    hi: np.ndarray
    k: int | None
    ts: np.ndarray  # the time (micros) of each value
    t: np.ndarray  # each query point's t (micros)
    feature: WindowFeature

    def py(self) -> list:
        return self.vals.to_pylist()

    def each(self) -> list[tuple[int, list]]:
        """For each query point: (its slice's start, its slice's values)."""
        py = self.py()
        return [(int(a), py[a:b]) for a, b in zip(self.lo, self.hi)]

    @property
    def n(self) -> np.ndarray:
        return self.hi - self.lo


def _count(s: Slices) -> pa.Array:
    return pa.array(s.n, pa.int64())


def _sums(s: Slices, mean: bool) -> pa.Array:
    num = _to_numeric(s.vals)
    assert num is not None
    x, t = num
    is_float = pa.types.is_floating(t)
    if is_float:
        # Summed slice by slice (not by prefix differences) to match SQL's rounding closely.
        total = np.array([float(np.sum(x[a:b], dtype=np.float64)) for a, b in zip(s.lo, s.hi)], dtype=np.float64)
    else:
        prefix = np.concatenate([[0], np.cumsum(x.astype(np.int64))])
        total = (prefix[s.hi] - prefix[s.lo]).astype(np.float64 if mean else np.int64)
    if not mean:
        return pa.array(total, pa.float64() if is_float else pa.int64())
    empty = s.n == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return pa.array(total / np.where(empty, 1, s.n), pa.float64(), mask=empty)


def _last(s: Slices) -> pa.Array:
    empty = s.n == 0
    idx = np.where(empty, 0, s.hi - 1)
    return s.vals.take(pa.array(idx, mask=empty)) if len(s.vals) else pa.nulls(len(s.n), s.vals.type)


def _first(s: Slices) -> pa.Array:
    empty = s.n == 0
    idx = np.where(empty, 0, s.lo)
    return s.vals.take(pa.array(idx, mask=empty)) if len(s.vals) else pa.nulls(len(s.n), s.vals.type)


def _last_k(s: Slices) -> pa.Array:
    lengths = np.minimum(s.n, int(s.k or 0))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    within = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)
    idx = np.repeat(s.hi - 1, lengths) - within
    return pa.ListArray.from_arrays(pa.array(offsets), s.vals.take(pa.array(idx, pa.int64())))


def _count_distinct(s: Slices) -> pa.Array:
    py = s.vals.to_pylist()
    return pa.array([len(set(py[a:b])) for a, b in zip(s.lo, s.hi)], pa.int64())


def _first_k(s: Slices) -> pa.Array:
    lengths = np.minimum(s.n, int(s.k or 0))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    within = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)
    idx = np.repeat(s.lo, lengths) + within
    return pa.ListArray.from_arrays(pa.array(offsets), s.vals.take(pa.array(idx, pa.int64())))


def _lists(s: Slices, pick: Callable[[list], list]) -> pa.Array:
    return pa.array([pick(xs) for _, xs in s.each()], pa.list_(s.vals.type))


def _last_distinct_k(xs: list, k: int) -> list:
    out: list = []
    for x in reversed(xs):
        if x not in out:
            out.append(x)
            if len(out) == k:
                break
    return out


def _floats(xs: list) -> list[float]:
    return [float(x) for x in xs]  # bools as 0/1, decimals as float64


def _moments(xs: list[float]) -> tuple[float, float, float, float] | None:
    """(mean, m2, m3, m4) of the values in order: the mean first, then the central moments."""
    if not xs:
        return None
    n = len(xs)
    mu = math.fsum(xs) / n
    return (mu, *(math.fsum((x - mu) ** p for x in xs) / n for p in (2, 3, 4)))  # type: ignore[return-value]


def _moment_fn(kind: str) -> Callable[[Slices], pa.Array]:
    def one(xs: list) -> float | None:
        v = _floats(xs)
        m = _moments(v)
        if m is None:
            return None
        _, m2, m3, m4 = m
        if kind == "variance":
            return m2
        if kind == "stddev":
            return math.sqrt(m2)
        if min(v) == max(v):
            return None
        return m3 / m2**1.5 if kind == "skew" else m4 / m2**2 - 3

    return lambda s: pa.array([one(xs) for _, xs in s.each()], pa.float64())


def _percentile(s: Slices) -> pa.Array:
    q = float(s.feature.q or 0)

    def one(xs: list) -> object:
        if not xs:
            return None
        return sorted(xs)[max(1, math.ceil(q * float(len(xs)))) - 1]

    return pa.array([one(xs) for _, xs in s.each()], s.vals.type)


def _histogram(s: Slices) -> pa.Array:
    keys = pc.cast(s.vals, pa.string()).to_pylist() if len(s.vals) else []
    top_n = s.feature.top_n

    def one(a: int, b: int) -> list[tuple[str, int]]:
        counts = Counter(keys[a:b])
        kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n] if top_n else counts.items()
        return sorted(kept)

    return pa.array([one(a, b) for a, b in zip(s.lo, s.hi)], functions.HISTOGRAM_TYPE)


def _time_since_last(s: Slices) -> pa.Array:
    empty = s.n == 0
    last = s.ts[np.where(empty, 0, s.hi - 1)] if len(s.ts) else np.zeros(len(s.n), np.int64)
    secs = [float(t - x) / 1000000.0 for t, x in zip(s.t.tolist(), last.tolist())]
    return pa.array(secs, pa.float64(), mask=empty)


def _exp_decay_sum(s: Slices) -> pa.Array:
    hl = float(duration_micros(s.feature.half_life or ""))
    xs, ts, t = _floats(s.py()), s.ts.tolist(), s.t.tolist()
    out = []
    for i, (a, b) in enumerate(zip(s.lo.tolist(), s.hi.tolist())):
        total = 0.0
        for j in range(a, b):  # in (ts, source order), as the SQL engine sums
            total += xs[j] * math.pow(0.5, float(t[i] - ts[j]) / hl)
        out.append(total)
    return pa.array(out, pa.float64())


def _bucket_map(
    f: WindowFeature,
    vals: pa.Array,
    buckets: pa.Array,
    ecode: np.ndarray,
    ets: np.ndarray,
    qcode: np.ndarray,
    qts: np.ndarray,
    w: int,
) -> pa.Array:
    """A bucket map per query point: the function over each (group, bucket) of its window's
    valid events, as a map of the buckets that have any (keys in text order)."""
    keys, bcode = (
        np.unique(np.array(buckets.to_pylist(), dtype=object), return_inverse=True)
        if len(buckets)
        else (
            np.array([], dtype=object),
            np.zeros(0, np.int64),
        )
    )
    # Events sorted by (group, bucket), keeping (ts, source order) within each: one sequence
    # per (group, bucket) pair, searched like a group's.
    order = np.lexsort((np.arange(len(ecode)), bcode, ecode)) if len(ecode) else np.zeros(0, np.int64)
    pe, pb = ecode[order], bcode[order]
    new_pair = np.ones(len(order), bool)
    new_pair[1:] = (pe[1:] != pe[:-1]) | (pb[1:] != pb[:-1])
    pair = np.cumsum(new_pair) - 1
    starts = np.flatnonzero(new_pair)
    pair_group, pair_bucket = pe[starts], pb[starts]
    # Each query point against every pair of its group, in bucket order.
    first = np.searchsorted(pair_group, qcode, "left")
    count = np.searchsorted(pair_group, qcode, "right") - first
    qi = np.repeat(np.arange(len(qcode)), count)
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    qpair = np.repeat(first, count) + within
    lo, hi = _slices(pair, ets[order], qpair, qts[qi], w)
    values = IMPLEMENTATIONS[f.function](Slices(vals.take(pa.array(order)), lo, hi, f.k, ets[order], qts[qi], f))
    keep = (hi - lo) > 0
    per_query = np.bincount(qi[keep], minlength=len(qcode)) if len(qi) else np.zeros(len(qcode), np.int64)
    offsets = np.concatenate([[0], np.cumsum(per_query)]).astype(np.int32)
    kept_keys = pa.array(keys[pair_bucket[qpair[keep]]].tolist() if keep.any() else [], pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets), kept_keys, values.filter(pa.array(keep)))


def _pick(fn: Callable) -> Callable[[Slices], pa.Array]:
    def compute(s: Slices) -> pa.Array:
        py = s.vals.to_pylist()
        return pa.array([fn(py[a:b]) if b > a else None for a, b in zip(s.lo, s.hi)], s.vals.type)

    return compute


# The pythonic engine's implementation of each aggregation function (daedalus.functions).
IMPLEMENTATIONS: dict[str, Callable[[Slices], pa.Array]] = {
    "count": _count,
    "count_distinct": _count_distinct,
    "sum": lambda s: _sums(s, mean=False),
    "mean": lambda s: _sums(s, mean=True),
    "min": _pick(min),
    "max": _pick(max),
    "last": _last,
    "first": _first,
    "last_k": _last_k,
    "first_k": _first_k,
    "last_distinct_k": lambda s: _lists(s, lambda xs: _last_distinct_k(xs, int(s.k or 0))),
    "top_k": lambda s: _lists(s, lambda xs: sorted(xs, reverse=True)[: int(s.k or 0)]),
    "bottom_k": lambda s: _lists(s, lambda xs: sorted(xs)[: int(s.k or 0)]),
    **{kind: _moment_fn(kind) for kind in ("variance", "stddev", "skew", "kurtosis")},
    "approx_percentile": _percentile,
    "histogram": _histogram,
    "time_since_last": _time_since_last,
    "exp_decay_sum": _exp_decay_sum,
    # approx_count_distinct: not here (its sketch is DuckDB's HyperLogLog; plans that ask the
    # pythonic engine for it fail to compile).
}
SUPPORTED = set(IMPLEMENTATIONS)
# Bucket maps take the functions with a scalar value (the others' outputs are lists or maps).
BUCKET_MAP_SUPPORTED = SUPPORTED - {"last_k", "first_k", "last_distinct_k", "top_k", "bottom_k", "histogram"}
