"""What the Snakemake workflow needs from Daedalus, and what its jobs call.

The Snakefile stays thin: it asks `load_workflow(config)` for the days and each job's
inputs, and its rules' commands call the job command `job_shell_prefix` defines
(scripts/job.py, daedalus.job). `daeda pipeline train` and plain `snakemake` therefore build
the same DAG and run the same code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from daedalus.compile import Compiled, compile_service
from daedalus.definitions import RuntimeConfig
from daedalus.layout import Layout
from daedalus.loading import DefinitionPaths, load_model
from daedalus.sizes import size_mb
from daedalus.skeleton import state
from daedalus.skeleton.qid import registry_path
from daedalus.skeleton.state import StateSpec
from daedalus.sources import SourceFiles

STAGES = ("all", "skeleton", "enrich")
JOB_FUNCTION = "daedalus_job"  # the shell function every rule's command calls (Workflow.job_shell_prefix)


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
    def from_mapping(cls, config: dict[str, Any]) -> WorkflowConfig:
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
        return DefinitionPaths(
            Path(self.feature_views_dir),
            Path(self.feature_services_dir),
            Path(self.runtime_config_path),
            Path(self.aggregation_config_path),
        )


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
    def ready_days(self) -> list[str]:
        """The days the run writes: every day but those waiting for label data (their
        label windows reach past the data: daedalus.skeleton.labels), which are no target."""
        return [d.isoformat() for d in self.compiled.ready_days]

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
        return bool(self.compiled.plan.spine.params.session_field)

    @property
    def state_dir(self) -> str:
        return self.layout.state_dir

    def scan(self, sid: str) -> SourceFiles:
        if sid not in self._scans:
            self._scans[sid] = SourceFiles.scan(self.compiled.plan.sources[sid].path)
        return self._scans[sid]

    def skeleton_inputs(self, day: str) -> dict[str, Any]:
        """Per source, the files of the day's look-back (partitions day-lookback..day), and the
        records of the state jobs whose files the day job reads instead of most of them.

        No input is `ancient`: Snakemake does not check the own reasons (params, newer input)
        of a job downstream of one that reruns, so an ancient edge would hide them. Each state
        job's inputs are exactly the partitions its files stand for, so a changed partition
        reruns the state jobs and, through them, the days that read it, as it reruns the
        days whose look-back holds it.
        """
        d = dt.date.fromisoformat(day)
        inputs: dict[str, Any] = {
            _key(sid): self.scan(sid).for_day(d, spec.lookback_days, self.compiled.plan.lookahead_days(sid))
            for sid, spec in self.compiled.plan.sources.items()
        }
        if self.state_specs:
            inputs["state"] = self.day_state_records(d)
        return inputs

    @cached_property
    def state_specs(self) -> dict[str, StateSpec]:
        """By key, the per-source-day state of the plan's operators over day-partitioned sources."""
        if not self.runtime.skeleton.incremental:
            return {}
        plan = self.compiled.plan
        return {s.key: s for s in state.specs(plan).values() if self.scan(s.source).partitioned}

    def day_state_records(self, day: dt.date) -> list[str]:
        """The records of the state jobs whose files a day-`day` job reads: per kind, the
        source days its operators' states stand for."""
        plan = self.compiled.plan
        need: set[tuple[str, dt.date]] = set()
        for spec in self.state_specs.values():
            days = state.state_days(plan, spec, self.scan(spec.source), day, self.runtime.start_date)
            need |= {(spec.kind, e) for e in days}
        return [self.layout.state_record(kind, e.isoformat()) for kind, e in sorted(need)]

    def state_inputs(self, kind: str, day: str) -> list[str]:
        """A state job's inputs: exactly the partitions its states stand for, of the operators
        some day of the configured range reads from that source day (`state.reaches`: a
        damaged or changed partition older than every operator over its source reaches reruns
        nothing). Not the previous day's snapshot: the job makes that one first when it is not
        current, so the chain needs no edge that would rerun every later day with it."""
        d = dt.date.fromisoformat(day)
        plan, first = self.compiled.plan, self.runtime.start_date
        files: set[str] = set()
        for spec in self.state_specs.values():
            if spec.kind == kind and state.reaches(plan, spec, first, d):
                files.update(state.input_files(spec, self.scan(spec.source), d))
        return sorted(files)

    @staticmethod
    def chain_priority(day: str) -> int:
        """A snapshot job's priority: earlier days first. Each snapshot is made from the day
        before's, so the chain is the run's critical path; in day order every job makes one
        link, and the days it unblocks run beside the next one. Positive, so a ready link also
        goes before every other job (Snakemake's default priority is 0)."""
        return (dt.date(2200, 1, 1) - dt.date.fromisoformat(day)).days

    def state_digest(self, kind: str) -> str:
        """The keys of the states of `kind` (a param: a changed state reruns its jobs)."""
        keys = sorted(k for k, s in self.state_specs.items() if s.kind == kind)
        return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]

    def job_command(self, workflow_dir: str, python: str | None = None) -> str:
        """The command of every rule: this Python (or `python`) running scripts/job.py (daedalus.job)."""
        script = os.path.join(workflow_dir, "scripts", "job.py")
        return f"{shlex.quote(python or sys.executable)} {shlex.quote(script)}"

    def job_shell_prefix(self, workflow_dir: str, *, shell_executable: str | None, use_conda: bool = False) -> str:
        """Snakemake's `shell.prefix` for the rules (rules/common.smk): it defines the shell
        function `daedalus_job`, which every rule's command calls with the rule's arguments.

        The function runs scripts/job.py with this Snakemake's Python (under `--use-conda`, the
        `python` of the rule's conda env, envs/daedalus.yaml) and appends the run's settings
        (`job_options`). Neither is a rule param or in the rules' shell text: a changed param
        reruns a day, a changed shell text too (Snakemake's code trigger), and moving the
        checkout or the venv, or extending the range, must rerun nothing. Under bash the prefix
        keeps Snakemake's own default (`set -euo pipefail`); braces are doubled because
        shell.prefix formats its text.
        """
        command = self.job_command(workflow_dir, "python" if use_conda else None)
        body = " ".join(filter(None, (command, '"$@"', self.job_options)))
        strict = "set -euo pipefail; " if os.path.basename(shell_executable or "") == "bash" else ""
        text = f"{strict}{JOB_FUNCTION}() {{ {body}; }}; "
        return text.replace("{", "{{").replace("}", "}}")

    @property
    def job_options(self) -> str:
        """The run's settings a job needs beyond its rule's params (shell-quoted): not params,
        so that extending the range does not change (and so rerun) the days written."""
        opts = []
        for flag, value in (
            ("--day-workers", self.config.day_workers),
            ("--target-date", self.config.target_date),
            ("--ray-num-cpus", self.config.ray_num_cpus),
            ("--ray-address", self.config.ray_address),
        ):
            if value not in (None, ""):
                opts += [flag, shlex.quote(str(value))]
        return " ".join(opts)

    @cached_property
    def skeleton_targets(self) -> list[str]:
        """The published records of the skeleton days (what Snakemake tracks; daedalus.layout)."""
        return [self.layout.record("skeleton", d) for d in self.ready_days]

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
        return [self.layout.record("enrich", d) for d in self.ready_days] if self.has_embeddings else []

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
    compiled = compile_service(wc.service, wc.paths, output_root=wc.output_root, target_date=target, cached=True)
    runtime = load_model(RuntimeConfig, wc.paths.runtime_config_path)
    wf = Workflow(wc, compiled, runtime)
    # A day directory removed (or changed) by hand since its job recorded it: forget the
    # record, so that Snakemake sees the day's output missing and does it again.
    wf.layout.forget_unpublished(wf.days)
    return wf


def conda_env_file(workflow_dir: str) -> str | None:
    """The rules' conda env (envs/daedalus.yaml beside the Snakefile), or None where it is not
    shipped (a wheel's copy of the workflow): Snakemake reads a rule's env file to record
    every finished job even without --use-conda, so a missing file would fail every job."""
    path = os.path.join(workflow_dir, "envs", "daedalus.yaml")
    return path if os.path.isfile(path) else None


def uses_conda(workflow: Any) -> bool:
    """Snakemake runs the rules' jobs in their conda envs (`--use-conda`, `--sdm conda`)."""
    return any(getattr(m, "name", None) == "CONDA" for m in workflow.deployment_settings.deployment_method)


def object_store_bytes(runtime: RuntimeConfig) -> int | None:
    """runtime.yaml's ray.object_store_memory in bytes (None: Ray's default as Daedalus sets it)."""
    return runtime.ray.object_store_bytes


__all__ = [
    "Workflow",
    "WorkflowConfig",
    "load_workflow",
    "registry_path",
    "conda_env_file",
    "uses_conda",
    "STAGES",
    "JOB_FUNCTION",
]
