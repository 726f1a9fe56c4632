"""One `daeda pipeline train` run, step by step.

    validate -> lock -> up-to-date check -> workers and Ray head -> Snakemake -> record

Validation is everything compile checks, before Snakemake starts or any output is touched
(no plan file is written here: the Snakefile writes them once the lock is held). The lock is
one train per output root (daedalus.runlock). A run whose fingerprint matches the record of
a Snakemake no-op skips Snakemake (daedalus.uptodate). Local runs get one warm worker per
day worker (daedalus.worker) and, when some day is big, one Ray head for the run; both are
stopped at the end, and die with the run's process group when it is killed.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from daedalus.compile import Compiled, compile_service
from daedalus.errors import DaedalusError
from daedalus.layout import Layout
from daedalus.loading import DefinitionPaths
from daedalus.runner import Profile, SnakemakeRun, resolve_profile, workflow_config, workflow_dir

if TYPE_CHECKING:
    from filelock import FileLock

    from daedalus.workflow import Workflow


@dataclass(frozen=True)
class TrainOptions:
    output_root: str | None = None
    target_date: dt.date | None = None
    day_workers: int | None = None
    stage: str = "all"  # all | skeleton | enrich
    ray_num_cpus: int | None = None
    profile: str | None = None
    cores: int | None = None
    verbose: bool = False
    snakemake_args: list[str] = field(default_factory=list)
    strict: bool = False
    root_option: str = "--output-root"  # what set the output root, for error messages


def lint(compiled: Compiled, strict: bool) -> None:
    """The input-file warnings, then the leakage lint (`--strict`: leakage warnings fail)."""
    import sys

    from daedalus.lint import lint as leakage
    from daedalus.lint import report

    for line in compiled.warnings:  # about the input files, not leakage: --strict does not count them
        print(f"daeda: warning: {line}", file=sys.stderr)
    report(leakage(compiled), strict=strict)


def has_big_day(compiled: Compiled, small_day_rows: int) -> bool:
    """Whether some day of the run has more spine rows than `small_day_rows` (from the spine's
    parquet footers; an unpartitioned spine counts as one day)."""
    import pyarrow.parquet as pq

    sf = compiled.sources.get("spine")
    if sf is None:
        return True
    if not sf.partitioned:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in compiled.run_files("spine")) > small_day_rows
    per_day: dict[dt.date, int] = {}
    for f, d in zip(sf.files, sf.days):
        if d in compiled.days:
            per_day[d] = per_day.get(d, 0) + pq.ParquetFile(f).metadata.num_rows
    return any(n > small_day_rows for n in per_day.values())


class TrainSession:
    def __init__(self, service: str, paths: DefinitionPaths, options: TrainOptions, console: Console) -> None:
        self.service, self.paths, self.opts, self.console = service, paths, options, console
        self.profile: Profile | None = resolve_profile(options.profile) if options.profile else None

    @property
    def local(self) -> bool:
        return not (self.profile and self.profile.remote)

    def run(self) -> None:
        compiled = self.validate()
        runtime = compiled.definitions.runtime
        root = self.opts.output_root or runtime.output_root
        layout = Layout.of(root)
        self.check_stage(compiled, layout)
        from daedalus.lint import label_leaks, report

        if self.opts.strict:  # a --strict failure comes before the lock, so it creates nothing
            lint(compiled, True)
        else:  # so does a label used as a feature input (an error with or without --strict)
            report(label_leaks(compiled), strict=False)
        lock = self.lock(root, layout)
        try:
            if not self.opts.strict:  # warnings after every check and the lock: a refused run prints one line
                lint(compiled, False)
            from daedalus.skeleton.labels import waiting_note

            if note := waiting_note(compiled.waiting):
                self.console.print(f"[cyan]waiting[/cyan]: {note}")
            run, wf = self.snakemake_run(compiled, root)
            from daedalus import uptodate

            command, wf_dir = run.command(), workflow_dir()
            fp = uptodate.fingerprint(wf, command, wf_dir)
            if uptodate.matches(root, fp):
                self.console.print(
                    "[dim]nothing to do: every output is up to date (nothing changed since "
                    "Snakemake last checked)[/dim]"
                )
                self.console.print(f"[green]done[/green]: {root}")
                return
            uptodate.clear(root)
            rc = self.run_snakemake(run, compiled, layout)
            if rc == 0 and run.nothing_to_do and fp is not None and uptodate.fingerprint(wf, command, wf_dir) == fp:
                uptodate.record(root, fp)  # Snakemake found nothing to do in exactly this state
        finally:
            lock.release()
        if rc != 0:
            raise DaedalusError(
                "train",
                f"snakemake failed (exit {rc}); its log: {run.log_path or '.snakemake/log/'}; "
                f"job logs: {root}/.daedalus/logs/",
            )
        self.console.print(f"[green]done[/green]: {root}")

    # -- the steps ----------------------------------------------------------------------

    def validate(self) -> Compiled:
        return compile_service(
            self.service,
            self.paths,
            output_dir=None,
            output_root=self.opts.output_root,
            target_date=self.opts.target_date,
            cached=True,
        )

    def check_stage(self, compiled: Compiled, layout: Layout) -> None:
        if self.opts.stage != "enrich":
            return
        if not compiled.plan.ops("embed"):
            raise DaedalusError("--enrich-only", f"service {self.service!r} has no embeddings to enrich")
        missing = [d for d in compiled.ready_days if not layout.published("skeleton", d.isoformat())]
        if missing:
            raise DaedalusError(
                "--enrich-only",
                f"no finished skeleton output for {len(missing)} day(s) (first: "
                f"{layout.day_dir('skeleton', missing[0].isoformat())}); run the skeleton stage first",
            )

    def lock(self, root: str, layout: Layout) -> FileLock:
        """One train per root (released by the kernel even on SIGKILL), so Snakemake's own lock,
        which a kill leaves behind, is not needed (--nolock); then clear what a killed run left."""
        from daedalus.atomic import remove_stale_temps
        from daedalus.enrich.cluster import stop_recorded_head
        from daedalus.runlock import acquire_train_lock

        lock = acquire_train_lock(root, self.opts.root_option)
        stop_recorded_head(layout.ray_head_record)  # a head left running by a killed run on this root
        for r in (Path(layout.root), Path(layout.enriched_root)):
            remove_stale_temps(r, "")  # hidden half-written days of a killed run: no run can own them now
        return lock

    def snakemake_run(self, compiled: Compiled, root: str) -> tuple[SnakemakeRun, Workflow]:
        from daedalus.workflow import Workflow, WorkflowConfig

        runtime = compiled.definitions.runtime
        workers = self.opts.day_workers or runtime.day_workers
        day = self.opts.target_date
        config = workflow_config(
            self.service,
            self.paths,
            root,
            target_date=day.isoformat() if day else None,
            stage=self.opts.stage,
            day_workers=workers,
            ray_num_cpus=self.opts.ray_num_cpus,
        )
        cores = self.opts.cores or max(workers, runtime.duckdb.threads)
        prof = self.profile
        self.console.print(
            f"[bold]{self.service}[/bold]: {len(compiled.days)} day(s) "
            f"{compiled.days[0]}..{compiled.days[-1]} -> {root} ({self.opts.stage}, "
            + (
                f"executor {prof.executor} ({prof.path.name} profile))"
                if prof and prof.remote
                else f"{workers} day worker(s), {cores} cores)"
            )
        )
        extra = ["--nolock", *(["--profile", str(prof.path)] if prof else []), *self.opts.snakemake_args]
        run = SnakemakeRun(config=config, targets=["all"], cores=cores, verbose=self.opts.verbose, extra_args=extra)
        return run, Workflow(WorkflowConfig.from_mapping(config), compiled, runtime)

    def run_snakemake(self, run: SnakemakeRun, compiled: Compiled, layout: Layout) -> int:
        runtime = compiled.definitions.runtime
        head = workers = None
        try:
            if self.local:
                # One warm process per day worker for the run's small days (daedalus.worker): they
                # warm up while Snakemake starts, and every small day job after that is cheap.
                from daedalus import worker

                workers = worker.start(self.opts.day_workers or runtime.day_workers, layout.log("worker"))
                run.env.update(workers.env)
            head = self.start_ray_head(run, compiled, layout)
            return run.run(self.console)
        finally:
            if head is not None:
                from daedalus.enrich.cluster import stop_head

                stop_head()
            if workers is not None:
                workers.stop()

    def start_ray_head(self, run: SnakemakeRun, compiled: Compiled, layout: Layout) -> str | None:
        """One local Ray head for the run when some big day's enrich job will run: each attaches
        instead of paying Ray's start-up (seconds) per day. Small days are enriched without Ray."""
        runtime = compiled.definitions.runtime
        enriches = self.opts.stage != "skeleton" and bool(compiled.plan.ops("embed"))
        if not enriches or os.environ.get("RAY_ADDRESS") or runtime.ray.address:
            return None
        if not self.local:
            assert self.profile is not None
            self.console.print(
                f"[dim]executor {self.profile.executor}: each enrich job starts a Ray on its node "
                "(set ray.address in runtime.yaml to use a Ray cluster)[/dim]"
            )
            return None
        if not has_big_day(compiled, runtime.small_day_rows) or not run.jobs_to_run().get("enrich_day"):
            return None
        from daedalus.enrich.cluster import start_local_head

        # This head is ours alone and listens on loopback: no token auth, and Ray must not swap
        # 127.0.0.1 for the machine's external address when jobs attach.
        local = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        os.environ.update(local)
        head = start_local_head(
            self.opts.ray_num_cpus or runtime.ray.num_cpus,
            None,
            record=layout.ray_head_record,
            object_store_memory=runtime.ray.object_store_bytes,
        )
        run.env.update(local)
        run.env["RAY_ADDRESS"] = head
        self.console.print(f"[dim]ray head for this run: {head}[/dim]")
        return head
