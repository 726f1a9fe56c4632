"""Per-operator columns: each operator's table of a day kept as a file of its own, so a day job
computes only the operators whose definition or inputs changed and assembles the rest.

    <root>/.daedalus/columns/<operator>-<digest>/dt=D.arrow

holds the operator's table for day D (an Arrow IPC file, Zstd buffers) exactly as the day
job's DuckDB held it (keyed by the
columns `Operator.keys` names, which align it with the spine's rows). `<digest>` is a Merkle
digest of the operator's definition (kind, engine, params, outputs, its source's spec) and of
the digests of the operators it reads, so a changed operator and everything computed from it
get new files while every other operator keeps its own. The file records the fingerprint of
its inputs as they were (path, size and mtime of the source files the operator reads, and the
fingerprints of its input operators): a file whose fingerprint differs from the inputs as they
are now is computed again, whoever wrote it.

Not kept: `qid` (it reads the run's qid registry, which only grows) and `udf` (its code lives
in user files outside the plan); both are recomputed in every day job, as is the assembly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from daedalus.atomic import write_arrow
from daedalus.layout import Layout
from daedalus.plan import LabelWindowOp, Operator, Plan, WindowAggOp
from daedalus.sources import select_files
from daedalus.timeutil import lookback_days, parse_duration

CACHED_KINDS = ("spine", "pit_join", "derive", "window_agg", "label_window")
FINGERPRINT_KEY = b"daedalus.columns.inputs"
# Bumped when an implementation changes what a table holds: every cached table is then new.
# 2: Arrow IPC files; the spine without its source file and row; a join's `__n`.
FORMAT = 2


def operator_digests(plan: Plan) -> dict[str, str]:
    """Per skeleton operator, the digest of what its table holds (Merkle over its inputs)."""
    out: dict[str, str] = {}
    for op in plan.skeleton_operators:
        h = hashlib.sha256(f"{FORMAT}\n".encode())
        h.update(op.model_dump_json(exclude={"name"}).encode())
        if (sid := op.source_input()) is not None:
            # Not its look-back: what the operator reads is in its fingerprint (operator_reads),
            # and another aggregation over the same source must not change this one's digest.
            h.update(plan.sources[sid].model_dump_json(exclude={"lookback_days"}).encode())
        for i in op.inputs:
            if not i.startswith("source:"):
                h.update(out[i].encode())
        out[op.name] = h.hexdigest()[:12]
    return out


def operator_reads(plan: Plan, op: Operator, day: dt.date, files: dict[str, list[str]]) -> list[str]:
    """The source files the operator's table depends on (of the day job's files)."""
    sid = op.source_input()
    if sid is None:
        return []
    spec = plan.sources[sid]
    lookback = spec.lookback_days
    if op.kind == "spine":
        lookback = 0
    elif isinstance(op, WindowAggOp):
        # Its own windows' reach, not its source's (which other aggregations may extend).
        lookback = max(lookback_days(parse_duration(f.window)) for f in op.params.features)
    elif isinstance(op, LabelWindowOp):
        # Forward: the day and the partitions its own windows reach after it.
        return select_files(files.get(sid, []), day, 0, op.lookahead_days())
    return select_files(files.get(sid, []), day, lookback)


def _stat_line(path: str) -> str:
    st = os.stat(path)
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n"


@dataclass
class DayColumns:
    """The cached operator tables of one day: which are current, where they are, and saving."""

    plan: Plan
    day: dt.date
    files: dict[str, list[str]]
    root: Path
    digests: dict[str, str] = field(init=False)
    fingerprints: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.digests = operator_digests(self.plan)
        self.fingerprints = {}
        for op in self.plan.skeleton_operators:
            h = hashlib.sha256(self.digests[op.name].encode())
            for f in sorted(operator_reads(self.plan, op, self.day, self.files)):
                h.update(_stat_line(f).encode())
            for i in op.inputs:
                if not i.startswith("source:"):
                    h.update(self.fingerprints[i].encode())
            self.fingerprints[op.name] = h.hexdigest()

    def cached(self, op: Operator) -> bool:
        return op.kind in CACHED_KINDS

    def path(self, op: Operator) -> Path:
        key = f"{op.name}-{self.digests[op.name]}"
        return Path(Layout.of(self.root).columns_file(key, self.day.isoformat()))

    def is_current(self, op: Operator) -> bool:
        if not self.cached(op):
            return False
        try:
            with pa.memory_map(str(self.path(op))) as src:
                meta = pa.ipc.open_file(src).schema.metadata or {}
        except (OSError, pa.ArrowInvalid):
            return False
        return meta.get(FINGERPRINT_KEY, b"").decode() == self.fingerprints[op.name]

    def current(self) -> set[str]:
        """The operators whose table of the day is there and current."""
        return {op.name for op in self.plan.skeleton_operators if self.is_current(op)}

    def stale(self) -> list[str]:
        """The kept operators a day job would compute now (their table missing or stale)."""
        return [op.name for op in self.plan.skeleton_operators if self.cached(op) and not self.is_current(op)]

    def read(self, op: Operator) -> pa.Table:
        """The kept table of a current operator."""
        with pa.memory_map(str(self.path(op))) as src:
            return pa.ipc.open_file(src).read_all()

    def save(self, op: Operator, result: pa.Table) -> None:
        """Keep the operator's table (atomically), with the fingerprint of its inputs."""
        # Arrow IPC with Zstd buffers: a third of a parquet write's time (no encoding), read
        # back as fast, and smaller than LZ4 parquet.
        write_arrow(result, self.path(op), metadata={FINGERPRINT_KEY: self.fingerprints[op.name].encode()})
