"""Point-in-time joins (contract section 3), one per feature view.

Both engines produce the same table: one row per distinct (entities, __ts) of the spine with
non-null entities, `__n` (its spine rows), `__hit` (a source row was chosen) and the chosen
row's source columns.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daedalus.plan import PitJoinOp, PitJoinParams
from daedalus.skeleton import state
from daedalus.skeleton.context import DayContext, interval_sql, table, ts_literal
from daedalus.skeleton.keys import entity_codes, micros, source_order
from daedalus.sources import sql_ident, sql_str
from daedalus.timeutil import DAY, duration_micros


def _keys_sql(ctx: DayContext, op: PitJoinOp) -> str:
    """The distinct (entities, ts) of the operator's spine input with no null entity, and
    `__n`, the spine rows of each (the day's hit rate counts rows: daedalus.quality)."""
    entities = op.params.entities
    ents = ", ".join(sql_ident(e) for e in entities)
    not_null = " AND ".join(f"{sql_ident(e)} IS NOT NULL" for e in entities)
    spine = table(ctx.plan.input_of(op, "spine").name)
    return f"SELECT {ents}, __ts, count(*) AS __n FROM {spine} WHERE {not_null} GROUP BY {ents}, __ts"


def _feature_rows_sql(ctx: DayContext, op: PitJoinOp) -> tuple[str, str]:
    """The view's source rows that can be chosen for some row of the day, TTL-pruned at read:
    the snapshot after the day before and the day's own partition when the join has state
    (daedalus.skeleton.state), else the raw look-back.

    Returns the SELECT and its WHERE condition (callers add dedup or fetch as they need).
    """
    p: PitJoinParams = op.params
    spec = ctx.plan.sources[p.source]
    conds = [f"__fts < {ts_literal(ctx.end)}"]
    if p.ttl:
        conds.append(f"__fts >= {ts_literal(ctx.start)} - {interval_sql(duration_micros(p.ttl))}")
    snapshot = ctx.states.get(op.name, {}).get(ctx.day - DAY)
    if snapshot is not None and not ctx.no_rows:
        cols = ", ".join(sql_ident(c) for c in state.snapshot_columns(op))
        rows = f"SELECT {cols} FROM read_parquet({sql_str(snapshot.as_posix())})"
        own = ctx.source_files(p.source, 0)
        if own:
            rows = f"({rows}) UNION ALL BY NAME ({state.raw_rows_sql(ctx, op, own)})"
        return rows, " AND ".join(conds)
    rows = state.raw_rows_sql(ctx, op, ctx.source_files(p.source, spec.lookback_days))
    return rows, " AND ".join(conds)


def pit_join_sql(ctx: DayContext, op: PitJoinOp) -> None:
    p: PitJoinParams = op.params
    ents = [sql_ident(e) for e in p.entities]
    rows, where = _feature_rows_sql(ctx, op)
    fv = table(op.name + ":rows")
    # Keep, per (entities, ts), the greatest (created_ts, source order); nulls sort lowest.
    ctx.con.execute(f"""
        CREATE TEMP TABLE {fv} AS
        SELECT * EXCLUDE (__fcts, __file, __row) FROM ({rows}) WHERE {where}
        QUALIFY row_number() OVER (PARTITION BY {", ".join(ents)}, __fts
                                   ORDER BY __fcts DESC NULLS LAST, __file DESC, __row DESC) = 1
    """)
    hit = "f.__fts IS NOT NULL"
    if p.ttl:
        hit += f" AND f.__fts >= k.__ts - {interval_sql(duration_micros(p.ttl))}"
    on = " AND ".join(f"k.{e} = f.{e}" for e in ents)
    carried = ", ".join(f"f.{sql_ident(c)}" for c in p.columns)
    ctx.con.execute(f"""
        CREATE TEMP TABLE {table(op.name)} AS
        SELECT {", ".join("k." + e for e in ents)}, k.__ts, k.__n, ({hit}) AS __hit{", " + carried if carried else ""}
        FROM ({_keys_sql(ctx, op)}) k
        ASOF LEFT JOIN {fv} f ON {on} AND k.__ts >= f.__fts
    """)
    ctx.con.execute(f"DROP TABLE {fv}")


def pit_join_pythonic(ctx: DayContext, op: PitJoinOp) -> None:
    """The same join by sorting keys and feature rows together (numpy, no ASOF)."""
    p: PitJoinParams = op.params
    rows, where = _feature_rows_sql(ctx, op)
    fv = ctx.con.sql(f"SELECT * FROM ({rows}) WHERE {where}").to_arrow_table()
    keys = ctx.con.sql(_keys_sql(ctx, op) + " ORDER BY ALL").to_arrow_table()
    n_k, n_f = keys.num_rows, fv.num_rows
    kcode, fcode = entity_codes([keys[e] for e in p.entities], [fv[e] for e in p.entities])
    kts, fts = micros(keys["__ts"]), micros(fv["__fts"])
    fcts = fv["__fcts"].combine_chunks().cast(pa.timestamp("us")).cast(pa.int64())
    cts_valid = np.asarray(fcts.is_valid().to_numpy(zero_copy_only=False), dtype=np.int64)
    cts = np.where(cts_valid == 1, fcts.fill_null(0).to_numpy(zero_copy_only=False), 0)
    # Source order: the file list position then the row inside the file.
    forder, frow = source_order(fv["__file"], fv["__row"])
    # One sorted sequence per entity: feature rows ordered by (ts, created, source order),
    # each key placed after every feature row with ts <= its own ts.
    code = np.concatenate([fcode, kcode])
    ts = np.concatenate([fts, kts])
    is_key = np.concatenate([np.zeros(n_f, np.int64), np.ones(n_k, np.int64)])
    c_valid = np.concatenate([cts_valid, np.zeros(n_k, np.int64)])
    c_val = np.concatenate([cts, np.zeros(n_k, np.int64)])
    o1 = np.concatenate([forder, np.zeros(n_k, np.int64)])
    o2 = np.concatenate([frow, np.zeros(n_k, np.int64)])
    order = np.lexsort((o2, o1, c_val, c_valid, is_key, ts, code))
    pos = np.arange(n_f + n_k)
    last_f = np.where(is_key[order] == 0, pos, -1)
    last_f = np.maximum.accumulate(last_f) if len(last_f) else last_f
    key_slots = np.nonzero(is_key[order] == 1)[0]
    key_index = order[key_slots] - n_f
    cand = last_f[key_slots]
    chosen = np.full(n_k, -1, dtype=np.int64)
    ok = cand >= 0
    cand_rows = np.where(ok, order[np.maximum(cand, 0)], 0)
    ok &= code[cand_rows] == kcode[key_index] if n_f else np.zeros_like(ok)
    if p.ttl:
        ok &= fts[np.minimum(cand_rows, max(n_f - 1, 0))] >= kts[key_index] - duration_micros(p.ttl) if n_f else ok
    chosen[key_index[ok]] = cand_rows[ok]
    hit = chosen >= 0
    take = pa.array(np.where(hit, chosen, 0)) if n_f else None
    cols = {e: keys[e] for e in p.entities}
    cols["__ts"] = keys["__ts"]
    cols["__n"] = keys["__n"]
    cols["__hit"] = pa.array(hit, pa.bool_())
    mask = pa.array(~hit)
    for c in p.columns:
        if n_f:
            vals = fv[c].take(take).combine_chunks()
            cols[c] = pc.if_else(mask, pa.scalar(None, vals.type), vals)
        else:
            cols[c] = pa.nulls(n_k, fv[c].type)
    result = pa.table(cols)
    ctx.con.register("__pit_arrow", result)
    ctx.con.execute(f"CREATE TEMP TABLE {table(op.name)} AS SELECT * FROM __pit_arrow")
    ctx.con.unregister("__pit_arrow")
