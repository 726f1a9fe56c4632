"""Per-day data-quality statistics ("stats sidecars") written by the day jobs.

Each skeleton day writes `<root>/.daedalus/stats/skeleton/dt=D.json` and each enrich day
`<root>/.daedalus/stats/enrich/dt=D.json`, right after the day is published. They live
with the other bookkeeping (never inside `dt=D/`, which holds only the data files readers
list), are written atomically, and are a function of the day's data only (counts, and
rates computed from integer counts: no timings, no clock), so a rerun that writes the
same data writes the same bytes. `daeda pipeline report` reads them.

Skeleton statistics cost one DuckDB aggregate over the day's freshly written parts (a few
columns, in the page cache) plus one join per feature view against the join's own table
of (entities, timestamp) -> hit, which is still in the job's DuckDB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from daedalus.plan import Plan
from daedalus.sources import sql_ident

FORMAT = 1
STAGES = ("skeleton", "enrich")
_DIGITS = 6


def stats_dir(root: Path | str) -> Path:
    return Path(root) / ".daedalus" / "stats"


def stats_path(root: Path | str, stage: str, day: str) -> Path:
    return stats_dir(root) / stage / f"dt={day}.json"


def _rate(n: int | float, rows: int) -> float | None:
    return round(n / rows, _DIGITS) if rows else None


def _write(path: Path, stats: dict[str, Any]) -> None:
    from daedalus.compile import write_if_changed

    write_if_changed(path, json.dumps(stats, indent=1) + "\n")


def read_stats(root: Path | str, stage: str) -> dict[str, dict[str, Any]]:
    """day -> the stats of that stage, for every sidecar present (unreadable ones skipped)."""
    out: dict[str, dict[str, Any]] = {}
    d = stats_dir(root) / stage
    if not d.is_dir():
        return out
    for p in sorted(d.glob("dt=*.json")):
        try:
            out[p.stem[3:]] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return out


# -- skeleton -----------------------------------------------------------------------------

def _coverage_expr(function: str, col: str) -> str | None:
    """True when the window of this row held a value (the feature is not its empty value)."""
    c = sql_ident(col)
    if function in ("count", "count_distinct"):
        return f"{c} > 0"
    if function == "last_k":
        return f"len({c}) > 0"
    if function in ("mean", "min", "max", "last"):
        return f"{c} IS NOT NULL"
    return None  # a sum of 0 may be an empty window or values summing to 0


def skeleton_stats(con: Any, plan: Plan, day: str, day_dir: Path) -> dict[str, Any]:
    """Statistics of a published skeleton day; `con` is the day job's DuckDB connection."""
    from daedalus.skeleton.context import table

    sp = plan.op("spine").typed_params()
    produced = {c.name for o in plan.operators if o.kind in ("derive", "udf", "window_agg") for c in o.outputs}
    features = [c.name for c in plan.columns if c.name in produced]
    windows: dict[str, list[str]] = {}
    for op in plan.ops("window_agg"):
        p = op.typed_params()
        for f in p.features:
            e = _coverage_expr(f.function, f.output)
            if e:
                windows.setdefault(f"{p.aggregation}_{f.window}", []).append(e)
    sums = {label: f"sum(CAST({sql_ident(label)} AS DOUBLE))" for label in sp.labels}
    exprs = ["count(*)"]
    exprs += [f"count(*) - count({sql_ident(c)})" for c in features]
    exprs += [f"count(*) FILTER (WHERE {' OR '.join(es)})" for es in windows.values()]
    exprs += [f"count({sql_ident(label)})" for label in sp.labels] + list(sums.values())
    parts = sorted(str(p) for p in day_dir.glob("part-*.parquet"))
    # The job's DuckDB may read only its input files (context.lock_down), so the published
    # parts are scanned through an Arrow dataset (a registered object, not a file DuckDB opens).
    import pyarrow.dataset as pads

    con.register("__published", pads.dataset(parts, format="parquet"))
    try:
        row = con.execute(f"SELECT {', '.join(exprs)} FROM __published").fetchall()[0]
    finally:
        con.unregister("__published")
    rows, it = int(row[0]), iter(row[1:])
    nulls = {c: _rate(next(it), rows) for c in features}
    coverage = {w: _rate(next(it), rows) for w in windows}
    label_n = [int(next(it)) for _ in sp.labels]
    labels = {label: (round(float(s or 0) / n, _DIGITS) if n else None) for label, n, s in zip(sp.labels, label_n, it)}
    hits: dict[str, float | None] = {}
    for op in plan.ops("pit_join"):
        p = op.typed_params()
        on = " AND ".join(f"s.{sql_ident(e)} = j.{sql_ident(e)}" for e in p.entities)
        try:
            n = con.execute(f"SELECT count(*) FILTER (WHERE j.__hit) FROM {table('spine')} s "
                            f"LEFT JOIN {table(op.name)} j ON {on} AND s.__ts = j.__ts").fetchall()[0][0]
        except Exception:  # an engine that keeps no join table: no hit rate rather than no day
            hits[p.view] = None
            continue
        hits[p.view] = _rate(int(n), rows)
    return {"format": FORMAT, "stage": "skeleton", "day": day, "rows": rows, "label_rate": labels,
            "pit_hit_rate": hits, "window_coverage": coverage, "null_rate": nulls}


def write_skeleton_stats(con: Any, plan: Plan, day: str, output_root: Path) -> None:
    _write(stats_path(output_root, "skeleton", day),
           skeleton_stats(con, plan, day, Path(output_root) / f"dt={day}"))


# -- enrich -------------------------------------------------------------------------------

class EnrichStats:
    """Accumulates embedding hit counts over the enriched batches as they stream past."""

    def __init__(self, embeddings: list[str]) -> None:
        self.embeddings = list(embeddings)
        self.rows = 0
        self.found_rows = dict.fromkeys(self.embeddings, 0)
        self.found_ids = dict.fromkeys(self.embeddings, 0)

    def add(self, batch: pa.Table | pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.embeddings:
            counts = batch.column(f"{name}_count")
            self.found_rows[name] += int(pc.sum(pc.greater(counts, 0)).as_py() or 0)
            self.found_ids[name] += int(pc.sum(counts).as_py() or 0)

    def result(self, day: str) -> dict[str, Any]:
        return {"format": FORMAT, "stage": "enrich", "day": day, "rows": self.rows,
                "embedding_hit_rate": {n: _rate(self.found_rows[n], self.rows) for n in self.embeddings},
                "embedding_ids_found": dict(self.found_ids)}

    def write(self, path: Path, day: str) -> None:
        _write(path, self.result(day))
