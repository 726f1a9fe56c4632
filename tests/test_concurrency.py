"""Two `train`s at once: on one output root the second refuses in one line; on two roots in
the same working directory both succeed (and agree byte for byte)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from projects import DAEDA, data_files, train

pytestmark = pytest.mark.e2e

ROOT = "data/training_output"
OTHER = "data/other_output"


def start(project: Path, log: Path, *args: str) -> subprocess.Popen:
    with log.open("w") as fh:
        return subprocess.Popen(
            DAEDA + ["pipeline", "train", "dssm_ranking", "--skeleton-only", *args],
            cwd=project,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def wait_started(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Until the run has its lock (it prints its header line right after taking it)."""
    end = time.monotonic() + timeout
    while "day(s)" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < end, "the first train did not start"
        time.sleep(0.1)


def test_same_root_refused_other_root_side_by_side(project, tmp_path):
    a_log, c_log = tmp_path / "a.log", tmp_path / "c.log"
    a = start(project, a_log)
    c = start(project, c_log, "--output-root", OTHER)
    try:
        wait_started(a, a_log)
        b = train(project, "--skeleton-only", check=False)
        lines = b.stderr.splitlines()
        assert b.returncode == 2 and len(lines) == 1, b.stderr
        assert lines[0].startswith(f"daeda: error: {ROOT}/.daedalus/train.lock: held by a running"), b.stderr
        assert a.poll() is None, "the refused run must not have waited for the first one"
        assert a.wait(timeout=600) == 0, a_log.read_text()
        assert c.wait(timeout=600) == 0, c_log.read_text()
    finally:
        for p in (a, c):
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    first, other = data_files(project / ROOT), data_files(project / OTHER)
    assert first == other and any(k.endswith("part-0-0.parquet") for k in first)
    # The refused run touched nothing, and the lock is free again: the next run is a no-op.
    res = train(project, "--skeleton-only")
    assert "nothing to do" in res.stderr
