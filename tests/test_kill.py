"""kill -9 anywhere: a killed `daeda pipeline train` never leaves a day a reader would take
for complete, and the next plain `train` finishes it byte-identical to a clean run.

A clean run (conftest's trained_template) gives the reference bytes and each stage's job duration. Then a chain of
trials on another copy: each trial starts `train` in its own session (`--skeleton-only` for
skeleton trials), waits until a job of the trial's stage (skeleton or enrich, alternating)
has started, sleeps a seeded random fraction of that stage's clean job duration, and
SIGKILLs the whole process group; the next trial resumes from whatever the kill left (when
a stage has nothing left to do, its outputs are deleted first, so every trial kills a job). A reader thread lists `dt=` directories of both
roots the whole time; every day it can read must be byte-identical to the clean one. No
trial may need `--rerun-incomplete` or `--unlock`, and no process of any trial (Ray heads and
the run's warm worker included) may outlive the test. Enrich trials make every day big (Ray
Data jobs); skeleton trials kill jobs running in the warm worker and in their own processes.
"""

from __future__ import annotations

import csv
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from projects import DAEDA, data_files, train

from daedalus.enrich.cluster import stop_recorded_head

pytestmark = [pytest.mark.e2e, pytest.mark.kill]

SEED = 20261128
# Two kills per stage in the suite (a warm-worker and an own-process skeleton job, two Ray
# Data enrich jobs); DAEDALUS_KILL_TRIALS=40 for a longer soak.
TRIALS = int(os.environ.get("DAEDALUS_KILL_TRIALS", "4"))
ROOT = "data/training_output"
ROOTS = (ROOT, ROOT + "_enriched")
STAGE_LOGS = {"skeleton": f"{ROOT}/.daedalus/logs/skeleton", "enrich": f"{ROOT}/.daedalus/logs/enrich"}
HEAD_RECORD = f"{ROOT}/.daedalus/ray-head.json"
DAYS = 3  # of the demo template


def stage_seconds(project: Path, stage: str) -> float:
    """How long one day job of `stage` took in a run (Snakemake's benchmark files): the
    smaller of wall and CPU time, so a reference run on a busy machine (wall >> CPU) does
    not make the kills land after the jobs they are meant for."""
    times = []
    for f in (project / ROOT / ".daedalus/benchmarks" / stage).glob("dt=*.tsv"):
        with f.open() as fh:
            times += [min(float(r["s"]), float(r["cpu_time"])) for r in csv.DictReader(fh, delimiter="\t")]
    assert times, stage
    return sum(times) / len(times)


def day_files(project: Path) -> dict[str, dict[str, str]]:
    """Per published day directory (both roots): {file name: sha256}."""
    out: dict[str, dict[str, str]] = {}
    for root in ROOTS:
        for rel, digest in data_files(project / root).items():
            if rel.startswith("dt="):
                day, name = rel.split("/", 1)
                out.setdefault(f"{root}/{day}", {})[name] = digest
    return out


class Reader(threading.Thread):
    """Lists `dt=*` under both roots, as a consumer would, and reads every day it sees."""

    def __init__(self, project: Path, clean: dict[str, dict[str, str]]):
        super().__init__(daemon=True)
        self.project, self.clean = project, clean
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.days_read = 0

    def check_once(self) -> None:
        import hashlib

        for root in ROOTS:
            base = self.project / root
            for d in sorted(base.glob("dt=*")) if base.is_dir() else []:
                key = f"{root}/{d.name}"
                try:
                    names = sorted(p.name for p in d.iterdir() if p.name.endswith(".parquet"))
                    seen = {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in names}
                except FileNotFoundError:
                    continue  # the day was being replaced: absent is fine, partial is not
                if seen != self.clean.get(key):
                    # Snakemake deletes an output it is about to rebuild (rmtree): a day on
                    # its way out may show fewer files for an instant. One still there
                    # moments later is a real partial day.
                    time.sleep(0.5)
                    if d.exists():
                        self.problems.append(
                            f"{key}: {sorted(seen)} is not the complete day {sorted(self.clean.get(key, {}))}"
                        )
                self.days_read += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.check_once()
            time.sleep(0.5)


def our_processes(project: Path, sessions: set[int]) -> list[psutil.Process]:
    """Processes of the trials: in one of their sessions, or working in the project (Ray heads)."""
    found = []
    for p in psutil.process_iter(["pid", "cwd"]):
        try:
            if os.getsid(p.pid) in sessions or (p.info["cwd"] or "").startswith(str(project)):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    # A zombie has exited already; reaping it is its parent's (or init's) business, and this
    # machine's init reaps late.
    return [p for p in found if p.pid != os.getpid() and _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pending(project: Path, stage: str) -> bool:
    """Whether some output of `stage` is still to be written (as far as a listing tells)."""
    root = project / (ROOT if stage == "skeleton" else ROOTS[1])
    have = {p.name for p in root.glob("dt=*")} if root.is_dir() else set()
    done = len(have) == DAYS and (stage != "skeleton" or (root / "qid_map.parquet").exists())
    return not done


def in_job(project: Path, stage: str, since: float) -> bool:
    """Whether a `stage` day job started since `since` has not logged its summary yet."""
    for f in (project / STAGE_LOGS[stage]).glob("dt=*.log"):
        try:
            if f.stat().st_mtime >= since and f"{stage} dt=" not in f.read_text(errors="replace"):
                return True
        except FileNotFoundError:
            continue
    return False


def wait_for_job(project: Path, stage: str, since: float, proc: subprocess.Popen, timeout: float = 300) -> bool:
    """True once a `stage` day job has started (its log was (re)written) since `since`."""
    logs = project / STAGE_LOGS[stage]
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if logs.is_dir() and any(f.stat().st_mtime >= since for f in logs.glob("dt=*.log")):
            return True
        time.sleep(0.05)
    return False


def set_small_day_rows(project: Path, rows: int | None) -> None:
    rt = project / "config/training/runtime.yaml"
    text = re.sub(r"(?m)^small_day_rows:.*\n", "", rt.read_text())
    rt.write_text(text + (f"small_day_rows: {rows}\n" if rows is not None else ""))


def published(project: Path) -> dict[str, str]:
    return {f"{root}/{rel}": digest for root in ROOTS for rel, digest in data_files(project / root).items()}


def test_kill_9_anywhere_then_rerun_matches_a_clean_run(demo_template, trained_template, tmp_path):
    ref = trained_template  # the clean run
    clean = published(ref)
    clean_days = day_files(ref)
    job_s = {s: stage_seconds(ref, s) for s in STAGE_LOGS}
    project = tmp_path / "killed"
    shutil.copytree(demo_template, project, symlinks=True)

    rng = random.Random(SEED)
    reader = Reader(project, clean_days)
    reader.start()
    sessions: set[int] = set()
    trials: list[tuple[str, float, bool, bool]] = []
    stale_heads = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for i in range(TRIALS):
            stage = ("skeleton", "enrich")[i % 2]
            delay = rng.random() * job_s[stage]
            if not pending(project, stage):  # give the trial something to kill: start that stage over
                for root in ROOTS if stage == "skeleton" else ROOTS[1:]:
                    shutil.rmtree(project / root, ignore_errors=True)
            # A skeleton trial need not pay for the Ray head (and its dry run) it would not use.
            args = ["--skeleton-only"] if stage == "skeleton" else []
            # Enrich trials kill Ray Data jobs (every day big); skeleton trials kill day jobs in
            # the run's warm worker and, every other time, in a process of their own.
            set_small_day_rows(project, 0 if stage == "enrich" or i % 4 == 2 else None)
            since = time.time()
            with (tmp_path / f"trial-{i}.log").open("w") as log:
                proc = subprocess.Popen(
                    DAEDA + ["pipeline", "train", "dssm_ranking", *args],
                    cwd=project,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            sessions.add(proc.pid)
            hit = wait_for_job(project, stage, since, proc)
            if hit:
                time.sleep(delay)
            finished = proc.poll() is not None
            inside = in_job(project, stage, since)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            assert not finished or proc.returncode == 0, (tmp_path / f"trial-{i}.log").read_text()
            # (stage, delay, killed during that stage's part of the run, inside one of its jobs)
            trials.append((stage, round(delay, 2), hit and not finished, inside))
            # train runs Snakemake with --nolock: no lock file is left to block the next run.
            assert not list((project / ".snakemake/locks").glob("*")), "a stale Snakemake lock"
            stale_heads += (project / HEAD_RECORD).exists()
            reader.check_once()

        # The next ordinary run finishes the job: no --rerun-incomplete, no --unlock.
        res = train(project)
        assert "done" in res.stderr
    finally:
        reader.stop.set()
        reader.join()
        leftovers = our_processes(project, sessions)
        for p in leftovers:
            try:
                p.kill()
            except psutil.Error:
                pass
        stop_recorded_head(project / HEAD_RECORD)

    kills = {s: sum(1 for st, _, k, _ in trials if k and st == s) for s in STAGE_LOGS}
    print(
        f"trials={trials} kills={kills} stale ray heads stopped by the next run={stale_heads} "
        f"reader looked at {reader.days_read} days"
    )
    assert not reader.problems, reader.problems[:5]
    # A kill that lands after the job ended is no kill inside a job; most must land inside.
    assert kills["skeleton"] >= 1 and kills["enrich"] >= 1 and sum(kills.values()) >= TRIALS // 2, trials
    assert not leftovers, [(p.pid, p.name()) for p in leftovers]
    assert stale_heads >= 1 and not (project / HEAD_RECORD).exists()
    final = published(project)
    assert final == clean
    assert any(k.endswith("qid_map.parquet") for k in final)
