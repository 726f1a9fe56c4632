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

from rich.console import Console

from daedalus.errors import DaedalusError

_JOB = re.compile(r"^\s*(?:local)?rule (\w+):")
_JOBID = re.compile(r"^\s*jobid: (\d+)")
_WILD = re.compile(r"^\s*wildcards: day=(\S+)")
_DONE = re.compile(r"Finished jobid: (\d+)")
_ERROR = re.compile(r"Error in rule (\w+):")
_LOG = re.compile(r"Complete log\(s\): (.+)$")
_STEPS = re.compile(r"(\d+) of (\d+) steps \((\d+)%\) done")


def workflow_dir() -> Path:
    """The repository holding the Snakefile (Daedalus is installed from it, editable)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "Snakefile").is_file():
        raise DaedalusError("Snakefile", f"the workflow files were not found in {root}; install Daedalus "
                            "from its repository with `pip install -e .`")
    return root


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
    """A profile path, or the name of one shipped with Daedalus (`slurm` -> <repo>/profiles/slurm)."""
    import yaml

    path = Path(text)
    if not path.is_dir() and not path.is_absolute() and (workflow_dir() / "profiles" / text).is_dir():
        path = workflow_dir() / "profiles" / text
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
    env: dict[str, str] = field(default_factory=dict)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def jobs_to_run(self) -> dict[str, int]:
        """Rule -> number of jobs a run would execute now (a dry run)."""
        cmd = self.command()
        cmd.insert(cmd.index("--cores"), "--dry-run")
        res = subprocess.run(cmd, capture_output=True, text=True, env=self._env())
        if res.returncode != 0:
            return {}
        counts: dict[str, int] = {}
        in_table = False
        for line in (res.stdout + res.stderr).splitlines():
            if line.strip().startswith("job") and "count" in line:
                in_table = True
                continue
            if in_table:
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    counts[parts[0]] = int(parts[1])
                elif parts and parts[0] == "total":
                    break
        return counts

    def command(self) -> list[str]:
        wf = workflow_dir()
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(wf / "Snakefile"),
               "--directory", os.getcwd(), "--cores", str(self.cores), "--rerun-incomplete"]
        cmd += self.extra_args + self.targets
        cfg = [f"{k}={v}" for k, v in self.config.items() if v is not None]
        return cmd + (["--config", *cfg] if cfg else [])

    def run(self, console: Console) -> int:
        cmd = self.command()
        if self.verbose:
            console.print(f"[dim]$ {' '.join(cmd)}[/dim]")
            return subprocess.call(cmd, env=self._env())
        jobs: dict[str, tuple[str, str | None]] = {}
        cur_rule: str | None = None
        cur_id: str | None = None
        errors: list[str] = []
        failures: list[str] = []
        tail: list[str] = []
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=self._env())
        assert proc.stdout is not None
        for line in proc.stdout:
            if m := _LOG.search(line):
                self.log_path = m.group(1).strip()
            tail = (tail + [line.rstrip()])[-40:]
            if m := _JOB.match(line):
                cur_rule, cur_id = m.group(1), None
            elif (m := _JOBID.match(line)) and cur_rule:
                cur_id = m.group(1)
                jobs[cur_id] = (cur_rule, None)
            elif (m := _WILD.match(line)) and cur_id:
                jobs[cur_id] = (jobs[cur_id][0], m.group(1))
            elif m := _DONE.search(line):
                rule, day = jobs.get(m.group(1), ("?", None))
                if rule not in ("all", "skeleton_all", "enrich_all"):
                    console.print(f"  [green]done[/green] {rule}" + (f" dt={day}" if day else ""))
            elif m := _STEPS.search(line):
                console.print(f"[dim]{m.group(1)}/{m.group(2)} jobs ({m.group(3)}%)[/dim]")
            elif m := _ERROR.search(line):
                errors.append(m.group(1))
            elif line.startswith("daedalus job "):
                failures.append(line.rstrip())
            elif "Nothing to be done" in line:
                console.print("[dim]nothing to do: every output is up to date[/dim]")
        rc = proc.wait()
        if rc != 0:
            # A failed job says what went wrong in one line and keeps its traceback in its log.
            shown = failures or tail[-25:]
            console.print("\n".join(shown), markup=False, highlight=False)
        return rc
