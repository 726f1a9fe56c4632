"""Where everything of an output root lives (contract section 7, and Daedalus's own state).

    <root>/dt=YYYY-MM-DD/part-N-0.parquet          the skeleton days
    <root>/qid_map.parquet
    <root>_enriched/dt=YYYY-MM-DD/part-NNNNN.parquet  the enriched days
    <root>/.daedalus/                              state (never read as data)
        published/skeleton/dt=D.json               a finished skeleton job's record of day D
        published/enrich/dt=D.json                 ... of an enrich job
        published/qid_map.json                     ... of the qid_map job
        state/{partials,snapshot}/<key>/dt=E.parquet  per-source-day state (daedalus.skeleton.state)
        state/records/{partials,snapshot}/dt=E.json  a state job's record (source day E)
        columns/<operator>-<digest>/dt=D.arrow     an operator's table of day D (daedalus.skeleton.columns)
        logs/, benchmarks/, stats/, qid/, train.lock, ray-head.json

The `published/` records are the files Snakemake sees as the jobs' outputs. Snakemake
deletes a job's outputs before it runs the job; if those were the day directories, a rerun
that fails would leave no day at all. With records as the outputs, the day a reader sees is
swapped in place by the job (daedalus.atomic.publish_dir) and stays the previous complete
day until a new complete one replaces it; only the record goes missing, so the next run
does the day again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from daedalus.atomic import temp_sibling

STAGES = ("skeleton", "enrich")


@dataclass(frozen=True)
class Layout:
    root: str  # as the user gave it (relative to the working directory), without a trailing "/"

    @classmethod
    def of(cls, root: str | Path) -> Layout:
        return cls(str(root).rstrip("/") or ".")

    @property
    def enriched_root(self) -> str:
        return self.root + "_enriched"

    @property
    def state_dir(self) -> str:
        return f"{self.root}/.daedalus"

    def stage_root(self, stage: str) -> str:
        return self.root if stage == "skeleton" else self.enriched_root

    def day_dir(self, stage: str, day: str) -> str:
        return f"{self.stage_root(stage)}/dt={day}"

    def record(self, stage: str, day: str) -> str:
        """The published record of a day: the output Snakemake tracks for its job."""
        return f"{self.state_dir}/published/{stage}/dt={day}.json"

    def columns_file(self, key: str, day: str) -> str:
        """One operator's table of one day (daedalus.skeleton.columns)."""
        return f"{self.state_dir}/columns/{key}/dt={day}.arrow"

    def state_key_dir(self, kind: str, key: str) -> str:
        """The day files of one operator's state (daedalus.skeleton.state)."""
        return f"{self.state_dir}/state/{kind}/{key}"

    def state_file(self, kind: str, key: str, day: str) -> str:
        """A per-source-day state file (daedalus.skeleton.state)."""
        return f"{self.state_key_dir(kind, key)}/dt={day}.parquet"

    def state_record(self, kind: str, day: str) -> str:
        """The record of a state job (every state of `kind` of one source day): its output."""
        return f"{self.state_dir}/state/records/{kind}/dt={day}.json"

    @property
    def qid_map(self) -> str:
        return f"{self.root}/qid_map.parquet"

    @property
    def qid_map_record(self) -> str:
        return f"{self.state_dir}/published/qid_map.json"

    @property
    def ray_head_record(self) -> Path:
        return Path(self.state_dir) / "ray-head.json"

    def log(self, stage: str, day: str | None = None) -> str:
        return f"{self.state_dir}/logs/{stage}" + (f"/dt={day}.log" if day else ".log")

    def benchmark(self, stage: str, day: str | None = None) -> str:
        return f"{self.state_dir}/benchmarks/{stage}" + (f"/dt={day}.tsv" if day else ".tsv")

    def published(self, stage: str, day: str) -> bool:
        """The day's directory is there and is the one its record describes."""
        return record_matches(Path(self.record(stage, day)), Path(self.day_dir(stage, day)))

    def forget_unpublished(self, days: list[str], stages: tuple[str, ...] = STAGES) -> list[str]:
        """Remove every record whose day directory is gone or is not the one recorded (a
        day deleted or edited by hand), so Snakemake sees that day's output as missing."""
        removed = []
        for stage in stages:
            for day in days:
                rec = Path(self.record(stage, day))
                if rec.exists() and not record_matches(rec, Path(self.day_dir(stage, day))):
                    rec.unlink(missing_ok=True)
                    removed.append(str(rec))
        rec = Path(self.qid_map_record)
        if rec.exists() and not record_matches(rec, Path(self.qid_map)):
            rec.unlink(missing_ok=True)
            removed.append(str(rec))
        return removed


def _listing(path: Path) -> dict[str, int] | None:
    """Name -> size of a published day's data files (or of one published file)."""
    try:
        if path.is_file():
            return {path.name: path.stat().st_size}
        return {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.name.endswith(".parquet")}
    except OSError:
        return None


def write_record(record: str | Path, published: str | Path, **extra: object) -> None:
    """Atomically write the record of a just-published day directory (or file)."""
    record, published = Path(record), Path(published)
    listing = _listing(published)
    if listing is None:
        raise FileNotFoundError(published)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(record)
    try:
        tmp.write_text(json.dumps({"path": published.as_posix(), "files": listing, **extra}, sort_keys=True) + "\n")
        os.replace(tmp, record)
    finally:
        tmp.unlink(missing_ok=True)


def record_matches(record: Path, published: Path) -> bool:
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("files") == _listing(published)
