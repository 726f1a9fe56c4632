"""The run's warm worker: small day jobs without a process start, imports or Ray per job.

`daeda pipeline train` (local executor) starts one worker before Snakemake and stops it at
the end; it is in train's process group, so a killed run takes it along. The worker imports
DuckDB, pyarrow, Lance and the stages once, then listens on a Unix socket (in a private
temporary directory, named in the jobs' environment as `DAEDALUS_WORKER`). Each rule's
command (`scripts/job.py`, daedalus.job) sends its request as one JSON line; the worker
answers `{"run_here": true}` for a day bigger than `small_day_rows` (that job then runs in
its own process, and its enrich step through Ray Data), or computes the day in a thread and
answers `{"rc": 0|1, "message": "..."}`. Plans, runtime configs and the pinned embedding
store are read once per run and reused by every day.

Jobs in the worker are the same functions as in a job's own process (daedalus.jobs): the
same day directory swapped in place, the same published record, the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from daedalus.job import WORKER_ENV, WORKER_PID_ENV, JobRequest

SOCKET_NAME = "worker.sock"
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


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(directory: str) -> None:
    """Warm up, then answer jobs on `<directory>/worker.sock` until terminated."""
    _warm()
    path = os.path.join(directory, SOCKET_NAME)
    tmp = path + ".tmp"
    server = _Server(tmp, _Handler)
    os.replace(tmp, path)  # the socket appears only once the worker is warm

    def stop(*_: object) -> None:
        try:
            os.unlink(path)  # no new job reaches a worker on its way out
        finally:
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


@dataclass
class Worker:
    """A running worker (in the caller's process group) and the environment jobs need."""

    process: subprocess.Popen
    directory: str
    log_path: Path  # where the worker's own output goes, if it wrote any (kept out of no-op runs)

    @property
    def env(self) -> dict[str, str]:
        return {WORKER_ENV: os.path.join(self.directory, SOCKET_NAME), WORKER_PID_ENV: str(self.process.pid)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        own = Path(self.directory) / "worker.log"
        # Each job logs to its own file; the worker's output is library noise or a crash.
        # Only that is kept, so a run with nothing to do writes nothing under the output root.
        if own.exists() and own.stat().st_size:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(own, self.log_path)
        shutil.rmtree(self.directory, ignore_errors=True)


def _remove_stale() -> None:
    """Directories of workers that were killed (their process is gone)."""
    base = Path(tempfile.gettempdir())
    for d in base.glob(PREFIX + "*"):
        try:
            pid = int((d / "pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            if time.time() - d.stat().st_mtime > 60:  # not one being started right now
                shutil.rmtree(d, ignore_errors=True)


def start(log_path: str | Path) -> Worker:
    """Start a worker; returns at once (jobs wait for its socket while it warms up)."""
    _remove_stale()
    directory = tempfile.mkdtemp(prefix=PREFIX)  # 0700: only this user can submit jobs
    with open(Path(directory) / "worker.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "daedalus.worker", directory], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    (Path(directory) / "pid").write_text(str(proc.pid))
    return Worker(proc, directory, Path(log_path))


if __name__ == "__main__":
    serve(sys.argv[1])
