"""The demo pipeline run locally and through a real single-node Slurm (not a test).

    .venv/bin/python bench/scale_out_bench.py                       # the whole demo (Apr-May 2026)
    .venv/bin/python bench/scale_out_bench.py --end 2026-04-07      # a week

Makes one project (the shipped definitions over `daeda demo` data), copies it twice, and
runs `daeda pipeline train dssm_ranking --day-workers N` in each: once with the local
executor (baseline, one loopback Ray head for the run), once with `--profile slurm` on a
loopback Slurm started for the purpose (tests/slurm_cluster.py; installs Debian's packages
when missing, needs root). Prints both wall times, their ratio, the number of Slurm jobs,
and whether the outputs are byte-identical. Slurm's daemons are stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from projects import DAEDA, data_files, make_project  # noqa: E402
from slurm_cluster import LocalSlurm, install  # noqa: E402

FAST = [
    "--slurm-status-command=squeue",
    "--slurm-init-seconds-before-status-checks=1",
    "--seconds-between-status-checks=2",
]


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2026-04-01")
    ap.add_argument("--end", default="2026-05-31")
    ap.add_argument("--day-workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a temp dir, removed)")
    args = ap.parse_args()
    why = LocalSlurm.unavailable() or install()
    if why:
        sys.exit(f"cannot run Slurm here: {why}")
    work = args.work or Path(tempfile.mkdtemp(prefix="daeda-scale-"))
    base = make_project(work / "base", start=args.start, end=args.end, users=2000, artworks=5000, events_per_day=3000)
    local, slurm_dir = work / "local", work / "slurm"
    for d in (local, slurm_dir):
        shutil.copytree(base, d, symlinks=True)
    train = DAEDA + ["pipeline", "train", "dssm_ranking", "--day-workers", str(args.day_workers)]
    print(f"demo {args.start}..{args.end}, {args.day_workers} day workers, load {os.getloadavg()[0]:.1f}", flush=True)
    t_local = timed(train, local)
    print(f"local executor: {t_local:.1f} s", flush=True)
    cluster = LocalSlurm(work / "slurm-state")
    try:
        cluster.start()
        t_slurm = timed(
            ["timeout", "-s", "KILL", "7200", *train, "--profile", "slurm", *[f"--snakemake-arg={a}" for a in FAST]],
            slurm_dir,
        )
        jobs = len(cluster.completed_job_ids(0))
    finally:
        cluster.stop()
    same = all(
        data_files(local / s) == data_files(slurm_dir / s)
        for s in ("data/training_output", "data/training_output_enriched")
    )
    print(
        f"slurm executor: {t_slurm:.1f} s ({jobs} Slurm jobs), ratio local/slurm {t_local / t_slurm:.2f}, "
        f"outputs byte-identical: {same}, load {os.getloadavg()[0]:.1f}"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
