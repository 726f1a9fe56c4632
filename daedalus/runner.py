"""Driving the `snakemake` command for `daeda pipeline train`.

Calling the command (not Snakemake's Python API) keeps profiles and executor plugins
working exactly as for a user who runs `snakemake` by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from daedalus.errors import DaedalusError

if TYPE_CHECKING:
    from rich.progress import TaskID

    from daedalus.loading import DefinitionPaths

_JOB = re.compile(r"^\s*(?:local)?rule (\w+):")
_JOBID = re.compile(r"^\s*jobid: (\d+)")
_WILD = re.compile(r"^\s*wildcards: (?:.*, )?day=([^,\s]+)")
_DONE = re.compile(r"Finished jobid: (\d+)")
_LOG = re.compile(r"Complete log\(s\): (.+)$")
_JOBLOG = re.compile(r"^\s*log: (\S+)")
_FIELD = re.compile(r"^\s+(\w+): (.*)$")


PACKAGE_DIR = Path(__file__).resolve().parent
# The workflow as the wheel ships it (pyproject.toml, [tool.hatch.build.targets.wheel.force-include]).
PACKAGED_WORKFLOW = PACKAGE_DIR / "_workflow"


def _is_workflow(root: Path) -> bool:
    return (root / "Snakefile").is_file() and (root / "rules").is_dir() and (root / "scripts" / "job.py").is_file()


def workflow_dir() -> Path:
    """The directory holding the Snakefile, rules/, scripts/, profiles/ and the demo definitions.

    Run from the repository (an editable install: the package's parent is the repository,
    with its pyproject.toml), it is the repository itself, so edits there take effect at once;
    installed from a wheel, it is the copy the wheel ships in daedalus/_workflow/. Snakemake
    resolves rules/, scripts/job.py and profiles/default from the Snakefile's directory, so
    both are complete workflows.
    """
    repo = PACKAGE_DIR.parent
    if (repo / "pyproject.toml").is_file() and _is_workflow(repo):
        return repo
    if _is_workflow(PACKAGED_WORKFLOW):
        return PACKAGED_WORKFLOW
    raise DaedalusError(
        "Snakefile",
        f"the workflow files were found neither in {repo} (a repository checkout) nor in "
        f"{PACKAGED_WORKFLOW} (a wheel install): reinstall Daedalus",
    )


def workflow_config(
    service: str,
    paths: DefinitionPaths,
    root: str,
    *,
    target_date: str | None = None,
    stage: str = "all",
    day_workers: int | None = None,
    ray_num_cpus: int | None = None,
) -> dict[str, object]:
    """The `--config` keys of the Snakefile (daedalus.workflow.WorkflowConfig) for a run."""
    return {
        "service": service,
        "feature_views_dir": paths.feature_views_dir,
        "feature_services_dir": paths.feature_services_dir,
        "runtime_config_path": paths.runtime_config_path,
        "aggregation_config_path": paths.aggregation_config_path,
        "output_root": root,
        "target_date": target_date,
        "day_workers": day_workers,
        "ray_num_cpus": ray_num_cpus,
        "stage": stage,
    }


LOCAL_EXECUTORS = ("local", "dryrun", "touch")


@dataclass(frozen=True)
class Profile:
    """A Snakemake profile directory `train --profile` passes on, and the executor it selects."""

    path: Path
    executor: str

    @property
    def remote(self) -> bool:
        """Jobs run on other machines (a cluster), where this machine's loopback is not theirs."""
        return self.executor not in LOCAL_EXECUTORS


def resolve_profile(text: str) -> Profile:
    """A profile path, or the name of one shipped with Daedalus (`slurm` -> <workflow_dir()>/profiles/slurm)."""
    import yaml

    path = Path(text)
    shipped = workflow_dir() / "profiles"
    if not path.is_dir() and not path.is_absolute() and (shipped / text).is_dir():
        path = shipped / text
    config = path / "config.yaml"
    if not config.is_file():
        raise DaedalusError("--profile", f"{text}: not a Snakemake profile (no {config})")
    try:
        values = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as e:
        raise DaedalusError(str(config), f"invalid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(values, dict):
        raise DaedalusError(str(config), "a profile must be a mapping of snakemake options")
    return Profile(path.resolve(), str(values.get("executor") or "local"))


@dataclass
class SnakemakeRun:
    config: dict[str, object]
    targets: list[str]
    cores: int
    verbose: bool = False
    extra_args: list[str] = field(default_factory=list)
    log_path: str | None = None  # Snakemake's own log of the run (it writes one in .snakemake/log)
    nothing_to_do: bool = False  # Snakemake said so (only known in the quiet view)
    env: dict[str, str] = field(default_factory=dict)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def dry_run(self) -> subprocess.CompletedProcess:
        """What a run would do now: Snakemake's dry run, each job with its reason."""
        cmd = self.command()
        cmd.insert(cmd.index("--cores"), "--dry-run")
        return subprocess.run(cmd, capture_output=True, text=True, env=self._env())

    def jobs_to_run(self) -> dict[str, int]:
        """Rule -> number of jobs a run would execute now (a dry run)."""
        res = self.dry_run()
        if res.returncode != 0:
            return {}
        return job_counts(res.stdout + res.stderr)

    def command(self) -> list[str]:
        wf = workflow_dir()
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(wf / "Snakefile"),
            "--directory",
            os.getcwd(),
            "--cores",
            str(self.cores),
            "--rerun-incomplete",
        ]
        cmd += self.extra_args + self.targets
        cfg = [f"{k}={v}" for k, v in self.config.items() if v is not None]
        return cmd + (["--config", *cfg] if cfg else [])

    def run(self, console: Console) -> int:
        cmd = self.command()
        if self.verbose:
            console.print(f"[dim]$ {' '.join(cmd)}[/dim]")
            return subprocess.call(cmd, env=self._env())
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=self._env()
        )
        assert proc.stdout is not None
        view = _ProgressView(console)
        try:
            for line in proc.stdout:
                if m := _LOG.search(line):
                    self.log_path = m.group(1).strip()
                view.feed(line)
        finally:
            view.stop()
        rc = proc.wait()
        self.nothing_to_do = view.nothing_to_do
        if rc != 0:
            # A failed job says what went wrong in one line and keeps its traceback in its log.
            shown = view.failures or view.tail[-25:]
            console.print("\n".join(shown), markup=False, highlight=False)
        return rc


AGGREGATE_RULES = ("all", "skeleton_all", "enrich_all")
# Per-source-day state jobs (rules/state.smk): many and small, so counted but not listed.
STATE_RULES = ("state_partials", "state_snapshot")


def job_counts(text: str) -> dict[str, int]:
    """Rule -> job count, from the "Job stats" table Snakemake prints before running."""
    counts: dict[str, int] = {}
    in_table = False
    for line in text.splitlines():
        if line.strip().startswith("job") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if parts and parts[0] == "total":
                break
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


def job_blocks(text: str) -> list[dict[str, str | None]]:
    """The jobs of Snakemake's (dry-run) output: rule, day, output and reason of each."""
    jobs: list[dict[str, str | None]] = []
    for line in text.splitlines():
        if m := _JOB.match(line):
            jobs.append({"rule": m.group(1), "day": None, "output": None, "reason": None})
        elif jobs and (m := _FIELD.match(line)) and m.group(1) in ("output", "reason"):
            jobs[-1][m.group(1)] = m.group(2).strip()
        elif jobs and (m := _WILD.match(line)):
            jobs[-1]["day"] = m.group(1)
    return jobs


def job_figures(log_path: str | None) -> tuple[int | None, float | None]:
    """(rows, seconds) of a finished day job, from the summary line its log ends with."""
    if not log_path:
        return None, None
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return None, None
    rows = re.findall(r"\brows\W{1,3}(\d+)", text)
    secs = re.findall(r"\bseconds\W{1,3}([0-9.]+)", text)
    return (int(rows[-1]) if rows else None), (float(secs[-1]) if secs else None)


class _ProgressView:
    """The quiet view of a run: one overall bar, one line per finished day job."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.jobs: dict[str, dict[str, str | None]] = {}
        self.block: dict[str, str | None] | None = None
        self.failures: list[str] = []
        self.tail: list[str] = []
        self.done = 0
        self.total: int | None = None
        # The printed "[k/n]" counts the jobs that print a line (not the state jobs).
        self.shown = 0
        self.shown_total = 0
        self.stats_text: list[str] = []
        self.progress = Progress(
            TextColumn("[bold]train[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.nothing_to_do = False

    def _start(self, total: int) -> None:
        self.total = total
        if total and self.console.is_terminal:
            self.progress.start()
            self.task = self.progress.add_task("jobs", total=total)

    def feed(self, line: str) -> None:
        self.tail = (self.tail + [line.rstrip()])[-40:]
        if self.total is None:
            self.stats_text.append(line)
            if line.strip().startswith("total"):
                counts = job_counts("".join(self.stats_text))
                self.shown_total = sum(n for r, n in counts.items() if r not in AGGREGATE_RULES + STATE_RULES)
                self._start(sum(n for r, n in counts.items() if r not in AGGREGATE_RULES))
        # A job's block: "rule r:", then (in any order) "log: ...", "jobid: N", "wildcards: day=D".
        if m := _JOB.match(line):
            self.block = {"rule": m.group(1), "day": None, "log": None}
        elif (m := _JOBID.match(line)) and self.block:
            self.jobs[m.group(1)] = self.block
        elif (m := _WILD.match(line)) and self.block:
            self.block["day"] = m.group(1)
        elif (m := _JOBLOG.match(line)) and self.block:
            self.block["log"] = m.group(1).strip()
        elif m := _DONE.search(line):
            self._finished(self.jobs.get(m.group(1), {"rule": "?", "day": None, "log": None}))
        elif line.startswith("daedalus job "):
            self.failures.append(line.rstrip())
        elif "Nothing to be done" in line:
            self.nothing_to_do = True
            self.console.print("[dim]nothing to do: every output is up to date[/dim]")

    def _finished(self, job: dict[str, str | None]) -> None:
        rule, day = job["rule"], job["day"]
        if rule in AGGREGATE_RULES:
            return
        self.done += 1
        if rule in STATE_RULES:
            if self.task is not None:
                self.progress.advance(self.task)
            return
        rows, secs = job_figures(job["log"])
        figures = "".join(
            [f"  {rows:,} rows" if rows is not None else "", f"  {secs:.1f} s" if secs is not None else ""]
        )
        self.shown += 1
        count = f"[{self.shown}/{self.shown_total}]" if self.shown_total else ""
        self.console.print(f"  {count} [green]done[/green] {rule}" + (f" dt={day}" if day else "") + figures)
        if self.task is not None:
            self.progress.advance(self.task)

    def stop(self) -> None:
        self.progress.stop()
