"""A day job that finds another one numbering the run's sessions computes its other
operators first and takes the qids afterwards (daedalus.skeleton.stage, qid.Busy), with the
same bytes as a day job that never waited."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from daedalus.definitions import DuckDBSettings
from daedalus.skeleton import run_skeleton_stage
from daedalus.skeleton.qid import Busy, assign_qids, registry_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge_data  # noqa: E402
import inprocess  # noqa: E402


def test_busy_registry_defers_qid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = edge_data.build_edge(tmp_path / "edge")
    monkeypatch.chdir(ds.root)
    plan = inprocess.compile_with_engines(ds.service).plan
    settings = DuckDBSettings(threads=1, memory_limit="1GB", temp_directory=str(tmp_path / "tmp"))
    day = ds.days[0]

    def run(out: Path):
        with inprocess.working_directory_imports():
            return run_skeleton_stage(plan, day, out, chunk_rows=100, duckdb_settings=settings, run_days=ds.days)

    free = run(tmp_path / "free")
    assert list(free.operator_seconds)[1] == "qid", "qid is numbered right after the spine"

    busy = tmp_path / "busy"
    reg = registry_path(busy)
    reg.parent.mkdir(parents=True)
    lock = FileLock(str(reg) + ".lock")
    lock.acquire()
    spine = sorted(str(f) for f in Path(plan.sources[plan.spine.params.source].path).rglob("*.parquet"))
    with pytest.raises(Busy):
        assign_qids(plan, ds.days, spine, busy, wait=False)
    result: list = []
    job = threading.Thread(target=lambda: result.append(run(busy)))
    job.start()
    time.sleep(3)
    assert job.is_alive(), "the day job did not wait for the registry"
    lock.release()
    job.join(120)
    assert result, "the day job did not finish once the registry was free"
    # The other operators were computed while it waited: qid came last.
    assert list(result[0].operator_seconds)[-1] == "qid"
    for name in sorted(os.listdir(tmp_path / "free" / f"dt={day}")):
        a = (tmp_path / "free" / f"dt={day}" / name).read_bytes()
        assert a == (busy / f"dt={day}" / name).read_bytes(), name
