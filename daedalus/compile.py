"""Definitions -> operator DAG (the plan) and the per-day Snakemake targets.

Compile validates the definitions, lowers them to a plan (daedalus.lowering), checks it
against the partitions the run reads (daedalus.checks), binds it by running every operator
on empty tables (daedalus.binding) and writes the plan files. Its outputs are byte-for-byte
deterministic and written only when their content changes, so recompiling an unchanged
definition never makes Snakemake rerun anything.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from daedalus.atomic import write_if_changed
from daedalus.binding import bind_plan
from daedalus.checks import bind_sources, check_plan_exprs, skipped_warning, store_schema
from daedalus.definitions import RuntimeConfig
from daedalus.digest import digest_of, enrich_digest_of
from daedalus.errors import DaedalusError
from daedalus.loading import DefinitionPaths, Definitions, load_definitions
from daedalus.lowering import SPINE, agg_source_id, build_plan, source_lookbacks, view_source_id
from daedalus.plan import Plan, load_plan
from daedalus.sources import SourceFiles
from daedalus.timeutil import day_range

__all__ = [
    "SPINE",
    "Compiled",
    "agg_source_id",
    "build_plan",
    "compile_service",
    "digest_of",
    "enrich_digest_of",
    "source_lookbacks",
    "store_schema",
    "view_source_id",
    "write_if_changed",
]


@dataclass
class Compiled:
    definitions: Definitions
    plan: Plan  # the plan `train` runs (the hand-edited one when present)
    plan_path: Path  # where that plan lives
    generated_yaml: str  # the generated plan's text
    digest: str  # changes exactly when what a day job computes changes
    days: list[dt.date]
    sources: dict[str, SourceFiles]
    warnings: list[str] = field(default_factory=list)  # `daeda: warning:` lines for the user
    # Days whose label windows the data does not cover yet (daedalus.skeleton.labels), with
    # what each waits for: no target of the run, `waiting` in status.
    waiting: dict[dt.date, str] = field(default_factory=dict)
    udf_files: list[Path] = field(default_factory=list)  # the UDF modules' files the plan calls

    @property
    def ready_days(self) -> list[dt.date]:
        """The run's days that are not waiting: the days a run writes."""
        return [d for d in self.days if d not in self.waiting]

    def run_files(self, sid: str) -> list[str]:
        """The files of a source that the run's days read (their look-back included)."""
        sf = self.sources.get(sid)
        if sf is None:
            return []
        return sf.select(self.days, self.plan.sources[sid].lookback_days, self.plan.lookahead_days(sid))


def run_days(runtime: RuntimeConfig, runtime_path: Path, target_date: dt.date | None) -> list[dt.date]:
    days = day_range(runtime.start_date, runtime.end_date)
    if target_date is None:
        return days
    if target_date not in days:
        raise DaedalusError(
            "--target-date", f"{target_date} is outside the configured range {days[0]}..{days[-1]} ({runtime_path})"
        )
    return [target_date]


def override_path(service: str) -> Path:
    return Path("config/pipelines") / f"{service}.yaml"


def compile_service(
    service: str,
    paths: DefinitionPaths,
    *,
    output_dir: Path | None = Path("config/pipelines"),
    output_root: str | None = None,
    target_date: dt.date | None = None,
    cached: bool = False,
) -> Compiled:
    """Validate the definitions, build the plan, and (unless output_dir is None) write it.

    `cached`: reuse the result of an earlier compile of the same inputs (daedalus.plancache),
    for the Snakefile, which every cluster job parses again.
    """
    if cached:
        from daedalus import plancache

        hit = plancache.load(service, paths, output_dir=output_dir, target_date=target_date)
        if hit is None:
            started, before = time.time_ns(), plancache.definitions_stamp(service, paths)
            compiled = _compile(service, paths, output_dir, target_date)
            plancache.save(
                compiled,
                service,
                paths,
                output_dir=output_dir,
                target_date=target_date,
                definitions_before=before,
                started_ns=started,
            )
        else:
            compiled = hit
    else:
        compiled = _compile(service, paths, output_dir, target_date)
    if output_dir is not None:
        write_plan_files(compiled, output_dir, output_root)
    return compiled


def _compile(service: str, paths: DefinitionPaths, output_dir: Path | None, target_date: dt.date | None) -> Compiled:
    defs = load_definitions(service, paths)
    days = run_days(defs.runtime, paths.runtime_config_path, target_date)
    plan, chk, udf_files = build_plan(defs, days)
    generated = plan.to_yaml()
    plan_path = (output_dir or Path("config/pipelines")) / f"{service}.generated.yaml"
    effective = plan
    ov = override_path(service)
    if ov.exists():
        effective = load_plan(ov)
        check_plan_exprs(effective, ov)
        if effective.service != service:
            raise DaedalusError(ov, f"service: {effective.service!r} does not match {service!r}")
        plan_path = ov
        bind_sources(effective, chk, ov)
    digest = digest_of(effective, udf_files)
    bind_plan(effective, plan_path, days[0], key=digest)
    from daedalus.skeleton.labels import waiting

    waits = waiting(effective, chk.files, days)
    return Compiled(
        defs,
        effective,
        plan_path,
        generated,
        digest,
        days,
        chk.files,
        warnings=skipped_warning(chk),
        waiting=waits,
        udf_files=udf_files,
    )


def write_plan_files(compiled: Compiled, output_dir: Path, output_root: str | None) -> None:
    """The generated plan and the per-day targets (each written only when its text changes)."""
    service = compiled.plan.service
    write_if_changed(output_dir / f"{service}.generated.yaml", compiled.generated_yaml)
    root = output_root or compiled.definitions.runtime.output_root
    targets = {
        "service": service,
        "plan": compiled.plan_path.as_posix(),
        "output_root": root,
        "days": [d.isoformat() for d in compiled.days],
        "targets": {"skeleton": [f"{root}/dt={d.isoformat()}" for d in compiled.days]},
    }
    write_if_changed(output_dir / f"{service}.targets.yaml", yaml.safe_dump(targets, sort_keys=False))
