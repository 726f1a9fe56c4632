"""The scale run: the demo service over 100M feed events in 60 days, both stages, on this machine.

    .venv/bin/python bench/scale_run.py                          # 100M events, 60 days
    .venv/bin/python bench/scale_run.py --events 3.3M --days 2   # a two-day trial of the same density

The project (bench/work/scale-<events>-<days>d/) is the shipped service (`dssm_ranking`: two
views, the demo's aggregations with their bucketed, sequence and label-window features, two
embeddings over a Lance store), the demo data generated at scale (reused when the
parameters match) and runtime.yaml as shipped but for the range. One
`daeda pipeline train dssm_ranking` on a fresh output root; then, per stage, each job's wall
time and peak memory from Snakemake's benchmark files (the per-source-day state jobs
included), the run's wall time and the peak RSS summed over its process tree. Writes
bench/work/scale.json and prints a Markdown table.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from run import TreeSampler, label, parse_size  # noqa: E402

PY = sys.executable
START = dt.date(2026, 4, 1)


def setup(work: Path, events: int, days: int) -> Path:
    from daedalus.demo import generate_demo

    root = work / f"scale-{label(events)}-{days}d"
    root.mkdir(parents=True, exist_ok=True)
    end = START + dt.timedelta(days=days - 1)
    for sub in ("feature_views", "feature_services"):
        shutil.rmtree(root / sub, ignore_errors=True)
        shutil.copytree(REPO / sub, root / sub, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(root / "config", ignore_errors=True)
    shutil.copytree(REPO / "config" / "training", root / "config" / "training")
    shutil.copy(REPO / "config" / "config.yaml", root / "config" / "config.yaml")
    rt = root / "config/training/runtime.yaml"
    text = re.sub(r"(?m)^feed_start:.*$", f"feed_start: {START.isoformat()}", rt.read_text())
    rt.write_text(re.sub(r"(?m)^feed_end:.*$", f"feed_end: {end.isoformat()}", text))
    params = {"events": events, "days": days}
    manifest = root / "data" / ".scale.json"
    if not (manifest.exists() and json.loads(manifest.read_text()).get("params") == params):
        shutil.rmtree(root / "data", ignore_errors=True)
        t0 = time.perf_counter()
        # Two days past the range: the label window (1d) waits for the likes of day + 2.
        stats = generate_demo(
            root / "data" / "demo",
            start=START,
            end=end + dt.timedelta(days=2),
            lookback_days=31,
            users=max(2000, events // 200),
            artworks=max(5000, events // 400),
            events_per_day=events // days,
        )
        took = time.perf_counter() - t0
        manifest.write_text(json.dumps({"params": params, "generate_s": took, "stats": stats}, default=str))
        print(f"generated the demo data in {took:.0f} s", flush=True)
    return root


def jobs(root: Path, out: str) -> dict[str, list[dict[str, float]]]:
    """Per kind of job (skeleton, enrich, state/partials, state/snapshot): each job's own
    seconds and rows (its log) and, for day jobs, the job process's peak RSS in MiB
    (Snakemake's benchmark file; a job in the run's warm worker shows the worker's client)."""
    meta = root / out / ".daedalus"
    found: dict[str, list[dict[str, float]]] = {}
    for log in sorted((meta / "logs").rglob("dt=*.log")):
        kind = log.parent.relative_to(meta / "logs").as_posix()
        text = log.read_text()
        job: dict[str, float] = {}
        if m := re.search(r"rows=(\d+) parts=\d+ seconds=([\d.]+)", text):  # skeleton
            job = {"rows": int(m.group(1)), "seconds": float(m.group(2))}
        elif m := re.search(r"files=\d+ seconds=([\d.]+)", text):  # state
            job = {"seconds": float(m.group(1))}
        elif m := re.search(r'"rows": (\d+), "shards": \d+, "seconds": ([\d.]+)', text):  # enrich
            job = {"rows": int(m.group(1)), "seconds": float(m.group(2))}
        if not job:
            continue
        job["own_process"] = float("in the run's worker" not in text)
        bench = meta / "benchmarks" / kind / f"{log.stem}.tsv"
        if bench.exists():
            head, *rows = bench.read_text().splitlines()
            v = dict(zip(head.split("\t"), rows[-1].split("\t")))
            job["max_rss"] = float(v["max_rss"])
        found.setdefault(kind, []).append(job)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="100M")
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    a = ap.parse_args()
    events = parse_size(a.events)
    root = setup(a.work, events, a.days)
    out = "data/training_output"
    for d in (out, out + "_enriched", ".snakemake", ".daedalus_tmp"):
        shutil.rmtree(root / d, ignore_errors=True)
    cmd = [PY, "-m", "daedalus", "pipeline", "train", "dssm_ranking"]
    t0 = time.perf_counter()
    with (root / "scale-train.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.done.set()
        sampler.join()
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"train failed ({rc}); see {root / 'scale-train.log'}")
    per = jobs(root, out)
    rows = sum(int(j.get("rows", 0)) for j in per.get("skeleton", []))
    size = {d: sum(f.stat().st_size for f in (root / d).rglob("*") if f.is_file()) for d in (out, out + "_enriched")}
    result = {
        "events": events,
        "days": a.days,
        "wall_s": wall,
        "tree_peak_gib": sampler.peak / 2**30,
        # The largest process: a warm worker runs one job at a time, so this bounds its jobs.
        "process_peak_gib": sampler.process_peak / 2**30,
        "rows": rows,
        "bytes": size,
        "jobs": per,
    }
    (a.work / "scale.json").write_text(json.dumps(result, indent=1))
    print(
        f"`daeda pipeline train dssm_ranking`, {label(events)} events / {a.days} days ({rows:,} spine rows): "
        f"wall {wall:.0f} s, process tree peak {sampler.peak / 2**30:.1f} GiB, largest process "
        f"{sampler.process_peak / 2**30:.2f} GiB; output "
        f"{size[out] / 2**30:.1f} GiB skeleton, {size[out + '_enriched'] / 2**30:.1f} GiB enriched"
    )
    print("| jobs | count | in own process | seconds median | seconds max | peak RSS median | peak RSS max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, js in per.items():
        s = [j["seconds"] for j in js]
        m = [j["max_rss"] / 1024 for j in js if "max_rss" in j and j["own_process"]]
        mem = f"{statistics.median(m):.2f} GiB | {max(m):.2f} GiB" if m else "- | -"
        own = sum(int(j["own_process"]) for j in js)
        print(f"| {kind} | {len(js)} | {own} | {statistics.median(s):.2f} s | {max(s):.2f} s | {mem} |")


if __name__ == "__main__":
    main()
