"""What each rule's job computes, from its request (daedalus.job.JobRequest).

The same functions run in the job's own process (`run_here`, with the process's output in
the job's log) and in a thread of the run's warm worker (daedalus.worker, with a log of its
own per job): so every job writes its log, its day and its published record the same way
wherever it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daedalus.definitions import DuckDBSettings, RuntimeConfig
from daedalus.errors import DaedalusError
from daedalus.job import JobRequest
from daedalus.layout import Layout, write_record
from daedalus.loading import load_model
from daedalus.plan import Plan, load_plan
from daedalus.sizes import size_mb


class JobLog:
    """A job's log file: one timestamped line per message."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("")

    def info(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n"
        if self.path:
            with open(self.path, "a") as f:
                f.write(line)
        else:
            sys.stderr.write(line)


# Parsed plans and runtime configs by (path, size, mtime): the worker reads each once per run.
_CACHE: dict[tuple[str, str, int, int], Any] = {}
_CACHE_LOCK = threading.Lock()


def _cached(kind: str, path: str, load: Callable[[Path], Any]) -> Any:
    st = os.stat(path)
    key = (kind, os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    value = load(Path(path))
    with _CACHE_LOCK:
        _CACHE[key] = value
    return value


def plan_of(req: JobRequest) -> Plan:
    assert req.plan
    return _cached("plan", req.plan, load_plan)


def runtime_of(req: JobRequest) -> RuntimeConfig:
    assert req.runtime
    return _cached("runtime", req.runtime, lambda p: load_model(RuntimeConfig, p))


def run_days(runtime: RuntimeConfig, target_date: str | None) -> list[dt.date]:
    """The run's days (a new session gets its qid with every other new session of them)."""
    from daedalus.timeutil import day_range

    if target_date:
        return [dt.date.fromisoformat(target_date)]
    return day_range(runtime.start_date, runtime.end_date)


def day_rows(req: JobRequest) -> int | None:
    """Rows of the job's day, from parquet footers (None: not known cheaply)."""
    import pyarrow.parquet as pq

    if req.kind in ("qid_map", "state") or not req.day:
        return 0
    if req.kind == "skeleton":
        from daedalus.sources import SourceFiles

        plan = plan_of(req)
        spec = plan.sources[plan.spine.params.source]
        sf = SourceFiles.scan(spec.path)
        if not sf.partitioned:
            return None
        files = sf.select([dt.date.fromisoformat(req.day)], 0)
    else:
        d = Path(Layout.of(req.root).day_dir("skeleton", req.day))
        files = [str(p) for p in d.glob("part-*.parquet")]
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except Exception:  # an unreadable file: the job itself reports it
        return None


def is_small(req: JobRequest) -> bool:
    """A day the run's worker computes (and whose enrich step needs no Ray)."""
    if req.kind in ("qid_map", "state"):
        return True
    rows = day_rows(req)
    runtime = runtime_of(req)
    if req.kind == "skeleton" and runtime.small_day_rows > 0:
        return rows is not None and rows <= max(runtime.small_day_rows, runtime.skeleton.worker_day_rows)
    return rows is not None and rows <= runtime.small_day_rows


def job_duckdb(req: JobRequest, runtime: RuntimeConfig) -> DuckDBSettings:
    """A day or state job's DuckDB settings: concurrent jobs share DuckDB's memory limit as
    they share its threads."""
    workers = req.day_workers or runtime.day_workers
    return runtime.duckdb.model_copy(
        update={"memory_limit": f"{max(64, size_mb(runtime.duckdb.memory_limit) // workers)}MB"}
    )


def skeleton(req: JobRequest, log: JobLog) -> None:
    from daedalus.skeleton import run_skeleton_stage
    from daedalus.skeleton.labels import check_not_waiting

    plan, runtime = plan_of(req), runtime_of(req)
    assert req.day
    day = dt.date.fromisoformat(req.day)
    check_not_waiting(plan, day)  # such a day is no target; asked for by hand, it is not written
    settings = job_duckdb(req, runtime)
    res = run_skeleton_stage(
        plan,
        day,
        Path(req.root),
        chunk_rows=runtime.skeleton.chunk_rows,
        duckdb_settings=settings,
        threads=req.threads,
        run_days=run_days(runtime, req.target_date),
        incremental=runtime.skeleton.incremental,
    )
    write_record(req.record, Layout.of(req.root).day_dir("skeleton", req.day), digest=req.digest)
    log.info(f"skeleton dt={day} rows={res.rows} parts={res.parts} seconds={res.seconds:.2f}")
    log.info("operator seconds: " + json.dumps({k: round(v, 3) for k, v in res.operator_seconds.items()}))
    # Tests and `daeda pipeline status` read which operators ran (the others were kept).
    log.info("operators computed: " + json.dumps(res.computed))


def enrich(req: JobRequest, log: JobLog, *, direct: bool | None = None) -> None:
    from daedalus.enrich.stage import run_enrich_stage
    from daedalus.quality import stats_path

    plan, runtime = plan_of(req), runtime_of(req)
    assert req.day
    embeds = [op.params for op in plan.ops("embed")]
    stores = {(e.store_uri, e.key, e.vector) for e in embeds}
    if len(stores) != 1:
        raise DaedalusError(req.plan, "embed operators over more than one embedding store are not supported")
    first = embeds[0]
    address = os.environ.get("RAY_ADDRESS") or req.ray_address or runtime.ray.address
    layout = Layout.of(req.root)
    out_dir = Path(layout.day_dir("enrich", req.day))
    summary = run_enrich_stage(
        Path(layout.day_dir("skeleton", req.day)),
        out_dir,
        store_uri=first.store_uri,
        key=first.key,
        vector=first.vector,
        embeddings=[(e.embedding, e.ids) for e in embeds],
        shard_rows=runtime.enrich.shard_rows,
        batch_rows=runtime.enrich.batch_rows,
        ray_address=address,
        num_cpus=req.ray_num_cpus or runtime.ray.num_cpus or req.threads,
        object_store_memory=runtime.ray.object_store_bytes,
        stats_path=stats_path(layout.root, "enrich", req.day),
        direct_max_rows=runtime.small_day_rows if direct is None else (sys.maxsize if direct else -1),
    )
    write_record(req.record, out_dir, digest=req.digest)
    log.info(f"enrich dt={req.day} ray_address={address or 'local'} {json.dumps(summary, default=str)}")


def qid_map(req: JobRequest, log: JobLog) -> None:
    from daedalus.skeleton.qid import publish_qid_map

    assert req.session_field
    n = publish_qid_map(Path(req.root), req.session_field)
    write_record(req.record, Layout.of(req.root).qid_map)
    log.info(f"qid_map.parquet: {n} sessions")


def state(req: JobRequest, log: JobLog) -> None:
    """Every state of one source day (daedalus.skeleton.state), and its record."""
    from daedalus.skeleton import state as st
    from daedalus.skeleton.stage import scan_sources

    plan, runtime = plan_of(req), runtime_of(req)
    assert req.day and req.state_kind in st.KINDS, (req.day, req.state_kind)
    t0 = time.perf_counter()
    made = st.ensure_day(
        plan,
        req.state_kind,
        dt.date.fromisoformat(req.day),
        req.root,
        scan_sources(plan),
        settings=job_duckdb(req, runtime),
        record=req.record,
        # The snapshot chain starts at the run's first snapshot day (the day before its first day).
        floor=min(run_days(runtime, req.target_date)) - dt.timedelta(days=1),
        first_day=runtime.start_date,
    )
    log.info(f"state {req.state_kind} dt={req.day} files={len(made)} seconds={time.perf_counter() - t0:.2f}")


JOBS: dict[str, Callable[[JobRequest, JobLog], None]] = {
    "skeleton": skeleton,
    "enrich": enrich,
    "qid_map": qid_map,
    "state": state,
}


def failure_line(req: JobRequest, e: BaseException) -> str:
    msg = e.problem if isinstance(e, DaedalusError) else f"{type(e).__name__}: {e}"
    return f"daedalus job {req.rule} failed: {' '.join(str(msg).split())} (log: {req.log})"


def run_logged(req: JobRequest) -> tuple[int, str]:
    """Run the job with its log (the worker's way); (exit status, the line for stderr)."""
    log = JobLog(req.log)
    log.info(f"{req.rule} in the run's worker (pid {os.getpid()})")
    try:
        JOBS[req.kind](req, log)
        return 0, ""
    except Exception as e:
        log.info("job failed:\n" + traceback.format_exc())
        return 1, failure_line(req, e)


def run_here(req: JobRequest) -> int:
    """Run the job in this process, with the process's own output (DuckDB's and Ray's noise,
    a traceback) in the job's log; stderr gets one line naming the log when it fails."""
    log_path = req.log
    saved_out = saved_err = -1
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).write_text("")
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        saved_out, saved_err = os.dup(1), os.dup(2)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        log = JobLog(None)  # stderr is the log file now
        JOBS[req.kind](req, log)
        return 0
    except BaseException as e:
        traceback.print_exc()
        sys.stderr.flush()
        if log_path:
            os.dup2(saved_err, 2)
        print(failure_line(req, e), file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if log_path:
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
