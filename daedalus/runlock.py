"""One `daeda pipeline train` per output root at a time.

The lock is an flock(2) on `<root>/.daedalus/train.lock` (the `filelock` package): the
kernel releases it when the holding process exits, however it exits (SIGKILL included), so a
stale lock cannot exist and there is nothing to clean up by hand. No soft-lock fallback (a lock
file's mere existence would outlive a kill) and the file is kept (deleting a flocked file races
with a second run opening it). A second `train` on the
same root refuses at once rather than waiting behind a run that may take hours.

Holding this lock is also what lets `train` run Snakemake with `--nolock`: Snakemake's own
lock files (`.snakemake/locks/`) survive a SIGKILL and would otherwise make every later run
fail with "Directory cannot be locked" until someone runs `--unlock`.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from daedalus.errors import DaedalusError


def lock_path(root: str | Path) -> Path:
    return Path(root) / ".daedalus" / "train.lock"


def acquire_train_lock(root: str | Path, where: str) -> FileLock:
    """Take the root's lock or fail with one line; `where` names the option or file that set the root."""
    path = lock_path(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, timeout=0, fallback_to_soft=False, preserve_lock_file=True)
        lock.acquire()
    except Timeout:
        raise DaedalusError(
            path,
            "held by a running `daeda pipeline train` on this output root; wait for it to "
            "finish (the lock goes away by itself when that process exits, even if it is killed)",
        ) from None
    except OSError as e:
        raise DaedalusError(where, f"output_root {str(root)!r} is not writable: {e.strerror or e}") from None
    return lock
