"""A real single-node Slurm on loopback for tests: Debian's packages, munge, slurmctld, slurmd.

Everything the cluster writes (state, spool, logs, pid files) lives in one directory; its
config is written to /etc/slurm/slurm.conf, where `srun` inside a job looks for it (the
executor plugin clears SLURM_* variables, SLURM_CONF included, inside jobs), and removed
again by stop(). A slurm.conf this module did not write is never touched. The daemons
this module starts are stopped
by their pid files; a munged that was already running is left alone.
See ../shared/notes/local-slurm.md for the traps this recipe avoids (cgroups, accounting).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
DAEMONS = ["munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue"]
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by daedalus tests/slurm_cluster.py"


def _missing() -> list[str]:
    paths = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [d for d in DAEMONS if shutil.which(d, path=paths) is None]


def install() -> str | None:
    """Install Slurm from the distribution's packages when missing; the reason when impossible."""
    if not _missing():
        return None
    if os.geteuid() != 0:
        return f"Slurm is not installed ({', '.join(_missing())} missing) and installing packages needs root"
    if shutil.which("apt-get") is None:
        return "Slurm is not installed and this machine has no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    res = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if res.returncode != 0:  # stale package lists on a fresh machine
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=900)
        res = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
    if res.returncode != 0:
        return f"apt-get install {' '.join(PACKAGES)} failed: {res.stderr.strip().splitlines()[-1:]}"
    return None if not _missing() else f"still missing after install: {', '.join(_missing())}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 4096


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return (
            cred.returncode == 0
            and subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class LocalSlurm:
    base: Path
    started: list[Path] = field(default_factory=list)  # pid files of the daemons we started
    munge_pid: int | None = None

    conf: Path = SYSTEM_CONF

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot host the test cluster, or None."""
        if SYSTEM_CONF.exists() and MARKER not in SYSTEM_CONF.read_text(errors="replace"):
            return f"{SYSTEM_CONF} exists (a real Slurm is configured here); not overwriting it"
        return None

    def _write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        for d in ("state", "spool"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        b = self.base
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""\
{MARKER}
ClusterName=daeda
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool
SlurmctldPidFile={b}/slurmctld.pid
SlurmdPidFile={b}/slurmd.pid
SlurmctldLogFile={b}/slurmctld.log
SlurmdLogFile={b}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory={_mem_mb()} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def start(self, timeout_s: float = 60) -> None:
        self._write_conf()
        if not _munge_works():
            for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
                Path(d).mkdir(parents=True, exist_ok=True)
                shutil.chown(d, "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, timeout=30)
            pid_file = Path("/run/munge/munged.pid")
            self.munge_pid = int(pid_file.read_text()) if pid_file.exists() else None
        Path("/run/slurm").mkdir(parents=True, exist_ok=True)
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(self.conf)], check=True, timeout=30, env=self.env)
            self.started.append(self.base / f"{daemon}.pid")
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if res.returncode == 0 and res.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node did not become idle: {self.log_tail()}")

    def log_tail(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.base / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(out)

    def job_ids(self) -> set[int]:
        """Ids of the jobs slurmctld allocated, from its log (no accounting database here)."""
        import re

        text = (self.base / "slurmctld.log").read_text(errors="replace")
        # The main scheduler logs "sched: Allocate JobId=N", the backfill scheduler (which starts
        # a job submitted between main-scheduler passes) "sched/backfill: _start_job: Started JobId=N".
        pattern = r"(?:sched: Allocate|sched/backfill: _start_job: Started) JobId=(\d+)"
        return {int(m) for m in re.findall(pattern, text)}

    def completed_job_ids(self, exit_status: int = 0) -> set[int]:
        """Ids of the jobs that ended with `exit_status`, from slurmctld's log."""
        import re

        text = (self.base / "slurmctld.log").read_text(errors="replace")
        return {int(m) for m in re.findall(rf"_job_complete: JobId=(\d+) WEXITSTATUS {exit_status}\b", text)}

    def stop(self) -> None:
        for pid_file in reversed(self.started):
            _kill_pid_file(pid_file)
        self.started.clear()
        if self.munge_pid:
            try:
                os.kill(self.munge_pid, signal.SIGTERM)
            except OSError:
                pass
            self.munge_pid = None
        if self.conf.exists() and MARKER in self.conf.read_text(errors="replace"):
            self.conf.unlink()


def _kill_pid_file(pid_file: Path, grace_s: float = 10) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.time() + grace_s
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
