"""Per-source-day state: what a day job reads instead of re-reading its raw look-back.

Two kinds, one file per (operator, source day E) under `<root>/.daedalus/state/`:

    partials/<key>/dt=E.parquet   window partial aggregates of partition E (window_agg, sql):
        fine rows (`__whole` false): per (group, ts) over every row of the partition;
        day rows (`__whole` true, `__ts` = E 00:00): per group over the rows of day E.
    snapshot/<key>/dt=E.parquet   the point-in-time state after day E (pit_join, any engine):
        per entity the row a join would choose at E + 1 day, i.e. the greatest
        (ts, created_ts, file, row) with ts < E + 1 day (and ts >= E + 1 day - ttl),
        plus, unreduced, every row of those partitions with a later ts ("pending").
    snapshot/<op>.events-<digest>/dt=E.parquet   the kept events after day E (window_agg,
        sql, the `REDUCED` functions): per group, of the events before E + 1 day, the k
        newest non-null values of each `last`/`last_k` column and each distinct value's
        newest event of each `count_distinct` column, inside the column's longest window
        from E + 1 day; plus every later row ("pending"). A chain like the joins'.

A window of a row of day D cuts at most two days besides D (daedalus.skeleton.windows), so a
day job reads the fine rows of those days and one row per group of every other day; a join
reads the snapshot of D - 1 and partition D. `<key>` is `<operator>-<digest of what the state
computes>`: an operator that did not change keeps its state across definition changes.

Each file records the fingerprint (path, size, mtime) of the source partitions it stands for
(partials: partition E; snapshot: the partitions day E + 1's look-back reads before E + 1),
and a reader recomputes a file whose fingerprint differs, so a state file is never used
stale whoever made it. The Snakemake rules make them as jobs of their own (rules/state.smk);
an in-process run makes the missing ones on demand. A snapshot is made from the previous
day's snapshot and one partition when that snapshot is there and current, else from the raw
look-back; both give the same rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from daedalus import functions
from daedalus.atomic import write_parquet
from daedalus.layout import Layout
from daedalus.plan import PitJoinOp, Plan, WindowAggOp, WindowAggParams, WindowFeature
from daedalus.skeleton.values import source_columns, value_sql
from daedalus.sources import SourceFiles, partition_day, sql_ident
from daedalus.timeutil import DAY, duration_micros, lookback_days, parse_duration

if TYPE_CHECKING:
    from daedalus.definitions import DuckDBSettings

KINDS = ("partials", "snapshot")
FINGERPRINT_KEY = b"daedalus.state.inputs"
# Fine rows of a partition outside its own day (the hive layout broken): such a file's day
# rows and running aggregates miss them, so its readers take the frame path.
OUTSIDE_KEY = b"daedalus.state.outside_rows"
# Logical types whose sums are exact, so partial sums give the raw events' value.
EXACT_TYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"}


@dataclass(frozen=True)
class StateSpec:
    kind: str  # "partials" | "snapshot"
    op: str  # the operator it serves
    source: str  # the plan source it is computed from
    key: str  # "<op>-<digest>": the directory of its day files
    lookback: int | None  # snapshot: partitions before E + 1 the state of E covers (None: all)
    # "partials" (aggregates of the mergeable functions or a join's snapshot) or "events"
    # (a snapshot of the rows the ranked and distinct functions can still need: `reduced_features`)
    form: str = "partials"


def mergeable(plan: Plan, p: WindowAggParams, f: WindowFeature) -> bool:
    """The feature's value over a window is exactly its value over merged partials."""
    fn = functions.get(f.function)
    if fn.merge is None or f.bucket_map:  # a map's buckets are not known in advance
        return False
    return not fn.merge_needs_exact or plan.sources[p.source].columns.get(f.column or "") in EXACT_TYPES


# Functions whose value over a window needs, of the events before day D, only a few: for a
# row of day D the window reaches back into them only as a suffix [t - w, D), so the k most
# recent non-null values there are among the k most recent before D (`last`, `last_k`), and
# a value is in it iff its latest event before D is (`count_distinct`). Day D is read raw.
REDUCED = ("last", "last_k", "count_distinct")
EVENTS = "#events"  # the name suffix of an operator's reduced-events state (specs)


def reduced_features(plan: Plan, p: WindowAggParams) -> list[WindowFeature]:
    """The features a reduced-events state serves: every feature partials cannot merge, when
    all of them are `REDUCED` functions (else they read the raw look-back)."""
    rest = [f for f in p.features if not mergeable(plan, p, f)]
    return rest if rest and all(f.function in REDUCED and f.column and not f.filtered for f in rest) else []


def partial_columns(plan: Plan, p: WindowAggParams) -> dict[str, str]:
    """The partial aggregates the mergeable features need: name -> SQL over `v:<value>`
    (`WindowFeature.value`: the column, or a filtered feature's own value key)."""
    parts: dict[str, str] = {"__n": "count(*)"}
    for f in p.features:
        if not f.value or not mergeable(plan, p, f):
            continue
        v = sql_ident("v:" + f.value)
        merge = functions.get(f.function).merge
        if merge in ("count", "mean"):
            parts["n:" + f.value] = f"count({v})"
        if merge in ("sum", "mean"):
            parts["s:" + f.value] = f"CAST(sum(CAST({v} AS BIGINT)) AS BIGINT)"
        if merge in ("min", "max"):
            parts[f"{merge}:{f.value}"] = f"{merge}({v})"
    return parts


def partial_values(plan: Plan, p: WindowAggParams) -> dict[str, WindowFeature]:
    """Each value key the partials read, with a feature whose value it is."""
    keys = {c.split(":", 1)[1] for c in partial_columns(plan, p) if ":" in c}
    return {f.value: f for f in p.features if f.value in keys}


def part_merge(part: str) -> str:
    """How partials of one part combine: `sum` (counts and sums), `min` or `max`."""
    head = part.split(":", 1)[0]
    return head if head in ("min", "max") else "sum"


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def specs(plan: Plan) -> dict[str, StateSpec]:
    """The state each operator of the plan reads, by operator name (others read raw events)."""
    out: dict[str, StateSpec] = {}
    for op in plan.skeleton_operators:
        if isinstance(op, WindowAggOp) and op.engine == "sql" and (red := reduced_features(plan, op.params)):
            p = op.params
            src = plan.sources[p.source]
            cols = sorted({f.column for f in p.features if f.column})
            fields: dict[str, Any] = {
                "kind": "snapshot",
                "form": "events-2",  # a chain: the events still needed after each day
                "path": src.path,
                "ts": src.timestamp_field,
                "group_by": p.group_by,
                "columns": cols,
                "keep": sorted(f"{k}:{c}:{n}:{w}" for (k, c), (n, w) in _kept(red).items()),
                "lookback": src.lookback_days,
                "types": {c: src.columns.get(c) for c in [*p.group_by, *cols]},
            }
            key = f"{op.name}.events-{_digest(fields)}"
            out[op.name + EVENTS] = StateSpec("snapshot", op.name, p.source, key, src.lookback_days, "events")
        if isinstance(op, WindowAggOp) and op.engine == "sql":
            p = op.params
            if not any(mergeable(plan, p, f) for f in p.features):
                continue
            src = plan.sources[p.source]
            parts = partial_columns(plan, p)
            cols = sorted({c for f in partial_values(plan, p).values() for c in source_columns(f)})
            fields = {
                "kind": "partials",
                "form": 2,  # fine rows carry in-day prefix and suffix aggregates
                "path": src.path,
                "ts": src.timestamp_field,
                "group_by": p.group_by,
                "parts": parts,
                "types": {c: src.columns.get(c) for c in [*p.group_by, *cols]},
            }
            out[op.name] = StateSpec("partials", op.name, p.source, f"{op.name}-{_digest(fields)}", 0)
        elif isinstance(op, PitJoinOp):
            jp = op.params
            src = plan.sources[jp.source]
            fields = {
                "kind": "snapshot",
                "path": src.path,
                "ts": src.timestamp_field,
                "created": src.created_timestamp_field,
                "entities": jp.entities,
                "columns": jp.columns,
                "ttl": jp.ttl,
                "lookback": src.lookback_days,
                "types": {c: src.columns.get(c) for c in [*jp.entities, *jp.columns]},
            }
            key = f"{op.name}-{_digest(fields)}"
            out[op.name] = StateSpec("snapshot", op.name, jp.source, key, src.lookback_days)
    return out


def state_path(root: Path | str, spec: StateSpec, day: dt.date) -> Path:
    return Path(Layout.of(root).state_file(spec.kind, spec.key, day.isoformat()))


def input_files(spec: StateSpec, scan: SourceFiles, day: dt.date) -> list[str]:
    """The source partitions the state of `day` stands for (its fingerprint covers them)."""
    if spec.kind == "partials":
        return scan.select([day], 0)
    after = day + DAY
    return [f for f in scan.select([after], spec.lookback) if partition_day(f) != after]


def previous_day(spec: StateSpec, scan: SourceFiles, day: dt.date) -> dt.date | None:
    """The day whose snapshot the snapshot of `day` is merged from (None: made from raw)."""
    if spec.kind != "snapshot" or not scan.partitioned:
        return None
    first = min(d for d in scan.days if d is not None)
    return day - DAY if day - DAY >= first else None


def fingerprint(files: list[str]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def is_current(path: Path, files: list[str]) -> bool:
    """The state file is there and was made from exactly these source files as they are now."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False
    try:
        return meta.get(FINGERPRINT_KEY, b"").decode() == fingerprint(files)
    except OSError:
        return False


def outside_rows(path: Path) -> int:
    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(OUTSIDE_KEY, b"0"))


def _write(table: pa.Table, path: Path, files: list[str]) -> None:
    # LZ4: written once, read by every day of its look-back; Zstd took twice as long to write.
    write_parquet(table, path, compression="lz4", metadata={FINGERPRINT_KEY: fingerprint(files).encode()})


def _connect(readable: list[str], settings: DuckDBSettings | None) -> duckdb.DuckDBPyConnection:
    """A state job's DuckDB: one thread, the job's share of the memory limit (the caller's
    settings: daedalus.jobs splits the configured limit among the day workers)."""
    from daedalus.definitions import DuckDBSettings
    from daedalus.skeleton.context import lock_down
    from daedalus.skeleton.stage import connect

    settings = settings or DuckDBSettings()
    con = connect(settings, threads=1)
    lock_down(con, readable, settings.temp_directory)
    return con


def _context(con: duckdb.DuckDBPyConnection, plan: Plan, sid: str, day: dt.date, files: list[str], root: Path) -> Any:
    from daedalus.skeleton.context import DayContext

    return DayContext(con=con, plan=plan, day=day, files={sid: files}, output_root=root)


def compute_partials(
    plan: Plan, group: list[StateSpec], day: dt.date, files: list[str], root: Path, settings: DuckDBSettings | None
) -> dict[str, pa.Table]:
    """Partition `day`'s fine (group, ts) and whole-day (group) partial aggregates, for each
    window of `group` (all over one source): the partition is read once for all of them."""
    sid = group[0].source
    con = _connect(files, settings)
    try:
        ctx = _context(con, plan, sid, day, files, root)
        rel, empty = ctx.relation(sid, files)
        if not empty:
            need = {plan.sources[sid].timestamp_field, "filename", "file_row_number"}
            for spec in group:
                p = plan.op(spec.op).params
                need |= set(p.group_by) | {c for f in partial_values(plan, p).values() for c in source_columns(f)}
            con.execute(f"CREATE TEMP TABLE __src AS SELECT {', '.join(sql_ident(c) for c in sorted(need))} FROM {rel}")
            rel = "__src"
        return {spec.key: _partials(ctx, plan, spec, rel, empty) for spec in group}
    finally:
        con.close()


def _partials(ctx: Any, plan: Plan, spec: StateSpec, rel: str, empty: bool, vectorized: bool = True) -> pa.Table:
    """The partials table of one window (module docstring). `vectorized`: running sums in
    numpy when every part merges by sum and no row lies outside the day (the common case;
    a window function per part costs about twice as much), else window functions."""
    from daedalus.skeleton.context import ts_literal

    con = ctx.con
    p = plan.op(spec.op).params
    src = plan.sources[p.source]
    parts = partial_columns(plan, p)
    groups = [sql_ident(g) for g in p.group_by]
    gl = ", ".join(groups)
    aggs = ", ".join(f"{e} AS {sql_ident(k)}" for k, e in parts.items())
    ts = ctx.ts_expr(rel, src.timestamp_field, src.path)
    vals = "".join(
        f", {value_sql(ctx, rel, f)} AS {sql_ident('v:' + k)}" for k, f in sorted(partial_values(plan, p).items())
    )
    conds = [f"{g} IS NOT NULL" for g in groups] + (["false"] if empty else [])
    ev = f"SELECT {gl}, {ts} AS __ts{vals} FROM {rel} WHERE {' AND '.join(conds) or 'true'}"
    if vectorized and all(part_merge(k) == "sum" for k in parts):
        fine = con.sql(f"SELECT {gl}, __ts, {aggs} FROM ({ev}) GROUP BY {gl}, __ts ORDER BY {gl}, __ts")
        table = _running_sums(fine.to_arrow_table(), p.group_by, list(parts), ctx.start, ctx.end)
        if table is not None:
            return table.replace_schema_metadata({**(table.schema.metadata or {}), OUTSIDE_KEY: b"0"})
    con.execute("DROP TABLE IF EXISTS ev")
    con.execute("DROP TABLE IF EXISTS fine")
    con.execute(f"CREATE TEMP TABLE ev AS {ev}")
    start, end = ts_literal(ctx.start), ts_literal(ctx.end)
    in_day = f"__ts >= {start} AND __ts < {end}"
    # Running aggregates inside the day, per group in ts order (a fine row's (group, ts)
    # is unique): `pre:` over the rows up to this one, `suf:` over this one and later.
    run = []
    for k in parts:
        m = "sum" if part_merge(k) == "sum" else part_merge(k)
        run.append(f"{m}({sql_ident(k)}) OVER (PARTITION BY {gl} ORDER BY __ts ROWS UNBOUNDED PRECEDING)")
        run.append(
            f"{m}({sql_ident(k)}) OVER (PARTITION BY {gl} ORDER BY __ts "
            "ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)"
        )
    cast = {k: "BIGINT" if part_merge(k) == "sum" else None for k in parts}
    named = []
    for i, k in enumerate(parts):
        for j, tag in enumerate(("pre", "suf")):
            e = run[2 * i + j]
            named.append(f"{f'CAST({e} AS BIGINT)' if cast[k] else e} AS {sql_ident(f'{tag}:{k}')}")
    nulls = ", ".join(f"NULL AS {sql_ident(f'{tag}:{k}')}" for k in parts for tag in ("pre", "suf"))
    con.execute(f"CREATE TEMP TABLE fine AS SELECT {gl}, __ts, {aggs} FROM ev GROUP BY {gl}, __ts")
    outside = con.execute(f"SELECT count(*) FROM fine WHERE NOT ({in_day})").fetchall()[0][0]
    table = con.sql(f"""
        SELECT *, false AS __whole, {", ".join(named)} FROM fine WHERE {in_day}
        UNION ALL BY NAME
        SELECT *, false AS __whole, {nulls} FROM fine WHERE NOT ({in_day})
        UNION ALL BY NAME
        SELECT {gl}, {start} AS __ts, true AS __whole, {aggs} FROM ev WHERE {in_day} GROUP BY {gl}
        ORDER BY __whole, {gl}, __ts
    """).to_arrow_table()
    meta = dict(table.schema.metadata or {})
    meta[OUTSIDE_KEY] = str(outside).encode()
    return table.replace_schema_metadata(meta)


def _comparable(t: pa.DataType) -> bool:
    """Equal values of a group key are equal to Arrow's `not_equal` exactly as DuckDB groups
    them (not so for floats: NaN; nor for nested types, which it does not compare)."""
    return (
        pa.types.is_integer(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_temporal(t)
        or pa.types.is_decimal(t)
    )


def _running_sums(
    fine: pa.Table, group_by: list[str], parts: list[str], start: dt.datetime, end: dt.datetime
) -> pa.Table | None:
    """The SQL path's table (fine rows of the day, then one whole-day row per group) from the
    fine rows sorted by (group, ts), with `pre:`/`suf:` as prefix sums over each group's rows
    in ts order; None when a group key's type is not `_comparable` or a row lies outside
    [start, end) (a broken layout: the SQL path keeps such rows apart).

    A prefix or suffix with no non-null value is NULL, as a window `sum` gives it."""
    import numpy as np
    import pyarrow.compute as pc

    fine = fine.combine_chunks()
    if not all(_comparable(fine.schema.field(g).type) for g in group_by):
        return None
    n = fine.num_rows
    if n and (pc.min(fine["__ts"]).as_py() < start or pc.max(fine["__ts"]).as_py() >= end):
        return None
    first = np.zeros(n, dtype=bool)  # the group's first row
    first[:1] = True
    for g in group_by:
        col = fine[g]
        if n > 1:
            first[1:] |= pc.not_equal(col.slice(1), col.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(first)
    gid = np.cumsum(first) - 1

    def prefix(x: Any) -> tuple[Any, Any, Any]:
        """Per row: the sum up to and including it, from it on; per group: the total."""
        cs = np.cumsum(x)
        pre = cs - (cs[starts] - x[starts])[gid]
        total = np.add.reduceat(x, starts) if n else x[:0]
        return pre, total[gid] - pre + x, total

    runs: dict[str, pa.Array] = {}
    wholes: dict[str, pa.Array] = {}
    for k in parts:
        a = fine[k].chunk(0) if fine[k].num_chunks else pa.array([], pa.int64())
        x = a.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        v = a.is_valid().to_numpy(zero_copy_only=False).astype(np.int64)
        pre, suf, total = prefix(x)
        pre_n, suf_n, total_n = prefix(v)
        runs["pre:" + k] = pa.array(pre, pa.int64(), mask=pre_n == 0)
        runs["suf:" + k] = pa.array(suf, pa.int64(), mask=suf_n == 0)
        wholes[k] = pa.array(total, pa.int64(), mask=total_n == 0)
    rows = fine.append_column("__whole", pa.array(np.zeros(n, dtype=bool)))
    for name in (f"{tag}:{k}" for k in parts for tag in ("pre", "suf")):
        rows = rows.append_column(name, runs[name])
    idx = pa.array(starts, pa.int64())
    whole_cols: dict[str, pa.Array] = {g: fine[g].take(idx) for g in group_by}
    whole_cols["__ts"] = pa.array([start] * len(starts), fine.schema.field("__ts").type)
    whole_cols.update({k: wholes[k].cast(fine.schema.field(k).type) for k in parts})
    whole_cols["__whole"] = pa.array(np.ones(len(starts), dtype=bool))
    for name in rows.column_names[len(whole_cols) :]:
        whole_cols[name] = pa.nulls(len(starts), rows.schema.field(name).type)
    whole = pa.table([whole_cols[c] for c in rows.column_names], schema=rows.schema)
    return pa.concat_tables([rows, whole])


def _kept(features: list[WindowFeature]) -> dict[tuple[str, str], tuple[int, int]]:
    """What the events state keeps per column: ("k", c) -> (k, window) for `last`/`last_k`
    (the largest k and window asked for), ("d", c) -> (1, window) for `count_distinct`."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for f in features:
        assert f.column
        key = ("d" if f.function == "count_distinct" else "k", f.column)
        k, w = out.get(key, (0, 0))
        out[key] = (max(k, int(f.k or 1)), max(w, duration_micros(f.window)))
    return out


def events_columns(plan: Plan, op: WindowAggOp) -> list[str]:
    """The columns of an events state's rows, as the day job's events (windows.events_sql)
    name them."""
    cols = sorted({f.column for f in op.params.features if f.column})
    return [*op.params.group_by, "__ts", "__file", "__row", *("v:" + c for c in cols)]


def raw_events_sql(ctx: Any, op: WindowAggOp, files: list[str]) -> str:
    """The rows of `files` as an events state keeps them (`events_columns`)."""
    p = op.params
    src = ctx.plan.sources[p.source]
    rel, empty = ctx.relation(p.source, files)
    groups = [sql_ident(g) for g in p.group_by]
    ts = ctx.ts_expr(rel, src.timestamp_field, src.path)
    cols = sorted({f.column for f in p.features if f.column})
    vals = "".join(f", {ctx.value_expr(rel, c)} AS {sql_ident('v:' + c)}" for c in cols)
    conds = [f"{g} IS NOT NULL" for g in groups] + (["false"] if empty else [])
    return f"""SELECT {", ".join(groups)}, {ts} AS __ts, filename AS __file, file_row_number AS __row{vals}
               FROM {rel} WHERE {" AND ".join(conds) or "true"}"""


def _events_keep_sql(plan: Plan, op: WindowAggOp, rows: str, day: dt.date) -> str:
    """The events state after `day` from candidate rows: of the rows before day + 1, per
    group, the k newest non-null values of each `last`/`last_k` column inside its longest
    window from day + 1 and the newest event of each distinct value of each `count_distinct`
    column inside its window; every later row as it is ("pending").

    Why that is enough for every row t of day + 1 (whose window [t - w, t) reaches back into
    these rows only as a suffix, [t - w, day + 1)): the k newest of a suffix are the k
    newest overall restricted to it, and a value occurs in a suffix iff its newest
    occurrence does. The day job ranks and counts over these rows and its own partition
    exactly as over the raw look-back (windows.window_agg_sql)."""
    from daedalus.skeleton.context import interval_sql, ts_literal

    p = op.params
    gl = ", ".join(sql_ident(g) for g in p.group_by)
    nxt = ts_literal(dt.datetime.combine(day + DAY, dt.time()))
    newest = "ORDER BY __ts DESC, __file DESC, __row DESC"
    keep = []
    for (kind, c), (k, w) in sorted(_kept(reduced_features(plan, p)).items()):
        v = sql_ident("v:" + c)
        inside = f"{v} IS NOT NULL AND __ts >= {nxt} - {interval_sql(w)}"
        part = f"{gl}, {v} IS NULL" if kind == "k" else f"{gl}, {v}"
        keep.append(f"({inside} AND row_number() OVER (PARTITION BY {part} {newest}) <= {k})")
    cols = ", ".join(sql_ident(c) for c in events_columns(plan, op))
    return f"""
        SELECT {cols} FROM ({rows}) WHERE __ts < {nxt} QUALIFY {" OR ".join(keep)}
        UNION ALL
        SELECT {cols} FROM ({rows}) WHERE __ts >= {nxt}
        ORDER BY {gl}, __ts, __file, __row
    """


def snapshot_columns(op: PitJoinOp) -> list[str]:
    return ["__fts", "__fcts", "__file", "__row", *op.params.entities, *op.params.columns]


def raw_rows_sql(ctx: Any, op: PitJoinOp, files: list[str]) -> str:
    """The view's source rows as a join ranks them: __fts, __fcts, __file, __row, entities, columns."""
    p = op.params
    spec = ctx.plan.sources[p.source]
    rel, empty = ctx.relation(p.source, files)
    ts = ctx.ts_expr(rel, spec.timestamp_field, spec.path)
    cts = (
        ctx.ts_expr(rel, spec.created_timestamp_field, spec.path)
        if spec.created_timestamp_field
        else "CAST(NULL AS TIMESTAMP)"
    )
    cols = [sql_ident(e) for e in p.entities] + [f"{ctx.value_expr(rel, c)} AS {sql_ident(c)}" for c in p.columns]
    where = " AND ".join([f"{sql_ident(e)} IS NOT NULL" for e in p.entities] + (["false"] if empty else [])) or "true"
    return f"""SELECT {ts} AS __fts, {cts} AS __fcts, filename AS __file, file_row_number AS __row, {", ".join(cols)}
               FROM {rel} WHERE {where}"""


_PDAY = r"CAST(regexp_extract(__file, '(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)', 1) AS DATE)"


def _reduce_sql(op: PitJoinOp, rows: str, day: dt.date) -> str:
    """The snapshot after `day` from candidate rows: the winner per entity of the rows before
    day + 1 (inside the TTL), and every later row as it is."""
    from daedalus.skeleton.context import interval_sql, ts_literal

    p = op.params
    ents = ", ".join(sql_ident(e) for e in p.entities)
    nxt = ts_literal(dt.datetime.combine(day + DAY, dt.time()))
    keep = f"__fts < {nxt}"
    if p.ttl:
        keep += f" AND __fts >= {nxt} - {interval_sql(duration_micros(p.ttl))}"
    cols = ", ".join(sql_ident(c) for c in snapshot_columns(op))
    return f"""
        SELECT {cols} FROM ({rows}) WHERE {keep}
        QUALIFY row_number() OVER (PARTITION BY {ents}
                                   ORDER BY __fts DESC, __fcts DESC NULLS LAST, __file DESC, __row DESC) = 1
        UNION ALL
        SELECT {cols} FROM ({rows}) WHERE __fts >= {nxt}
        ORDER BY {ents}, __fts, __file, __row
    """


def compute_snapshot(
    plan: Plan,
    spec: StateSpec,
    day: dt.date,
    files: list[str],
    root: Path,
    settings: DuckDBSettings | None,
    previous: Path | None,
    partition: list[str],
) -> pa.Table:
    """The snapshot after `day`: from `previous` (the one after day - 1, current) and the
    day's own partition when given, else from the raw partitions `files`."""
    op = plan.op(spec.op)
    readable = files + ([previous.as_posix()] if previous else [])
    con = _connect(readable, settings)
    try:
        ctx = _context(con, plan, spec.source, day, files, root)
        if isinstance(op, WindowAggOp):
            return con.sql(
                _events_keep_sql(plan, op, _events_candidates(ctx, spec, op, day, files, previous, partition), day)
            ).to_arrow_table()
        if previous is not None:
            cols = ", ".join(sql_ident(c) for c in snapshot_columns(op))
            rows = f"SELECT {cols} FROM read_parquet({_lit(previous)})"
            if partition:
                rows = f"({rows}) UNION ALL BY NAME ({raw_rows_sql(ctx, op, partition)})"
            if spec.lookback is not None and not _merge_exact(con, op, rows, day, spec.lookback):
                rows = raw_rows_sql(ctx, op, files)
        else:
            rows = raw_rows_sql(ctx, op, files)
        # Partitions that left the look-back of day + 1 contribute nothing after the merge.
        if spec.lookback is not None:
            lo = day + DAY - dt.timedelta(days=spec.lookback)
            rows = f"SELECT * FROM ({rows}) WHERE {_PDAY} >= DATE '{lo.isoformat()}'"
        return con.sql(_reduce_sql(op, rows, day)).to_arrow_table()
    finally:
        con.close()


def _events_candidates(
    ctx: Any,
    spec: StateSpec,
    op: WindowAggOp,
    day: dt.date,
    files: list[str],
    previous: Path | None,
    partition: list[str],
) -> str:
    """The rows the events state after `day` is chosen from: the previous day's state and the
    day's partition, or the raw look-back `files`; either way only rows of partitions the
    look-back of day + 1 reads."""
    from daedalus.skeleton.context import interval_sql, ts_literal

    rows = raw_events_sql(ctx, op, files)
    if previous is not None:
        cols = ", ".join(sql_ident(c) for c in events_columns(ctx.plan, op))
        merged = f"SELECT {cols} FROM read_parquet({_lit(previous)})"
        if partition:
            merged = f"({merged}) UNION ALL BY NAME ({raw_events_sql(ctx, op, partition)})"
        exact = True
        if spec.lookback is not None:
            # A row the previous state kept from the partition that leaves the look-back may
            # have taken the place of one still needed (a partition holding rows after its
            # own day): then from the raw look-back.
            lo = day + DAY - dt.timedelta(days=spec.lookback)
            w = max(w for _, w in _kept(reduced_features(ctx.plan, op.params)).values())
            nxt = ts_literal(dt.datetime.combine(day + DAY, dt.time()))
            n = ctx.con.execute(
                f"SELECT count(*) FROM ({merged}) WHERE {_PDAY} < DATE '{lo.isoformat()}' "
                f"AND __ts >= {nxt} - {interval_sql(w)}"
            ).fetchall()
            exact = n[0][0] == 0
        if exact:
            rows = merged
    if spec.lookback is not None:
        lo = day + DAY - dt.timedelta(days=spec.lookback)
        rows = f"SELECT * FROM ({rows}) WHERE {_PDAY} >= DATE '{lo.isoformat()}'"
    return rows


def _lit(path: Path) -> str:
    from daedalus.sources import sql_str

    return sql_str(path.as_posix())


def _merge_exact(con: duckdb.DuckDBPyConnection, op: PitJoinOp, rows: str, day: dt.date, lookback: int) -> bool:
    """Merging is exact unless a row of a partition that leaves the look-back is still inside
    the TTL (a partition holding rows after its own day): it may hide a row the raw
    look-back would choose, so such a snapshot is made from the raw partitions instead."""
    from daedalus.skeleton.context import interval_sql, ts_literal

    lo = day + DAY - dt.timedelta(days=lookback)
    nxt = ts_literal(dt.datetime.combine(day + DAY, dt.time()))
    ttl = op.params.ttl
    inside = f"__fts >= {nxt} - {interval_sql(duration_micros(ttl))}" if ttl else "true"
    n = con.execute(f"SELECT count(*) FROM ({rows}) WHERE {_PDAY} < DATE '{lo.isoformat()}' AND {inside}").fetchall()
    return n[0][0] == 0


def _chain_lock(root: Path, spec: StateSpec) -> Any:
    """One lock per snapshot operator: jobs of one chain wait for each other instead of making
    a day twice. (Partials need none: each file stands alone and two makers write the same
    bytes atomically.)"""
    from filelock import FileLock

    where = Path(Layout.of(root).state_key_dir(spec.kind, spec.key))
    where.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{where}.lock")


def ensure(
    plan: Plan,
    spec: StateSpec,
    day: dt.date,
    root: Path | str,
    scan: SourceFiles,
    *,
    settings: DuckDBSettings | None = None,
    floor: dt.date | None = None,
) -> Path:
    """The state file of `day`, made (atomically) unless it is there and current.

    A snapshot is merged from the previous day's: when that one is not current either, the
    chain back to the last current snapshot (no further back than `floor`, default `day`)
    is made first, oldest first, and the oldest from the raw look-back. So a run's snapshot
    jobs do the same work in whatever order their scheduler picks.
    """
    root = Path(root)
    path = state_path(root, spec, day)
    if spec.kind == "partials":
        files = input_files(spec, scan, day)
        if not is_current(path, files):
            _write(compute_partials(plan, [spec], day, files, root, settings)[spec.key], path, files)
        return path
    first = min((d for d in scan.days if d is not None), default=day)
    lowest = max(min(floor or day, day), first)
    with _chain_lock(root, spec):
        chain: list[dt.date] = []
        d = day
        while not is_current(state_path(root, spec, d), input_files(spec, scan, d)):
            chain.append(d)
            if d - DAY < lowest:
                break
            d -= DAY
        for d in reversed(chain):
            _make_snapshot(plan, spec, d, root, scan, settings)
    return path


def _make_snapshot(
    plan: Plan, spec: StateSpec, day: dt.date, root: Path, scan: SourceFiles, settings: DuckDBSettings | None
) -> None:
    files = input_files(spec, scan, day)
    prev_day = previous_day(spec, scan, day)
    previous = None
    if prev_day is not None:
        prev_path = state_path(root, spec, prev_day)
        if is_current(prev_path, input_files(spec, scan, prev_day)):
            previous = prev_path
    table = compute_snapshot(plan, spec, day, files, root, settings, previous, scan.select([day], 0))
    _write(table, state_path(root, spec, day), files)


def day_states(
    plan: Plan,
    day: dt.date,
    root: Path | str,
    scans: dict[str, SourceFiles],
    settings: DuckDBSettings | None = None,
    only: set[str] | None = None,
    first_day: dt.date | None = None,
) -> dict[str, dict[dt.date, Path]]:
    """Per operator that reads state (of `only`, default all): its current state files for a
    day-`day` job, made when missing or stale (partials of every partition of the window
    look-back, the snapshot of the day before). Sources not partitioned by day have none:
    their operators read raw."""
    out: dict[str, dict[dt.date, Path]] = {}
    for name, spec in specs(plan).items():
        if only is not None and spec.op not in only:
            continue
        scan = scans[spec.source]
        if not scan.partitioned:
            continue
        days = state_days(plan, spec, scan, day, first_day)
        out[name] = {d: ensure(plan, spec, d, root, scan, settings=settings) for d in days}
    return out


def ensure_day(
    plan: Plan,
    kind: str | None,
    day: dt.date,
    root: Path | str,
    scans: dict[str, SourceFiles],
    *,
    settings: DuckDBSettings | None = None,
    record: Path | str | None = None,
    floor: dt.date | None = None,
    first_day: dt.date | None = None,
) -> dict[str, Path]:
    """Every state of `kind` (None: both) of one source day (a state job): partials of each window over a partition
    that has the day, the snapshot after the day of each join (its chain made back to `floor`,
    the run's first snapshot day, when not current: `ensure`); of the operators whose states
    some day from `first_day` on reads (`reaches`; default all); made unless current, then
    listed in `record` (the job's output) when given."""
    from daedalus.atomic import write_bytes

    made: dict[str, Path] = {}
    mine = [
        s
        for s in specs(plan).values()
        if kind in (None, s.kind)
        and scans[s.source].partitioned
        and (first_day is None or reaches(plan, s, first_day, day))
    ]
    # The windows over one source share one read of its partition; windows whose file is
    # current (say, after another window was added) are not made again.
    by_source: dict[str, list[StateSpec]] = {}
    for spec in mine:
        if spec.kind == "partials" and day in scans[spec.source].days:
            made[spec.key] = state_path(root, spec, day)
            if not is_current(made[spec.key], input_files(spec, scans[spec.source], day)):
                by_source.setdefault(spec.source, []).append(spec)
    for sid, group in by_source.items():
        files = input_files(group[0], scans[sid], day)
        tables = compute_partials(plan, group, day, files, Path(root), settings)
        for spec in group:
            _write(tables[spec.key], made[spec.key], files)
    for spec in mine:
        if spec.kind == "snapshot":
            made[spec.key] = ensure(plan, spec, day, root, scans[spec.source], settings=settings, floor=floor)
    if record is not None:
        listing = {k: {"path": p.as_posix(), "size": p.stat().st_size} for k, p in sorted(made.items())}
        write_bytes(Path(record), (json.dumps({"files": listing}, sort_keys=True) + "\n").encode())
    return made


def state_lookback(plan: Plan, spec: StateSpec) -> int:
    """How many days before a day its job reads `spec`'s state from (snapshot: the day before)."""
    if spec.kind == "snapshot":
        return 1
    p = plan.op(spec.op).params
    return max(lookback_days(parse_duration(f.window)) for f in p.features if mergeable(plan, p, f))


def reaches(plan: Plan, spec: StateSpec, first_day: dt.date, day: dt.date) -> bool:
    """Some day from `first_day` on reads `spec`'s state of source day `day`. (From the range's
    configured first day, not a run's `--target-date`: a state job's inputs must not change
    with the days a run asks for.)"""
    return day >= first_day - dt.timedelta(days=state_lookback(plan, spec))


def state_days(
    plan: Plan, spec: StateSpec, scan: SourceFiles, day: dt.date, first_day: dt.date | None = None
) -> list[dt.date]:
    """The days of `spec`'s state a day-`day` job reads (of a range from `first_day`)."""
    if spec.kind == "snapshot":
        return [day - DAY]
    lookback = state_lookback(plan, spec)
    have = {d for d in scan.days if d is not None}
    days = [d for d in (day - dt.timedelta(days=i) for i in range(lookback, -1, -1)) if d in have]
    return [d for d in days if first_day is None or reaches(plan, spec, first_day, d)]
