"""Leakage lint: definitions that can let the future (or the label) into a training row.

`daeda pipeline compile` and `train` print each finding as one line on stderr,
`daeda: warning: <file>: <problem>`, and with `--strict` fail on any of them (before any
output is touched). Checks:

1. a feature view reads the spine's own source: the very rows that carry the labels;
2. a feature view has no `ttl`: a value of any age is joined, however stale;
3. a view's `created_timestamp_field` is later than its `timestamp_field` in some row of the
   files the run reads: the join (on the event timestamp) can pick a row before it existed;
4. an aggregation window is shorter than the timestamp resolution of its source (e.g. `30m`
   over day-stamped events): strictly-before windows that short are always empty;
5. **an error, with or without `--strict`**: a label is a feature input. A label column is a
   label window's output (`<aggregation>__<feature>_<window>` of a service's
   `label_windows`) or one of the spine's `labels`. It is an input of a feature when an
   embedding's `ids` name it, when a view over the spine's own source reads it (the join
   picks the row itself: `r.ts <= t`), or when a view or aggregation reads it from a source
   under the service's output roots (a training output read back). Label windows reading
   labels are fine: labels are never features.

Checks 3 and 4 read only the timestamp columns of the files the run's days read, in one
DuckDB query per source; the answer is remembered in `.daedalus_tmp/lint.json` under the
files' names, sizes and mtimes, so an unchanged source is not read again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import duckdb

from daedalus.compile import SPINE, Compiled, agg_source_id, view_source_id
from daedalus.errors import DaedalusError
from daedalus.expressions import referenced_columns
from daedalus.plan import SourceSpec
from daedalus.sources import read_parquet_sql, sql_ident, timestamp_sql
from daedalus.timeutil import parse_duration

# Coarsest first: (name, microseconds).
RESOLUTIONS = [("1d", 86_400_000_000), ("1h", 3_600_000_000), ("1m", 60_000_000), ("1s", 1_000_000)]


@dataclass(frozen=True)
class LintWarning:
    where: str
    problem: str
    error: bool = False  # fails the command with or without --strict (a label used as a feature input)

    def line(self) -> str:
        return f"daeda: {'error' if self.error else 'warning'}: {self.where}: {self.problem}"


def _same_path(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def run_files(compiled: Compiled, sid: str, spec: SourceSpec) -> list[str]:
    """The files of a source that the run's days read (their look-back included)."""
    return compiled.run_files(sid)


def _ts(con: duckdb.DuckDBPyConnection, rel: str, column: str, where: str) -> str:
    kind = con.execute(f"DESCRIBE SELECT {sql_ident(column)} FROM {rel}").fetchall()[0][1]
    return timestamp_sql(column, kind, where)


def _created_after_event(con, files: list[str], spec: SourceSpec, where: str) -> tuple[int, int, float]:
    """(rows with created > event, rows, largest delay in seconds)."""
    rel = read_parquet_sql(files)
    ev = _ts(con, rel, spec.timestamp_field, where)
    cr = _ts(con, rel, spec.created_timestamp_field or "", where)
    n, total, delay = con.execute(
        f"SELECT count(*) FILTER (WHERE c > e), count(*), max(epoch_us(c) - epoch_us(e)) FILTER (WHERE c > e) "
        f"FROM (SELECT {ev} AS e, {cr} AS c FROM {rel})"
    ).fetchall()[0]
    return int(n), int(total), (delay or 0) / 1e6


def _resolution(con, files: list[str], spec: SourceSpec, where: str) -> tuple[str, int] | None:
    """The coarsest unit every timestamp of the files is a multiple of (None: below a second)."""
    rel = read_parquet_sql(files)
    ts = _ts(con, rel, spec.timestamp_field, where)
    checks = ", ".join(f"bool_and(epoch_us(t) % {us} = 0)" for _, us in RESOLUTIONS)
    row = con.execute(f"SELECT count(t), {checks} FROM (SELECT {ts} AS t FROM {rel})").fetchall()[0]
    if not row[0]:
        return None
    for (name, us), aligned in zip(RESOLUTIONS, row[1:]):
        if aligned:
            return name, us
    return None


LINT_CACHE = Path(".daedalus_tmp/lint.json")


def _cached(check: str, files: list[str], spec: SourceSpec, compute):
    """compute(), or its answer from an earlier run over exactly these files (name, size, mtime)."""
    h = hashlib.sha256(json.dumps([check, spec.timestamp_field, spec.created_timestamp_field]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    key = h.hexdigest()
    try:
        cache = json.loads(LINT_CACHE.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    try:
        value = compute()
    except duckdb.Error as e:
        raise _unreadable(files, e) from None
    if len(cache) >= 256:  # answers for file sets long gone
        cache = {}
    cache[key] = value
    try:  # a cache only: a failed write costs a re-read next time, nothing else
        from daedalus.atomic import write_if_changed

        write_if_changed(LINT_CACHE, json.dumps(cache, sort_keys=True))
    except OSError:
        pass
    return value


def _unreadable(files: list[str], error: duckdb.Error) -> DaedalusError:
    """The file a failed scan of many failed on (DuckDB's message does not name it)."""
    con = duckdb.connect()
    try:
        for f in files:
            try:
                con.execute(f"SELECT * FROM {read_parquet_sql([f])}").fetchall()
            except duckdb.Error as e:
                return DaedalusError(f, f"unreadable parquet data: {' '.join(str(e).split())}")
    finally:
        con.close()
    return DaedalusError(files[0] if files else "lint", f"unreadable parquet data: {' '.join(str(error).split())}")


def _human(seconds: float) -> str:
    for unit, s in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= s:
            return f"{seconds / s:.3g}{unit}"
    return f"{seconds:.3g}s"


def _inside(path: str, roots: list[str]) -> bool:
    p = Path(path.split("*", 1)[0]).resolve()
    return any(p == Path(r).resolve() or Path(r).resolve() in p.parents for r in roots)


def label_leaks(compiled: Compiled) -> list[LintWarning]:
    """Check 5: every place a label column is a feature input (errors)."""
    defs, plan = compiled.definitions, compiled.plan
    svc = defs.service
    agg_where = str(defs.paths.aggregation_config_path)
    windows = {c.name: op.params.aggregation for op in plan.ops("label_window") for c in op.outputs}
    spine_labels = set(plan.spine.params.labels)

    def what(col: str) -> str:
        if col in windows:
            return f"{col!r} is a label (label window {windows[col]!r})"
        return f"{col!r} is a label (spine labels)"

    found: list[LintWarning] = []
    for op in plan.ops("embed"):
        ids = op.params.ids
        if ids in windows or ids in spine_labels:
            found.append(
                LintWarning(
                    agg_where,
                    f"embedding {op.params.embedding!r}: ids: {what(ids)}: a label is never a feature input",
                    error=True,
                )
            )
    spine_path = plan.sources[plan.spine.params.source].path
    root = compiled.definitions.runtime.output_root
    roots = [root, root.rstrip("/") + "_enriched"]
    view_where = {v: str(p) for v, p in defs.view_paths.items()}
    aggs = {a.name: a for a in defs.aggregations.aggregations}
    for op in plan.operators:
        if op.kind not in ("pit_join", "window_agg"):
            continue
        sid = op.source_input()
        if sid is None:
            continue
        spec = plan.sources[sid]
        if op.kind == "pit_join":
            where, name = view_where.get(op.params.view, compiled.plan_path.as_posix()), f"view {op.params.view!r}"
            reads = list(op.params.columns)
        else:
            where, name = agg_where, f"aggregation {op.params.aggregation!r}"
            reads = [f.column for f in op.params.features if f.column]
            reads += [f.bucket_by for f in op.params.features if f.bucket_by]
            reads += [c for f in op.params.features if f.where for c in referenced_columns(f.where)]
            agg = aggs.get(op.params.aggregation)
            if agg is not None:
                reads += list(agg.group_by)
        if op.kind == "pit_join" and _same_path(spec.path, spine_path):
            for col in reads:
                if col in spine_labels:
                    found.append(
                        LintWarning(
                            where,
                            f"{name} reads the spine's own source, and {what(col)}: the join picks the row "
                            "itself, so the feature is the row's label",
                            error=True,
                        )
                    )
        if _inside(spec.path, roots):
            for col in reads:
                if col in windows or (col in spine_labels and op.kind == "pit_join"):
                    found.append(
                        LintWarning(
                            where,
                            f"{name} reads {col!r} from {spec.path!r}, the training output of service "
                            f"{svc.name!r}: {what(col)}, never a feature input",
                            error=True,
                        )
                    )
    return found


def lint(compiled: Compiled) -> list[LintWarning]:
    found = label_leaks(compiled)
    return found + _warnings(compiled)


def _warnings(compiled: Compiled) -> list[LintWarning]:
    defs = compiled.definitions
    svc = defs.service
    plan = compiled.plan
    spine_path = svc.spine.source.path
    found: list[LintWarning] = []
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        for ref in svc.refs:
            view, where = defs.views[ref.view], str(defs.view_paths[ref.view])
            if _same_path(view.source.path, spine_path):
                found.append(
                    LintWarning(
                        where,
                        f"view {view.name!r} reads the spine's own source "
                        f"{spine_path!r}, the rows that carry the labels "
                        f"({', '.join(svc.spine.labels) or 'no labels'}): its features can leak them",
                    )
                )
            if view.ttl is None:
                found.append(
                    LintWarning(
                        where,
                        f"view {view.name!r} has no ttl: a value of any age is joined, "
                        "however stale (set ttl to how long a value stays true)",
                    )
                )
            sid = view_source_id(view.name)
            spec = plan.sources.get(sid)
            if view.source.created_timestamp_field and spec is not None:
                files = run_files(compiled, sid, spec)
                if files:
                    n, total, delay = _cached(
                        "created_after_event", files, spec, partial(_created_after_event, con, files, spec, where)
                    )
                    if n:
                        found.append(
                            LintWarning(
                                where,
                                (
                                    f"view {view.name!r}: {n:,} of {total:,} source rows have "
                                    f"{view.source.created_timestamp_field} later than {view.source.timestamp_field} "
                                    f"(by up to {_human(delay)}): the join can pick a row before it existed"
                                ),
                            )
                        )
        aggs = {a.name: a for a in defs.aggregations.aggregations}
        agg_where = str(defs.paths.aggregation_config_path)
        resolutions: dict[str, tuple[str, int] | None] = {}
        for name in svc.aggregations:
            agg = aggs[name]
            sid = agg_source_id(agg)
            spec = plan.sources.get(sid)
            if spec is None:
                continue
            if sid not in resolutions:
                files = run_files(compiled, sid, spec)
                res = (
                    _cached("resolution", files, spec, partial(_resolution, con, files, spec, agg_where))
                    if files
                    else None
                )
                resolutions[sid] = tuple(res) if res else None
            res = resolutions[sid]
            if res is None:
                continue
            unit, us = res
            src = "the spine" if sid == SPINE else repr(spec.path)
            for f in agg.features:
                for w in agg.windows_of(f):
                    if parse_duration(w) < dt.timedelta(microseconds=us):
                        found.append(
                            LintWarning(
                                agg_where,
                                (
                                    f"aggregation {name!r}: feature {f.name!r}: window {w} is shorter than the timestamp "
                                    f"resolution of {src} ({unit}): it holds the events of one instant at most (none when the "
                                    "spine has that resolution too)"
                                ),
                            )
                        )
    finally:
        con.close()
    return found


def report(warnings: list[LintWarning], *, strict: bool) -> None:
    """Print each warning; fail (exit 2) on an error, and with `strict` on any warning.

    The first error is the command's own error line; further ones are printed before it."""
    errors = [w for w in warnings if w.error]
    for w in warnings:
        if not w.error:
            print(w.line(), file=sys.stderr)
    for w in errors[1:]:
        print(w.line(), file=sys.stderr)
    if errors:
        raise DaedalusError(errors[0].where, errors[0].problem)
    if strict and warnings:
        raise DaedalusError("--strict", f"{len(warnings)} leakage warning(s) above")
