"""`daeda pipeline status`: which days are done, stale (and why) or missing, per stage.

The answer is Snakemake's own: a dry run of the very workflow `train` runs (same Snakefile,
config, profile and rerun triggers) lists every job it would execute with its reason, and
each reason maps to what changed:

| Snakemake's reason | shown as |
|---|---|
| missing output files | missing |
| updated input files, set of input files has changed (skeleton) | source changed |
| params have changed (the rules carry the compiled definition's digest) | definition changed |
| code / software environment has changed | code changed |
| input files updated by another job, updated input files (enrich) | skeleton changed |
| incomplete output files | interrupted run |

A skeleton day planned because a state job it reads reruns (rules/state.smk) takes that
job's reasons: Snakemake does not check the own reasons of a job downstream of one that
reruns, so the state job's reason is the one that says what changed (a missing state file,
say after its directory was removed, is shown as "state missing").

Snakemake's output of a day job is the day's published record (daedalus.layout): a day whose
record is missing while its directory is there was left by a run that failed or was killed
before the day's new version was complete (the previous version is still what readers see),
and is shown as stale (interrupted run) rather than missing.

A day no job is planned for is done, unless it is waiting: its label windows reach past the
data the label source holds (daedalus.skeleton.labels). A waiting day is no target of the
run, so no job is planned for it; it is shown as `waiting` (with what it waits for), and
does not make the status "not up to date": `train` has nothing to do for it until the data
arrives (exit status 0 when every day is done or waiting).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from daedalus.errors import DaedalusError
from daedalus.layout import Layout
from daedalus.plan import Plan
from daedalus.runner import STATE_RULES, SnakemakeRun, job_blocks

# Exit code when some day is stale or missing (0: every day done or waiting; 2: invalid input).
EXIT_NOT_UP_TO_DATE = 3
DAY_RULES = {"skeleton_day": "skeleton", "enrich_day": "enrich"}
STATES = ("done", "stale", "missing", "waiting")
# States a run has nothing to do for: a waiting day is written by a run after its data arrives.
SETTLED = ("done", "waiting")

# (prefix of one reason Snakemake gives, stage or None for any) -> what we call it
_REASONS: list[tuple[str, str | None, str]] = [
    ("Missing output files", None, "missing"),
    ("Incomplete output files", None, "interrupted run"),
    ("Updated input files", "skeleton", "source changed"),
    ("Set of input files has changed", "skeleton", "source changed"),
    ("Updated input files", None, "skeleton changed"),
    ("Input files updated by another job", None, "skeleton changed"),
    ("Set of input files has changed", None, "skeleton changed"),
    ("Params have changed", None, "definition changed"),
    ("Code has changed", None, "code changed"),
    ("Software environment definition has changed", None, "code changed"),
    ("Forced execution", None, "forced"),
    ("State missing", None, "state missing"),
]
_BY_ANOTHER_JOB = "Input files updated by another job:"


def _with_state_reasons(reason: str | None, state_reasons: dict[str, str | None]) -> str | None:
    """`reason` with its state records updated by another job replaced by those jobs' reasons."""
    if not reason or not state_reasons:
        return reason
    pieces: list[str] = []
    for piece in reason.split("; "):
        if not piece.strip().startswith(_BY_ANOTHER_JOB):
            pieces.append(piece)
            continue
        files = [f.strip() for f in piece.split(":", 1)[1].split(",") if f.strip()]
        for f in files:
            if f in state_reasons:
                theirs = state_reasons[f] or ""
                pieces += ["State missing" if p.startswith("Missing output") else p for p in theirs.split("; ")]
        if rest := [f for f in files if f not in state_reasons]:
            pieces.append(f"{_BY_ANOTHER_JOB} {', '.join(rest)}")
    return "; ".join(pieces)


@dataclass
class StageStatus:
    state: str  # done | stale | missing | waiting
    reasons: list[str] = field(default_factory=list)
    snakemake_reason: str | None = None  # Snakemake's own words, for --json
    # A stale skeleton day: the operators its job will compute (the others' tables are kept).
    operators: list[str] | None = None


@dataclass
class PipelineStatus:
    service: str
    output_root: str
    stages: list[str]
    days: dict[str, dict[str, StageStatus]]  # day -> stage -> status
    qid_map: StageStatus | None = None

    def totals(self) -> dict[str, dict[str, int]]:
        out = {s: dict.fromkeys(STATES, 0) for s in self.stages}
        for by_stage in self.days.values():
            for stage, st in by_stage.items():
                out[stage][st.state] += 1
        return out

    @property
    def up_to_date(self) -> bool:
        return all(st.state in SETTLED for by in self.days.values() for st in by.values()) and (
            self.qid_map is None or self.qid_map.state == "done"
        )

    @property
    def exit_code(self) -> int:
        return 0 if self.up_to_date else EXIT_NOT_UP_TO_DATE

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "service": self.service,
            "output_root": self.output_root,
            "up_to_date": self.up_to_date,
            "stages": self.stages,
            "days": [{"day": d, **{s: asdict(st) for s, st in by.items()}} for d, by in self.days.items()],
            "qid_map": asdict(self.qid_map) if self.qid_map else None,
            "totals": self.totals(),
        }
        return json.dumps(data, indent=2)


def classify(stage: str, reason: str | None) -> StageStatus:
    """One planned job's Snakemake reason -> its state and our reasons."""
    found: list[str] = []
    for piece in (reason or "").split("; "):
        piece = piece.strip()
        if not piece:
            continue
        name = next(
            (n for prefix, only, n in _REASONS if piece.startswith(prefix) and only in (None, stage)),
            piece.split(":")[0].lower(),
        )
        if name not in found:
            found.append(name)
    if "missing" in found:  # whatever else changed, the output is not there
        return StageStatus("missing", [], reason)
    return StageStatus("stale", found or ["unknown"], reason)


def status_from_dry_run(
    text: str,
    service: str,
    root: str,
    days: list[str],
    stages: list[str],
    has_qid_map: bool,
    waiting: dict[str, str] | None = None,
) -> PipelineStatus:
    planned: dict[tuple[str, str | None], str | None] = {}
    blocks = job_blocks(text)
    state_reasons = {str(j["output"]): j["reason"] for j in blocks if j["rule"] in STATE_RULES}
    for job in blocks:
        rule = str(job["rule"])
        if rule in STATE_RULES:
            continue
        stage = DAY_RULES.get(rule, rule)
        reason = _with_state_reasons(job["reason"], state_reasons) if stage == "skeleton" else job["reason"]
        planned[(stage, job["day"])] = reason
    layout = Layout.of(root)

    def day_status(stage: str, day: str) -> StageStatus:
        if waiting and day in waiting:
            return StageStatus("waiting", [waiting[day]])
        if (stage, day) not in planned:
            return StageStatus("done")
        st = classify(stage, planned[(stage, day)])
        if st.state == "missing" and Path(layout.day_dir(stage, day)).is_dir():
            return StageStatus("stale", ["interrupted run"], st.snakemake_reason)
        return st

    table = {d: {s: day_status(s, d) for s in stages} for d in days}
    qid = None
    if has_qid_map:
        qid = classify("qid_map", planned[("qid_map", None)]) if ("qid_map", None) in planned else StageStatus("done")
    return PipelineStatus(service, root, stages, table, qid)


def pipeline_status(
    run: SnakemakeRun,
    *,
    service: str,
    root: str,
    days: list[str],
    has_embeddings: bool,
    has_qid_map: bool,
    plan: Plan | None = None,
    waiting: dict[str, str] | None = None,
) -> PipelineStatus:
    """Ask Snakemake (a dry run of `train`'s workflow) what it would run, and why."""
    res = run.dry_run()
    text = res.stdout + res.stderr
    if res.returncode != 0:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        err = next((ln for ln in lines if "Error" in ln or "error" in ln), lines[-1] if lines else "failed")
        raise DaedalusError("snakemake", f"the dry run failed: {err}")
    stages = ["skeleton", "enrich"] if has_embeddings else ["skeleton"]
    status = status_from_dry_run(text, service, root, days, stages, has_qid_map, waiting)
    if plan is not None:
        add_operators(status, plan)
    return status


def add_operators(status: PipelineStatus, plan: Plan) -> None:
    """Name, for each stale skeleton day, the operators whose kept table is missing or stale
    (daedalus.skeleton.columns): what its job will compute besides the assembly."""
    import datetime as dt

    from daedalus.skeleton.columns import DayColumns
    from daedalus.skeleton.stage import day_files, scan_sources

    scans = scan_sources(plan)
    for day, by in status.days.items():
        st = by.get("skeleton")
        if st is None or st.state != "stale":
            continue
        d = dt.date.fromisoformat(day)
        st.operators = DayColumns(plan, d, day_files(plan, d, scans), Path(status.output_root)).stale()


_STYLE = {"done": "green", "stale": "yellow", "missing": "red", "waiting": "cyan"}


def _cell(st: StageStatus) -> str:
    text = st.state if st.state == "done" or not st.reasons else f"{st.state} ({', '.join(st.reasons)})"
    cell = f"[{_STYLE[st.state]}]{text}[/{_STYLE[st.state]}]"
    if st.operators is not None:
        cell += f"\n[dim]computes: {', '.join(st.operators) or 'the assembly only'}[/dim]"
    return cell


def render(status: PipelineStatus, console: Console) -> None:
    console.print(f"[bold]{status.service}[/bold] -> {status.output_root}")
    table = Table()
    table.add_column("day")
    for s in status.stages:
        table.add_column(s)
    for day, by in status.days.items():
        table.add_row(day, *[_cell(by[s]) for s in status.stages])
    console.print(table)
    totals = status.totals()
    for s in status.stages:
        t = totals[s]
        line = f"{s}: {t['done']} done, {t['stale']} stale, {t['missing']} missing"
        console.print(line + (f", {t['waiting']} waiting" if t["waiting"] else ""))
    if status.qid_map is not None:
        console.print(f"qid_map.parquet: {_cell(status.qid_map)}")
    waiting = sum(t["waiting"] for t in totals.values())
    console.print(
        ("[green]up to date[/green]" + (" (waiting days are written once their label data arrives)" if waiting else ""))
        if status.up_to_date
        else "[yellow]not up to date[/yellow]: `daeda pipeline train` would run the days above"
    )
