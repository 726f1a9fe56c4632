"""The pythonic window engine: the same values as the SQL one, from sorted arrays.

Events are sorted by (group, ts, source order); for each query point (group, t) and window w
two binary searches give the half-open slice of events in [t - w, t). Counts and sums come
from prefix sums, `last`/`last_k` from the slice's end, min/max/count_distinct per slice.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from daedalus.plan import Operator, WindowAggParams
from daedalus.skeleton.context import DayContext, table
from daedalus.skeleton.keys import entity_codes, micros, source_order
from daedalus.skeleton.windows import events_sql
from daedalus.sources import sql_ident
from daedalus.timeutil import duration_micros


def _slices(ecode: np.ndarray, ets: np.ndarray, qcode: np.ndarray, qts: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
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
        return arr.cast(pa.int64() if pa.types.is_timestamp(t) or t == pa.date64() else pa.int32()).fill_null(0).to_numpy(), t
    return None


def window_agg_pythonic(ctx: DayContext, op: Operator) -> None:
    p: WindowAggParams = op.typed_params()
    ev_sql, value_cols, _ = events_sql(ctx, p)
    ev = ctx.con.sql(ev_sql).to_arrow_table()
    groups = [sql_ident(g) for g in p.group_by]
    not_null = " AND ".join(f"{g} IS NOT NULL" for g in groups)
    q = ctx.con.sql(f"SELECT DISTINCT {', '.join(groups)}, __ts FROM {table('spine')} WHERE {not_null} ORDER BY ALL").to_arrow_table()
    ecode, qcode = entity_codes([ev[g] for g in p.group_by], [q[g] for g in p.group_by])
    ets, qts = micros(ev["__ts"]), micros(q["__ts"])
    forder, frow = source_order(ev["__file"], ev["__row"])
    order = np.lexsort((frow, forder, ets, ecode))
    ev = ev.take(pa.array(order))
    ecode, ets = ecode[order], ets[order]
    n_q = q.num_rows

    out: dict[str, pa.Array] = {g: q[g] for g in p.group_by}
    out["__ts"] = q["__ts"]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for f in p.features:
        w = duration_micros(f.window)
        if w not in cache:
            cache[w] = _slices(ecode, ets, qcode, qts, w)
        lo, hi = cache[w]
        if f.column is None:
            out[f.output] = pa.array(hi - lo, pa.int64())
            continue
        col = ev["v:" + f.column].combine_chunks()
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        vpos = np.flatnonzero(valid)
        vlo, vhi = np.searchsorted(vpos, lo, "left"), np.searchsorted(vpos, hi, "left")
        n = vhi - vlo
        vals = col.filter(pa.array(valid)) if len(col) else col
        out[f.output] = _compute(f.function, f.k, vals, vlo, vhi, n, n_q)
    result = pa.table(out)
    ctx.con.register("__win_arrow", result)
    ctx.con.execute(f"CREATE TEMP TABLE {table(op.name)} AS SELECT * FROM __win_arrow")
    ctx.con.unregister("__win_arrow")


def _compute(fn: str, k: int | None, vals: pa.Array, vlo: np.ndarray, vhi: np.ndarray, n: np.ndarray, n_q: int) -> pa.Array:
    empty = n == 0
    if fn == "count":
        return pa.array(n, pa.int64())
    if fn in ("sum", "mean"):
        num = _to_numeric(vals)
        assert num is not None
        x, t = num
        is_float = pa.types.is_floating(t)
        if is_float:
            # Summed slice by slice (not by prefix differences) to match SQL's rounding closely.
            s = np.array([float(np.sum(x[a:b], dtype=np.float64)) for a, b in zip(vlo, vhi)], dtype=np.float64)
        else:
            prefix = np.concatenate([[0], np.cumsum(x.astype(np.int64))])
            s = (prefix[vhi] - prefix[vlo]).astype(np.float64 if fn == "mean" else np.int64)
        if fn == "sum":
            return pa.array(s, pa.float64() if is_float else pa.int64())
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / np.where(empty, 1, n)
        return pa.array(mean, pa.float64(), mask=empty)
    if fn == "last":
        idx = np.where(empty, 0, vhi - 1)
        return vals.take(pa.array(idx, mask=empty)) if len(vals) else pa.nulls(n_q, vals.type)
    if fn == "last_k":
        lengths = np.minimum(n, int(k or 0))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        total = int(offsets[-1])
        within = np.arange(total) - np.repeat(offsets[:-1], lengths)
        idx = np.repeat(vhi - 1, lengths) - within
        return pa.ListArray.from_arrays(pa.array(offsets), vals.take(pa.array(idx, pa.int64())))
    if fn == "count_distinct":
        py = vals.to_pylist()
        return pa.array([len(set(py[a:b])) for a, b in zip(vlo, vhi)], pa.int64())
    if fn in ("min", "max"):
        pick = min if fn == "min" else max
        py = vals.to_pylist()
        res = [pick(py[a:b]) if b > a else None for a, b in zip(vlo, vhi)]
        return pa.array(res, vals.type)
    raise ValueError(fn)
