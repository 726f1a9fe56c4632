"""The command every rule runs (`scripts/job.py KIND ...`): one day job, as cheaply as possible.

Only the standard library is imported here. When `daeda pipeline train` runs a local workflow
it starts one warm worker process for the run (daedalus.worker) and names its socket in
`DAEDALUS_WORKER`: a job then costs a connection and a JSON line, and the worker, which has
DuckDB, pyarrow, Lance and the embedding store loaded already, computes a small day in a
thread. Everywhere else (plain `snakemake`, a Slurm node, a worker that is gone, a day too big
for the worker) the job runs in this process (daedalus.jobs.run_here). Both run the same code
and give the same bytes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import socket
import sys
import time
from dataclasses import asdict, dataclass, fields

KINDS = ("skeleton", "enrich", "qid_map", "state")
RULES = {"skeleton": "skeleton_day", "enrich": "enrich_day", "qid_map": "qid_map", "state": "state"}
WORKER_ENV = "DAEDALUS_WORKER"  # the workers' directory (daedalus.worker)
WORKER_COUNT_ENV = "DAEDALUS_WORKERS"  # how many there are
WORKER_PID_ENV = "DAEDALUS_WORKER_PIDS"  # their processes, to stop waiting when they are gone
WAIT_FOR_WORKER_S = 60.0  # a worker binds its socket once warm (a few seconds)


@dataclass(frozen=True)
class JobRequest:
    """One job, as its rule's command line gives it."""

    kind: str
    root: str
    record: str
    log: str | None = None
    day: str | None = None
    plan: str | None = None
    runtime: str | None = None
    digest: str = ""
    threads: int = 1
    day_workers: int | None = None
    target_date: str | None = None
    ray_num_cpus: int | None = None
    ray_address: str | None = None
    session_field: str | None = None
    state_kind: str | None = None  # a state job's kind: partials | snapshot (daedalus.skeleton.state)

    @property
    def rule(self) -> str:
        return RULES[self.kind]


# Where daedalus.layout puts the jobs' outputs under an output root: the published records,
# and the state files (daedalus.skeleton.state.state_path).
PUBLISHED = "/.daedalus/published/"
STATE = "/.daedalus/state/"
RECORD_NAMES = {
    "skeleton": (PUBLISHED, r"skeleton/dt=[^/]+\.json"),
    "enrich": (PUBLISHED, r"enrich/dt=[^/]+\.json"),
    "qid_map": (PUBLISHED, r"qid_map\.json"),
    "state": (STATE, r"records/(partials|snapshot)/dt=[^/]+\.json"),
}


def root_of_record(kind: str, record: str) -> str | None:
    """The output root a job's published record lies under (the inverse of daedalus.layout's
    Layout.record and Layout.qid_map_record), or None when the path is not such a record.

    The rules pass only the record (their output): a param that is a prefix of a rule's
    output is what Snakemake's linter warns about, and the root follows from the record.
    """
    marker, pattern = RECORD_NAMES[kind]
    head, sep, tail = ("/" + record).rpartition(marker)
    if not sep or not re.fullmatch(pattern, tail):
        return None
    return head[1:] or "."


def parse(argv: list[str]) -> JobRequest:
    p = argparse.ArgumentParser(prog="job.py", description="Run one Daedalus day job (what the rules run).")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--day")
    p.add_argument("--record", required=True)
    p.add_argument("--root", help="the output root (default: the one the --record path lies under)")
    for name in ("log", "plan", "runtime", "target-date", "ray-address", "session-field", "state-kind"):
        p.add_argument(f"--{name}")
    p.add_argument("--digest", default="")
    for name in ("threads", "day-workers", "ray-num-cpus"):
        p.add_argument(f"--{name}", type=int)
    a = vars(p.parse_args(argv))
    if not a["root"]:
        a["root"] = root_of_record(a["kind"], a["record"])
        if a["root"] is None:
            p.error(f"--record {a['record']}: not a published {a['kind']} record under an output root; pass --root")
    known = {f.name for f in fields(JobRequest)}
    values = {k: v for k, v in a.items() if k in known and v not in (None, "")}
    return JobRequest(**values)


def _alive(pids: list[str]) -> bool:
    for pid in pids:
        try:
            os.kill(int(pid), 0)
            return True
        except (OSError, ValueError):
            continue
    return not pids


def _talk(sock_path: str, req: JobRequest) -> dict | None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock_path)
            s.sendall((json.dumps(asdict(req)) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    return None  # the worker went away mid-job: the job is atomic, do it here
                data += chunk
    except OSError:
        return None
    answer = json.loads(data)
    return None if answer.get("run_here") else answer


def ask_worker(directory: str, req: JobRequest) -> dict | None:
    """A free worker's answer for this job, or None: run it here (no worker is warm and free,
    or it declined the day)."""
    count = int(os.environ.get(WORKER_COUNT_ENV) or 1)
    pids = (os.environ.get(WORKER_PID_ENV) or "").split()
    socks = [os.path.join(directory, f"worker-{i}.sock") for i in range(count)]
    deadline = time.monotonic() + WAIT_FOR_WORKER_S
    while not all(os.path.exists(s) for s in socks):
        if time.monotonic() > deadline or not _alive(pids):
            break
        time.sleep(0.02)
    for sock_path in socks:
        if not os.path.exists(sock_path):
            continue
        with open(sock_path + ".lock", "a") as lock:
            try:  # one job per worker at a time; the kernel frees it if this process is killed
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            return _talk(sock_path, req)
    return None


def main(argv: list[str] | None = None) -> int:
    req = parse(sys.argv[1:] if argv is None else argv)
    path = os.environ.get(WORKER_ENV)
    if path:
        answer = ask_worker(path, req)
        if answer is not None:
            if answer.get("message"):
                print(answer["message"], file=sys.stderr)
            return int(answer["rc"])
    from daedalus.jobs import run_here

    return run_here(req)


if __name__ == "__main__":
    sys.exit(main())
