"""One local Ray head per `daeda pipeline train` run, shared by all per-day enrich jobs.

    address = start_local_head(num_cpus, None)   # "127.0.0.1:PORT"
    env["RAY_ADDRESS"] = address                 # every enrich job attaches (ensure_ray)
    ...
    stop_head()                                  # stops exactly the head started above

Why not `ray stop`: `ray stop [--force]` kills EVERY Ray process of the machine that this
user may signal, found by process name (raylet, gcs_server, ray::* workers, ...), whatever
cluster it belongs to: it would also kill the local Ray of a concurrent test, of another
run, or another user's job. `stop_head()` only signals the processes of the head this
process started: the head is started in its own session/process group (start_new_session)
with its own `--temp-dir`, and `stop_head()` terminates that process group plus any process
whose command line names that temp dir (SIGTERM, then SIGKILL after a grace period), then
removes the temp dir.

A head outlives a `train` killed with SIGKILL (it runs in its own session, so killing the
run's process group does not reach it). `start_local_head(..., record=path)` therefore notes
the head's session, start time and temp dir in `path` (the output root's state dir) before
waiting for it, and the next run on that root calls `stop_recorded_head(path)` under its
lock: it stops exactly the processes of that session started after that time, or naming that
temp dir, and nothing else.

All fixed-default ports are chosen free (GCS, dashboard, dashboard agent), so two heads
on one machine do not collide. `num_cpus` is a logical CPU count: the scheduler's budget,
not a core pinning. Each day job holds `actor_num_cpus` (default 1) for its actor and reads
take no CPU slot, so `day_workers` concurrent jobs run side by side when
num_cpus >= day_workers (more jobs simply queue for the actor slot; they never deadlock).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from daedalus.enrich.stage import default_object_store_memory


@dataclass
class _Head:
    address: str
    pgid: int
    temp_dir: Path
    owns_temp_dir: bool
    pids: set[int]
    record: Path | None = None


_HEADS: list[_Head] = []
# <temp>/session_2026-01-01_00-00-00_000000_1234567/sockets/plasma_store must fit in 107 bytes.
_MAX_TEMP_BASE = 40


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_executable() -> str:
    """The `ray` CLI of this interpreter's environment (the venv's bin dir)."""
    exe = Path(sys.executable).parent / "ray"
    if exe.exists():
        return str(exe)
    found = shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed next to this Python")
    return found


def head_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def _ensure_token_auth(env: dict[str, str]) -> None:
    """Token auth for the head unless the user chose a mode: make sure Ray's local token
    exists (`ray get-auth-token --generate` creates ~/.ray/auth_token only when missing; its
    output, the token, is discarded) and export RAY_AUTH_MODE=token to this process, so
    the jobs it starts attach with it (`ensure_ray` does the same when it is unset)."""
    if env.get("RAY_AUTH_MODE"):
        return
    subprocess.run(
        [ray_executable(), "get-auth-token", "--generate"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=120,
    )
    env["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def start_local_head(
    num_cpus: int | None,
    tmp_dir: Path | None,
    *,
    object_store_memory: int | None = None,
    timeout_s: float = 180.0,
    record: Path | None = None,
) -> str:
    """Start a local Ray head (`ray start --head`) and return its address "127.0.0.1:PORT".

    Ray's --temp-dir (sockets, logs) is a new directory `daeda-ray-XXXXXXXX` under `tmp_dir`
    (default: the system temp dir), removed by stop_head(); its unique path is also how
    stop_head() recognises the head's processes. When `tmp_dir` is too long for Ray's unix
    socket paths (~107 characters), the system temp dir is used instead.
    """
    base = Path(tmp_dir).resolve() if tmp_dir is not None else Path(tempfile.gettempdir())
    if len(str(base)) > _MAX_TEMP_BASE:
        base = Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix="daeda-ray-", dir=base))
    owns = True
    port = _free_port()
    cmd = [
        ray_executable(),
        "start",
        "--head",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--num-cpus",
        str(num_cpus or os.cpu_count() or 1),
        "--object-store-memory",
        str(object_store_memory or default_object_store_memory()),
        "--include-dashboard=false",
        "--dashboard-port",
        str(_free_port()),
        "--dashboard-agent-listen-port",
        str(_free_port()),
        "--disable-usage-stats",
        "--temp-dir",
        str(temp_dir),
    ]
    env = head_env()
    _ensure_token_auth(env)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        text=True,
    )
    pgid = proc.pid  # the head's daemons inherit this new session/process group
    if record is not None:
        _write_record(record, pgid, temp_dir)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(pgid, temp_dir, set())
        if record is not None:
            record.unlink(missing_ok=True)
        raise RuntimeError(f"`ray start --head` did not finish within {timeout_s:.0f}s") from None
    address = f"127.0.0.1:{port}"
    head = _Head(address, pgid, temp_dir, owns, _head_pids(pgid, temp_dir), record)
    if proc.returncode != 0:
        _stop(head)
        tail = " | ".join((out or "").strip().splitlines()[-3:])
        raise RuntimeError(f"`ray start --head` failed (exit {proc.returncode}): {tail}")
    _HEADS.append(head)
    if len(_HEADS) == 1:
        atexit.register(stop_all_heads)
    return address


def stop_head(address: str | None = None, grace_s: float = 3.0) -> bool:
    """Stop the head started by `start_local_head` in this process (the last one, or the one
    at `address`); only its processes are signalled. Returns False when there is none."""
    for head in reversed(_HEADS):
        if address is None or head.address == address:
            _HEADS.remove(head)
            _stop(head, grace_s)
            return True
    return False


def stop_all_heads() -> None:
    while _HEADS:
        stop_head()


def _head_pids(pgid: int, temp_dir: Path) -> set[int]:
    import psutil

    marker = str(temp_dir)
    pids = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(p.pid) == pgid or any(marker in a for a in (p.info["cmdline"] or [])):
                pids.add(p.pid)
        except (psutil.Error, OSError):
            continue
    # and their descendants (workers re-title themselves "ray::..." and may leave the group)
    for pid in list(pids):
        try:
            pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    pids.discard(os.getpid())
    return pids


def _kill_group(pgid: int, temp_dir: Path, known: set[int], grace_s: float = 3.0) -> None:
    _terminate(known | _head_pids(pgid, temp_dir), grace_s)
    try:  # anything left in the group (started after the scan)
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _terminate(pids: set[int], grace_s: float) -> int:
    """SIGTERM, then SIGKILL after `grace_s`; returns how many processes there were."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


def _stop(head: _Head, grace_s: float = 3.0) -> None:
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            if getattr(ctx, "gcs_address", None) == head.address:
                ray.shutdown()
    except Exception:
        pass
    _kill_group(head.pgid, head.temp_dir, head.pids, grace_s)
    if head.owns_temp_dir:
        time.sleep(0.1)
        shutil.rmtree(head.temp_dir, ignore_errors=True)
    if head.record is not None:
        head.record.unlink(missing_ok=True)


def _write_record(record: Path, sid: int, temp_dir: Path) -> None:
    import psutil

    try:
        started = psutil.Process(sid).create_time()
    except psutil.Error:
        started = time.time()
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(f".{record.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"sid": sid, "started": started, "temp_dir": str(temp_dir)}))
    os.replace(tmp, record)


def recorded_head_pids(record: Path) -> set[int]:
    """The live processes of the head noted in `record`: those of its session started no
    earlier than it (a recycled session id is older or has another start), those naming its
    temp dir, and their descendants."""
    import psutil

    try:
        info = json.loads(record.read_text())
        sid, started, marker = int(info["sid"]), float(info["started"]), str(info["temp_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    pids = set()
    for p in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            mine = os.getsid(p.pid) == sid and p.info["create_time"] >= started - 1.0
            if mine or any(marker in a for a in (p.info["cmdline"] or [])):
                pids.add(p.pid)
                pids.update(c.pid for c in p.children(recursive=True))
        except (psutil.Error, OSError):
            continue
    pids.discard(os.getpid())
    return pids


def stop_recorded_head(record: Path, grace_s: float = 3.0) -> bool:
    """Stop a head left behind by a killed run (see the module docstring); True if one was."""
    if not record.exists():
        return False
    try:
        temp_dir: Path | None = Path(json.loads(record.read_text())["temp_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        temp_dir = None
    stopped = _terminate(recorded_head_pids(record), grace_s)
    if temp_dir is not None and temp_dir.name.startswith("daeda-ray-"):
        shutil.rmtree(temp_dir, ignore_errors=True)
    record.unlink(missing_ok=True)
    return stopped > 0
