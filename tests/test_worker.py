"""The run's warm worker (daedalus.worker) and the job command (daedalus.job).

`daeda pipeline train` runs small days in one warm process and the rest each in a process
of its own (enrich through Ray Data); plain `snakemake` runs every job in its own process.
All of these give the same bytes: tests/test_quickstart.py compares train with plain
snakemake, and here a run with every day big (`small_day_rows: 0`) is compared with the
template's, where every day is small.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from projects import data_files, train

from daedalus.job import JobRequest, ask_worker, parse

pytestmark = pytest.mark.e2e

ROOT = "data/training_output"
DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]


def logs(project: Path, stage: str) -> dict[str, str]:
    return {d: (project / ROOT / f".daedalus/logs/{stage}/dt={d}.log").read_text() for d in DAYS}


def test_small_days_run_in_the_worker_big_days_in_their_own_process(trained_template: Path, tmp_path: Path) -> None:
    small = logs(trained_template, "skeleton")
    assert all("in the run's worker" in text for text in small.values()), small
    assert all('"ray": "direct"' in text for text in logs(trained_template, "enrich").values())

    project = tmp_path / "big"
    shutil.copytree(trained_template, project, symlinks=True)
    for sub in (ROOT, ROOT + "_enriched", ".snakemake"):
        shutil.rmtree(project / sub)
    rt = project / "config/training/runtime.yaml"
    rt.write_text(rt.read_text() + "small_day_rows: 0\n")
    res = train(project)
    assert "ray head for this run" in res.stderr, res.stderr
    big = logs(project, "skeleton")
    assert not any("in the run's worker" in text for text in big.values()), big
    assert all(re.search(r'"ray": "(attached|started)"', t) for t in logs(project, "enrich").values())
    for sub in (ROOT, ROOT + "_enriched"):
        assert data_files(project / sub) == data_files(trained_template / sub), sub


def test_a_job_without_a_reachable_worker_runs_in_its_own_process(tmp_path: Path) -> None:
    req = parse(["qid_map", "--root", "r", "--record", "x.json", "--session-field", "s"])
    assert req == JobRequest(kind="qid_map", root="r", record="x.json", session_field="s")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.environ["DAEDALUS_WORKER_PIDS"] = str(dead.pid)
    try:
        t0 = time.monotonic()
        assert ask_worker(str(tmp_path), req) is None  # its worker is gone: no wait
        assert time.monotonic() - t0 < 5
    finally:
        del os.environ["DAEDALUS_WORKER_PIDS"]
