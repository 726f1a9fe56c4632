"""The run's warm workers: small day jobs without a process start, imports or Ray per job.

`daeda pipeline train` (local executor) starts one worker process per day worker before
Snakemake and stops them at the end; they are in train's process group, so a killed run
takes them along. A worker imports DuckDB, pyarrow, Lance and the stages once, then listens
on its Unix socket `worker-<i>.sock` in a private temporary directory (named in the jobs'
environment as `DAEDALUS_WORKER`). A job (daedalus.job) takes the first free worker (an
flock on `worker-<i>.lock`, released by the kernel if the job is killed) and sends its
request as one JSON line. The worker answers `{"run_here": true}` for a day bigger than
`small_day_rows` (that job then runs in its own process, and its enrich step through Ray
Data), or computes the day and answers `{"rc": 0|1, "message": "..."}`. One job at a time
per worker, so concurrent days run in separate processes, as they would without workers.
Plans, runtime configs and the pinned embedding store are read once per worker.

Jobs in a worker are the same functions as in a job's own process (daedalus.jobs): the same
day directory swapped in place, the same published record, the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from daedalus.job import WORKER_COUNT_ENV, WORKER_ENV, WORKER_PID_ENV, JobRequest

PREFIX = "daeda-worker-"


def _warm() -> None:
    """Everything a small day job imports, loaded (and DuckDB started) once."""
    import duckdb
    import lance  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow.compute  # noqa: F401 (UDFs commonly use it)
    import pyarrow.parquet  # noqa: F401

    import daedalus.enrich.stage  # noqa: F401
    import daedalus.jobs  # noqa: F401
    import daedalus.skeleton.stage  # noqa: F401

    duckdb.connect().execute("SELECT 1").fetchall()


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        from daedalus import jobs

        try:
            req = JobRequest(**json.loads(self.rfile.readline()))
            if not jobs.is_small(req):
                answer: dict = {"run_here": True}
            else:
                rc, message = jobs.run_logged(req)
                answer = {"rc": rc, "message": message}
        except Exception as e:  # a request the worker cannot take: its own process will say why
            answer = {"run_here": True, "why": f"{type(e).__name__}: {e}"}
        try:
            self.wfile.write((json.dumps(answer) + "\n").encode())
        except OSError:
            pass  # the job's process is gone (killed): the day is published or not, whole


def serve(directory: str, index: int) -> None:
    """Warm up, then answer jobs on `<directory>/worker-<index>.sock` until terminated."""
    _warm()
    path = os.path.join(directory, f"worker-{index}.sock")
    tmp = path + ".tmp"
    server = socketserver.UnixStreamServer(tmp, _Handler)
    os.replace(tmp, path)  # the socket appears only once the worker is warm

    def stop(*_: object) -> None:
        try:
            os.unlink(path)  # no new job reaches a worker on its way out
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


@dataclass
class Workers:
    """Running workers (in the caller's process group) and the environment jobs need."""

    processes: list[subprocess.Popen]
    directory: str
    log_path: Path  # where the workers' own output goes, if they wrote any (kept out of no-op runs)
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # Each job logs to its own file; a worker's output is library noise or a crash.
        # Only that is kept, so a run with nothing to do writes nothing under the output root.
        text = "".join(f.read_text(errors="replace") for f in sorted(Path(self.directory).glob("worker-*.log")))
        if text:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text(text)
        shutil.rmtree(self.directory, ignore_errors=True)


def _remove_stale() -> None:
    """Directories of workers that were killed (their processes are gone)."""
    for d in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            pids = [int(x) for x in (d / "pids").read_text().split()]
        except (OSError, ValueError):
            pids = []
        alive = False
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive = True
            except OSError:
                pass
        if not alive and time.time() - d.stat().st_mtime > 60:  # not one being started right now
            shutil.rmtree(d, ignore_errors=True)


def start(count: int, log_path: str | Path) -> Workers:
    """Start `count` workers; returns at once (jobs wait for their sockets while they warm up)."""
    _remove_stale()
    directory = tempfile.mkdtemp(prefix=PREFIX)  # 0700: only this user can submit jobs
    procs = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i in range(max(1, count)):
        with open(Path(directory) / f"worker-{i}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "daedalus.worker", directory, str(i)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    pids = " ".join(str(p.pid) for p in procs)
    (Path(directory) / "pids").write_text(pids)
    job_env = {WORKER_ENV: directory, WORKER_COUNT_ENV: str(len(procs)), WORKER_PID_ENV: pids}
    return Workers(procs, directory, Path(log_path), job_env)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
