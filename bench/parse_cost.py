"""What a Snakefile parse costs with and without the kept compile (daedalus.plancache).

    .venv/bin/python bench/parse_cost.py --repeat 5

Every Slurm job runs its own `python -m snakemake`, which parses the Snakefile, and
`daeda pipeline train` runs Snakemake after compiling itself. The project is the demo at its
default size over its default range (bench/work/parse_cost, made once). Two figures, each a
fresh process, medians of `--repeat` runs, the two alternating:

- `load_workflow`: what the Snakefile's first line (rules/common.smk) costs: a fresh Python
  importing Daedalus and compiling the service, with the kept compile (hit) and with its
  entry removed before each run (miss, what every parse paid before);
- `snakemake -n`: the whole parse and DAG of one day's skeleton target, as a cluster job's
  Snakemake builds it, hit and miss.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work" / "parse_cost"
PY = sys.executable
LOAD = "from daedalus.workflow import load_workflow; load_workflow({})"


def sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return res


def project() -> Path:
    if not (WORK / "data" / "demo").exists():
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        for d in ("feature_views", "feature_services"):
            shutil.copytree(REPO / d, WORK / d, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(REPO / "config" / "training", WORK / "config" / "training")
        shutil.copy(REPO / "config" / "config.yaml", WORK / "config" / "config.yaml")
        sh([PY, "-m", "daedalus", "demo"], WORK)
    sh([PY, "-m", "daedalus", "pipeline", "compile", "dssm_ranking"], WORK)
    return WORK


def timed(cmd: list[str], cwd: Path, *, miss: bool) -> float:
    if miss:
        shutil.rmtree(cwd / ".daedalus_tmp" / "compiled", ignore_errors=True)
    t = time.perf_counter()
    sh(cmd, cwd)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    p = project()
    day = "2026-04-20"
    load = [PY, "-c", LOAD]
    dry = [PY, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n", "--quiet", "all"]
    dry += ["--config", f"target_date={day}", "stage=skeleton", "--cores", "1"]
    results: dict[str, dict[str, list[float]]] = {"load_workflow": {}, "snakemake -n (one day)": {}}
    sh(load, p)  # makes the entry
    for _ in range(args.repeat):
        for name, cmd in (("load_workflow", load), ("snakemake -n (one day)", dry)):
            for case in ("miss", "hit"):
                results[name].setdefault(case, []).append(timed(cmd, p, miss=case == "miss"))
    print("| fresh process | compile kept (hit) | compiled again (miss) | saved |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        hit, miss = statistics.median(r["hit"]), statistics.median(r["miss"])
        print(f"| {name} | {hit:.2f} s | {miss:.2f} s | {miss - hit:.2f} s ({miss / hit:.2f}x) |")


if __name__ == "__main__":
    main()
