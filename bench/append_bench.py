"""Daily append: the next day added to a 365-day history, against one fresh day and everything.

    .venv/bin/python bench/append_bench.py                  # 2,000 events a day, 3 repeats
    .venv/bin/python bench/append_bench.py --events-per-day 20000 --repeat 1

The project is bench/skeleton_defs (two PIT joins, 8 windows up to 7d, qids) over the demo
generator's data for 366 days (bench/work/append365, reused when the parameters match).
Three runs of `daeda pipeline train bench_ranking --skeleton-only`, each its own process:

  everything   the first 365 days into an empty output root (measured once, when built)
  append       feed_end moved to day 366 over a copy of that root: Snakemake's DAG of 366
               days, the state jobs of day 366 and its day job, and qid_map.parquet
  fresh day    `--target-date` day 366 into an empty output root: the same day job, with the
               state it reads made from the raw look-back

and prints the append's wall time against the other two (the target: append at most 2x one
fresh day). Raw figures go to bench/work/append.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
PY = sys.executable
START = dt.date(2026, 4, 1)
HISTORY = 365
TRAIN = [PY, "-m", "daedalus", "pipeline", "train", "bench_ranking", "--skeleton-only"]


def timed(cmd: list[str], cwd: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def set_end(project: Path, end: dt.date) -> None:
    rt = project / "config/training/runtime.yaml"
    rt.write_text(re.sub(r"feed_end: .*", f"feed_end: {end.isoformat()}", rt.read_text()))


def build(work: Path, events_per_day: int) -> tuple[Path, dict]:
    """The project with 366 days of sources and its first 365 days trained (once per size)."""
    project = work / f"append365-{events_per_day}"
    meta = project / ".built.json"
    if meta.exists():
        return project, json.loads(meta.read_text())
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    for sub in ("feature_views", "feature_services", "config"):
        shutil.copytree(HERE / "skeleton_defs" / sub, project / sub)
    from daedalus.demo import generate_demo

    last = START + dt.timedelta(days=HISTORY)
    generate_demo(
        project / "data",
        start=START,
        end=last,
        lookback_days=7,
        users=2000,
        artworks=4000,
        events_per_day=events_per_day,
    )
    set_end(project, last - dt.timedelta(days=1))
    print(f"training the first {HISTORY} days once ...", flush=True)
    everything = timed(TRAIN, project, work / "append-everything.log")
    info = {"everything_s": everything, "events_per_day": events_per_day}
    meta.write_text(json.dumps(info))
    return project, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events-per-day", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    project, info = build(a.work, a.events_per_day)
    new_day = START + dt.timedelta(days=HISTORY)
    appends, fresh = [], []
    for i in range(a.repeat):
        # Each repeat appends to its own copy of the 365-day root (Snakemake's metadata included).
        trial = a.work / f"append-trial-{a.events_per_day}"
        shutil.rmtree(trial, ignore_errors=True)
        shutil.copytree(project, trial, symlinks=True)
        set_end(trial, new_day)
        appends.append(timed(TRAIN, trial, a.work / "append.log"))
        assert (trial / f"data/out/dt={new_day}").is_dir(), "the appended day is missing"
        shutil.rmtree(trial / "data/fresh", ignore_errors=True)
        fresh.append(
            timed(
                [*TRAIN, "--target-date", new_day.isoformat(), "--output-root", "data/fresh"],
                trial,
                a.work / "append-fresh.log",
            )
        )
        # The same values but the qids (a fresh root numbers its sessions from 0).
        same = [pq.read_table(trial / f"data/{r}/dt={new_day}").drop_columns(["qid"]) for r in ("out", "fresh")]
        assert same[0].equals(same[1]), "the appended day differs from a fresh run of it"
        print(f"repeat {i + 1}: append {appends[-1]:.1f} s, fresh day {fresh[-1]:.1f} s", flush=True)
    res = {
        **info,
        "history_days": HISTORY,
        "append_s": statistics.median(appends),
        "fresh_day_s": statistics.median(fresh),
        "append_all": appends,
        "fresh_all": fresh,
    }
    res["append_vs_fresh_day"] = res["append_s"] / res["fresh_day_s"]
    res["everything_vs_append"] = res["everything_s"] / res["append_s"]
    (a.work / "append.json").write_text(json.dumps(res, indent=2))
    print(
        f"| {a.events_per_day:,} events/day, {HISTORY} days | append day {HISTORY + 1}: {res['append_s']:.1f} s "
        f"| one fresh day: {res['fresh_day_s']:.1f} s | all {HISTORY} days: {res['everything_s']:.0f} s "
        f"| append / fresh day: {res['append_vs_fresh_day']:.2f}x | everything / append: "
        f"{res['everything_vs_append']:.0f}x |"
    )


if __name__ == "__main__":
    main()
