"""What the Snakemake workflow needs from Daedalus, and what its jobs call.

The Snakefile stays thin: it asks `load_workflow(config)` for the days and each job's
inputs, and its scripts call `skeleton_job(snakemake)`. `daeda pipeline train` and plain
`snakemake` therefore build the same DAG and run the same code.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from daedalus.compile import Compiled, compile_service
from daedalus.definitions import RuntimeConfig
from daedalus.errors import DaedalusError
from daedalus.layout import Layout, write_record
from daedalus.loading import DefinitionPaths, load_model
from daedalus.sizes import size_mb
from daedalus.skeleton.qid import registry_path
from daedalus.sources import SourceFiles

STAGES = ("all", "skeleton", "enrich")


@dataclass(frozen=True)
class WorkflowConfig:
    """The Snakemake config keys Daedalus reads (`--config key=value` or config/config.yaml)."""

    service: str = "dssm_ranking"
    feature_views_dir: str = "feature_views"
    feature_services_dir: str = "feature_services"
    runtime_config_path: str = "config/training/runtime.yaml"
    aggregation_config_path: str = "config/training/aggregations.yaml"
    output_root: str | None = None
    target_date: str | None = None
    day_workers: int | None = None
    ray_num_cpus: int | None = None
    ray_address: str | None = None
    stage: str = "all"  # all | skeleton | enrich (which rules the Snakefile defines)

    @classmethod
    def from_mapping(cls, config: dict[str, Any]) -> "WorkflowConfig":
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in (config or {}).items() if k in known and v not in (None, "")}
        for k in ("day_workers", "ray_num_cpus"):
            if k in values:
                values[k] = int(values[k])
        if "target_date" in values:
            values["target_date"] = str(values["target_date"])
        return cls(**values)

    @property
    def paths(self) -> DefinitionPaths:
        return DefinitionPaths(Path(self.feature_views_dir), Path(self.feature_services_dir),
                               Path(self.runtime_config_path), Path(self.aggregation_config_path))


def _key(sid: str) -> str:
    return "src_" + re.sub(r"\W", "_", sid)


@dataclass
class Workflow:
    config: WorkflowConfig
    compiled: Compiled
    runtime: RuntimeConfig
    _scans: dict[str, SourceFiles] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return Layout.of(self.config.output_root or self.runtime.output_root)

    @property
    def root(self) -> str:
        return self.layout.root

    @property
    def enriched_root(self) -> str:
        return self.layout.enriched_root

    @property
    def days(self) -> list[str]:
        return [d.isoformat() for d in self.compiled.days]

    @property
    def plan_path(self) -> str:
        return self.compiled.plan_path.as_posix()

    @property
    def day_workers(self) -> int:
        return self.config.day_workers or self.runtime.day_workers

    @property
    def job_threads(self) -> int:
        """DuckDB threads of one day job: the configured threads shared by the concurrent days."""
        return max(1, self.runtime.duckdb.threads // self.day_workers)

    @property
    def job_mem_mb(self) -> int:
        """Memory a day job may use: DuckDB's limit shared by the concurrent days, plus headroom."""
        return size_mb(self.runtime.duckdb.memory_limit) // self.day_workers + 512

    @property
    def has_sessions(self) -> bool:
        return bool(self.compiled.plan.op("spine").typed_params().session_field)

    @property
    def state_dir(self) -> str:
        return self.layout.state_dir

    def scan(self, sid: str) -> SourceFiles:
        if sid not in self._scans:
            self._scans[sid] = SourceFiles.scan(self.compiled.plan.sources[sid].path)
        return self._scans[sid]

    def skeleton_inputs(self, day: str) -> dict[str, list[str]]:
        """Per source, exactly the files the day job reads: partitions day-lookback..day."""
        d = dt.date.fromisoformat(day)
        return {_key(sid): self.scan(sid).for_day(d, spec.lookback_days)
                for sid, spec in self.compiled.plan.sources.items()}

    def source_keys(self) -> dict[str, str]:
        return {_key(sid): sid for sid in self.compiled.plan.sources}

    @cached_property
    def skeleton_targets(self) -> list[str]:
        """The published records of the skeleton days (what Snakemake tracks; daedalus.layout)."""
        return [self.layout.record("skeleton", d) for d in self.days]

    @property
    def qid_map_targets(self) -> list[str]:
        return [self.layout.qid_map_record] if self.has_sessions else []

    @property
    def stage(self) -> str:
        return self.config.stage

    @property
    def has_embeddings(self) -> bool:
        return bool(self.compiled.plan.ops("embed"))

    @property
    def enrich_targets(self) -> list[str]:
        return [self.layout.record("enrich", d) for d in self.days] if self.has_embeddings else []

    @cached_property
    def enrich_digest(self) -> str:
        from daedalus.compile import enrich_digest_of

        return enrich_digest_of(self.compiled.plan)

    @property
    def enrich_mem_mb(self) -> int:
        return 4096


def load_workflow(config: dict[str, Any]) -> Workflow:
    """Compile the service (writing the plan only if it changed) for the Snakefile."""
    wc = WorkflowConfig.from_mapping(config)
    target = dt.date.fromisoformat(wc.target_date) if wc.target_date else None
    compiled = compile_service(wc.service, wc.paths, output_root=wc.output_root, target_date=target)
    runtime = load_model(RuntimeConfig, wc.paths.runtime_config_path)
    wf = Workflow(wc, compiled, runtime)
    # A day directory removed (or changed) by hand since its job recorded it: forget the
    # record, so that Snakemake sees the day's output missing and does it again.
    wf.layout.forget_unpublished(wf.days)
    return wf


def object_store_bytes(runtime: RuntimeConfig) -> int | None:
    """runtime.yaml's ray.object_store_memory in bytes (None: Ray's default as Daedalus sets it)."""
    mem = runtime.ray.object_store_memory
    return size_mb(mem) * 1024 * 1024 if mem else None


def run_days_of(runtime: RuntimeConfig, target_date: str | None) -> list[dt.date]:
    from daedalus.timeutil import day_range

    if target_date:
        return [dt.date.fromisoformat(target_date)]
    return day_range(runtime.start_date, runtime.end_date)


# ---- job entry points (called by scripts/*.py with Snakemake's `snakemake` object) ----

def _job_logger(log_path: str | None) -> logging.Logger:
    logger = logging.getLogger("daedalus.job")
    logger.setLevel(logging.INFO)
    handler: logging.Handler = logging.FileHandler(log_path, mode="a") if log_path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.handlers = [handler]
    return logger


def run_job(fn: Any, smk: Any) -> None:
    """Run a job entry point with its output in the rule's log file.

    Library noise (DuckDB, Ray) and a failure's traceback go to the log; stderr gets one
    line naming the log, so a failed day is easy to find.
    """
    log_path = smk.log[0] if smk.log else None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).write_text("")
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        saved_out, saved_err = os.dup(1), os.dup(2)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    try:
        fn(smk)
    except BaseException as e:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        if log_path:
            os.dup2(saved_err, 2)
        msg = e.problem if isinstance(e, DaedalusError) else f"{type(e).__name__}: {e}"
        print(f"daedalus job {smk.rule} failed: {' '.join(str(msg).split())} (log: {log_path})", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if log_path:
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)


def skeleton_job(smk: Any) -> None:
    from daedalus.plan import load_plan
    from daedalus.skeleton import run_skeleton_stage

    log = _job_logger(smk.log[0] if smk.log else None)
    plan = load_plan(Path(smk.params.plan))
    runtime = load_model(RuntimeConfig, Path(smk.params.runtime))
    keys: dict[str, str] = smk.params.source_keys
    files = {sid: list(smk.input[key]) if key in smk.input.keys() else [] for key, sid in keys.items()}
    day = dt.date.fromisoformat(smk.wildcards.day)
    # The run's days come from the config, not from params: extending the range must not
    # change the params (and so rerun) of the days already written.
    wc = WorkflowConfig.from_mapping(dict(smk.config))
    run_days = run_days_of(runtime, wc.target_date)
    # Concurrent days share DuckDB's memory limit as they share its threads.
    workers = wc.day_workers or runtime.day_workers
    settings = runtime.duckdb.model_copy(update={"memory_limit": f"{max(64, size_mb(runtime.duckdb.memory_limit) // workers)}MB"})
    res = run_skeleton_stage(plan, day, Path(smk.params.root), chunk_rows=runtime.skeleton.chunk_rows,
                             duckdb_settings=settings, threads=smk.threads, files=files, run_days=run_days)
    write_record(smk.output[0], Layout.of(smk.params.root).day_dir("skeleton", day.isoformat()), digest=smk.params.digest)
    log.info("skeleton dt=%s rows=%d parts=%d seconds=%.2f", day, res.rows, res.parts, res.seconds)
    log.info("operator seconds: %s", json.dumps({k: round(v, 3) for k, v in res.operator_seconds.items()}))


def enrich_job(smk: Any) -> None:
    from daedalus.enrich.stage import run_enrich_stage
    from daedalus.plan import load_plan
    from daedalus.quality import stats_path

    log = _job_logger(smk.log[0] if smk.log else None)
    plan = load_plan(Path(smk.params.plan))
    runtime = load_model(RuntimeConfig, Path(smk.params.runtime))
    wc = WorkflowConfig.from_mapping(dict(smk.config))
    embeds = [op.typed_params() for op in plan.ops("embed")]
    first = embeds[0]
    address = os.environ.get("RAY_ADDRESS") or wc.ray_address or runtime.ray.address
    layout = Layout.of(smk.params.root)
    day = smk.wildcards.day
    skeleton_dir, out_dir = Path(layout.day_dir("skeleton", day)), Path(layout.day_dir("enrich", day))
    summary = run_enrich_stage(
        skeleton_dir, out_dir,
        store_uri=first.store_uri, key=first.key, vector=first.vector,
        embeddings=[(e.embedding, e.ids) for e in embeds],
        shard_rows=runtime.enrich.shard_rows, batch_rows=runtime.enrich.batch_rows,
        ray_address=address, num_cpus=wc.ray_num_cpus or runtime.ray.num_cpus or smk.threads,
        object_store_memory=object_store_bytes(runtime),
        stats_path=stats_path(layout.root, "enrich", day),
    )
    write_record(smk.output[0], out_dir, digest=smk.params.digest)
    log.info("enrich dt=%s ray_address=%s %s", smk.wildcards.day, address or "local", json.dumps(summary, default=str))


def qid_map_job(smk: Any) -> None:
    from daedalus.skeleton.qid import publish_qid_map

    log = _job_logger(smk.log[0] if smk.log else None)
    n = publish_qid_map(Path(smk.params.root), smk.params.session_field)
    write_record(smk.output[0], Layout.of(smk.params.root).qid_map)
    log.info("qid_map.parquet: %d sessions", n)


__all__ = ["Workflow", "WorkflowConfig", "load_workflow", "skeleton_job", "enrich_job", "qid_map_job",
           "registry_path", "STAGES"]
