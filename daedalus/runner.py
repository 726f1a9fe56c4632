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
    """Where the Snakefile is: beside the package in a wheel, else the repository root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_workflow", here.parent):
        if (candidate / "Snakefile").is_file():
            return candidate
    raise DaedalusError("Snakefile", f"the workflow files were not found next to {here}")


@dataclass
class SnakemakeRun:
    config: dict[str, object]
    targets: list[str]
    cores: int
    verbose: bool = False
    extra_args: list[str] = field(default_factory=list)
    log_path: str | None = None  # Snakemake's own log of the run (it writes one in .snakemake/log)

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
            return subprocess.call(cmd)
        jobs: dict[str, tuple[str, str | None]] = {}
        cur_rule: str | None = None
        cur_id: str | None = None
        errors: list[str] = []
        tail: list[str] = []
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
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
            elif "Nothing to be done" in line:
                console.print("[dim]nothing to do: every output is up to date[/dim]")
        rc = proc.wait()
        if rc != 0:
            console.print("\n".join(tail[-25:]), markup=False, highlight=False)
        return rc
