"""One view feature added: the second run against the first.

    .venv/bin/python bench/feature_change_bench.py --size 5M
    .venv/bin/python bench/feature_change_bench.py --size 20M --repeat 1

Uses bench/run.py's project of that size (bench/work/<size>, generated when missing). Per
repeat, into an empty output root: `daeda pipeline train bench_ranking --skeleton-only`
(the first run), then the same after adding `following_count` to the `user_profile` view (a
source column the join did not read: the view's join changes, every other operator's kept
table is read), each timed as its own process. Prints both wall times and their ratio (the
target: the second run at least 10x faster). The view file is restored afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import PY, label, parse_size, setup_size  # noqa: E402

OUT = "data/out_feature_change"
TRAIN = [PY, "-m", "daedalus", "pipeline", "train", "bench_ranking", "--skeleton-only", "--output-root", OUT]
FEATURE = "  - {name: following_count, dtype: int64}\n"


def timed(cmd: list[str], cwd: Path, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="5M")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    a = ap.parse_args()
    events = parse_size(a.size)
    root, rows = setup_size(a.work, events, a.days)
    view = root / "feature_views/user_profile.yaml"
    original = view.read_text()
    firsts, seconds = [], []
    try:
        for i in range(a.repeat):
            view.write_text(original)
            shutil.rmtree(root / OUT, ignore_errors=True)
            shutil.rmtree(root / ".snakemake", ignore_errors=True)
            firsts.append(timed(TRAIN, root, a.work / "feature-change-first.log"))
            view.write_text(original + FEATURE)
            seconds.append(timed(TRAIN, root, a.work / "feature-change-second.log"))
            print(f"repeat {i + 1}: first {firsts[-1]:.1f} s, after one view feature {seconds[-1]:.1f} s", flush=True)
    finally:
        view.write_text(original)
    res = {
        "size": label(events),
        "rows": rows,
        "first_s": statistics.median(firsts),
        "second_s": statistics.median(seconds),
        "first_all": firsts,
        "second_all": seconds,
    }
    res["ratio"] = res["first_s"] / res["second_s"]
    (a.work / f"feature_change_{label(events)}.json").write_text(json.dumps(res, indent=2))
    print(
        f"| {label(events)} ({rows:,} rows) | first run {res['first_s']:.1f} s | after one view feature "
        f"{res['second_s']:.1f} s | first / second: {res['ratio']:.1f}x |"
    )


if __name__ == "__main__":
    main()
