"""Per-day data-quality statistics ("stats sidecars") written by the day jobs.

Each skeleton day writes `<root>/.daedalus/stats/skeleton/dt=D.json` and each enrich day
`<root>/.daedalus/stats/enrich/dt=D.json`, right after the day is published. They live
with the other bookkeeping (never inside `dt=D/`, which holds only the data files readers
list), are written atomically, and are a function of the day's data only (counts, and
rates computed from integer counts: no timings, no clock), so a rerun that writes the
same data writes the same bytes. `daeda pipeline report` reads them.

Skeleton statistics are counted on each part as the writer produces it, plus one join per
feature view against the join's own table of (entities, timestamp) -> hit, which is still in
the job's DuckDB.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from daedalus import functions
from daedalus.plan import Plan

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
    from daedalus.atomic import write_if_changed

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


class SkeletonStats:
    """Counts over a skeleton day's parts as the writer produces them (all additive).

    Computed on the Arrow parts in memory, so the published files are never read back (and
    nothing here imports pandas, which pyarrow.dataset and DuckDB's Arrow scans do: half a
    second per day job).
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.sp = plan.spine.params
        produced = {c.name for o in plan.operators if o.kind in ("derive", "udf", "window_agg") for c in o.outputs}
        self.features = [c.name for c in plan.columns if c.name in produced]
        self.windows: dict[str, list[tuple[str, str]]] = {}
        for op in plan.ops("window_agg"):
            p = op.params
            for f in p.features:
                # A filtered feature's empty value says nothing of the window's other events.
                if functions.get(f.function).coverage and not f.filtered:
                    self.windows.setdefault(f"{p.aggregation}_{f.window}", []).append((f.function, f.output))
        self.rows = 0
        self.nulls = dict.fromkeys(self.features, 0)
        self.covered = dict.fromkeys(self.windows, 0)
        # The spine's labels and the numeric (and bool) label-window columns: their rates.
        numeric = ("bool", "int", "uint", "float", "double")
        self.labels = list(self.sp.labels) + [
            c.name for o in plan.ops("label_window") for c in o.outputs if c.type.startswith(numeric)
        ]
        self.label_n = dict.fromkeys(self.labels, 0)
        self.label_sums: dict[str, list[float]] = {label: [] for label in self.labels}

    def add(self, part: pa.Table) -> None:
        # Only array kernels here: Python scalars and to_numpy make pyarrow import pandas.
        self.rows += part.num_rows
        for c in self.features:
            self.nulls[c] += part[c].null_count
        for w, fs in self.windows.items():
            masks = [_coverage_mask(functions.get(fn).coverage, part[col]) for fn, col in fs]
            m = _or_all(masks)
            self.covered[w] += pc.sum(pc.cast(m, pa.int64())).as_py() or 0  # a null counts as not covered
        for label in self.labels:
            col = part[label]
            self.label_n[label] += len(col) - col.null_count
            if pa.types.is_floating(col.type):
                self.label_sums[label].append(pc.sum(col.cast(pa.float64())).as_py() or 0.0)
            else:  # integer and bool labels sum exactly
                self.label_sums[label].append(float(pc.sum(col.cast(pa.int64())).as_py() or 0))

    def result(self, con: Any, day: str) -> dict[str, Any]:
        from daedalus.skeleton.context import table

        rows = self.rows
        labels = {
            label: (round(math.fsum(self.label_sums[label]) / n, _DIGITS) if n else None)
            for label, n in self.label_n.items()
        }
        hits: dict[str, float | None] = {}
        for op in self.plan.ops("pit_join"):
            p = op.params
            try:
                # Each row of the join's table stands for its `__n` spine rows.
                n = con.execute(f"SELECT coalesce(sum(__n) FILTER (WHERE __hit), 0) FROM {table(op.name)}").fetchall()
            except Exception:  # an engine that keeps no join table: no hit rate rather than no day
                hits[p.view] = None
                continue
            hits[p.view] = _rate(int(n[0][0]), rows)
        return {
            "format": FORMAT,
            "stage": "skeleton",
            "day": day,
            "rows": rows,
            "label_rate": labels,
            "pit_hit_rate": hits,
            "window_coverage": {w: _rate(n, rows) for w, n in self.covered.items()},
            "null_rate": {c: _rate(n, rows) for c, n in self.nulls.items()},
        }


def _coverage_mask(rule: str | None, col: Any) -> Any:
    """True when the window of this row held a value (the feature is not its empty value);
    the rule is the function's (daedalus.functions); a sum has none (0 may be either)."""
    if rule == "nonzero":  # counts are never negative
        return pc.cast(col, pa.bool_())
    if rule == "nonempty":
        return pc.cast(pc.list_value_length(col), pa.bool_())
    return pc.is_valid(col)


def _or_all(masks: list[Any]) -> Any:
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_kleene(out, m)
    return out


def write_skeleton_stats(con: Any, stats: SkeletonStats, day: str, output_root: Path) -> None:
    _write(stats_path(output_root, "skeleton", day), stats.result(con, day))


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
        return {
            "format": FORMAT,
            "stage": "enrich",
            "day": day,
            "rows": self.rows,
            "embedding_hit_rate": {n: _rate(self.found_rows[n], self.rows) for n in self.embeddings},
            "embedding_ids_found": dict(self.found_ids),
        }

    def write(self, path: Path, day: str) -> None:
        _write(path, self.result(day))
