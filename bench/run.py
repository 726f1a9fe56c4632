"""The benchmarks in one command: data, every contender in turn, value checks, table and plot.

    .venv/bin/python bench/run.py                        # 1M and 5M events over 14 days, 3 repeats
    .venv/bin/python bench/run.py --sizes 1M,5M,20M:1    # the 20M run is opt-in; :N sets that size's repeats
    .venv/bin/python bench/run.py --sizes 1M --repeat 1 --skip feast,enrich   # a quick look

For each size it generates the demo data at scale (daedalus.demo, bench/work/<size>/, reused
when the parameters match) and runs, each as its own process, one after the other, per repeat:

  daeda        `daeda pipeline train bench_ranking --skeleton-only` (Snakemake, a job per day)
  all-days     the best single DuckDB query for the same joins and windows (bench/queries.py)
  day-by-day   the same query one day at a time
  daeda-joins  `daeda pipeline train bench_joins --skeleton-only` (the two PIT joins only)
  feast-joins  Feast get_historical_features, DuckDB offline store (its own venv, bench/work/feast-venv)

then checks that daeda, all-days and day-by-day give the same value in every cell, and that
daeda-joins and Feast give the same rows. Once per invocation: the enrich stage against its
numpy baseline (bench/enrich_bench.py) and a rerun with nothing to do over 365 days plus
compile time. Figures are medians over the repeats; ratios are taken within each repeat,
then the median. Peak memory: RSS summed over the contender's process tree (psutil, every
0.2 s), and for daeda the largest day job: the largest process of the tree (a warm worker
runs one job at a time) or a job process's own peak (Snakemake's benchmark files).
Writes docs/benchmarks.md (the table) and docs/benchmarks.png (rows/s and peak memory
against events); raw figures go to bench/work/results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from queries import write_script  # noqa: E402

PY = sys.executable
START = dt.date(2026, 4, 1)
CONTENDERS = ["daeda", "all-days", "day-by-day", "daeda-joins", "feast-joins"]
LABELS = {
    "daeda": "daeda pipeline train --skeleton-only (joins + 8 windows)",
    "all-days": "best single DuckDB query, all days (joins + windows)",
    "day-by-day": "the same query one day at a time",
    "daeda-joins": "daeda pipeline train --skeleton-only (joins only)",
    "feast-joins": "Feast 0.67 get_historical_features, DuckDB store (joins only)",
}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not m:
        sys.exit(f"bad size {text!r}: expected e.g. 1M, 500k, 20M")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()])


def label(events: int) -> str:
    return f"{events / 1e6:g}M" if events >= 1_000_000 else f"{events / 1e3:g}k"


class TreeSampler(threading.Thread):
    """Peak RSS summed over a process and all its descendants, and the largest RSS any one
    of them reached (a warm worker runs one day job at a time: its peak bounds each job's)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.process_peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.process_peak = max(self.process_peak, rss)
            self.peak = max(self.peak, total)
            self.done.wait(0.2)


def measure(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Wall seconds and peak tree RSS of a command; its output goes to `log`."""
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
    if rc != 0:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return {"seconds": wall, "peak_gib": sampler.peak / 2**30, "process_peak_gib": sampler.process_peak / 2**30}


def setup_size(work: Path, events: int, days: int) -> tuple[Path, int]:
    """The project directory of one size: definitions, generated data; returns (dir, spine rows)."""
    import pyarrow.parquet as pq

    from daedalus.demo import generate_demo

    root = work / label(events)
    root.mkdir(parents=True, exist_ok=True)
    end = START + dt.timedelta(days=days - 1)
    for sub in ("feature_views", "feature_services", "config"):
        shutil.rmtree(root / sub, ignore_errors=True)
        shutil.copytree(HERE / "skeleton_defs" / sub, root / sub)
    rt = root / "config/training/runtime.yaml"
    rt.write_text(re.sub(r"feed_end: .*", f"feed_end: {end.isoformat()}", rt.read_text()))
    params = {"events": events, "days": days, "start": START.isoformat()}
    manifest = root / "data" / ".bench.json"
    if not (manifest.exists() and json.loads(manifest.read_text()).get("params") == params):
        shutil.rmtree(root / "data", ignore_errors=True)
        t0 = time.perf_counter()
        generate_demo(
            root / "data",
            start=START,
            end=end,
            lookback_days=7,
            users=max(100, events // 100),
            artworks=max(100, events // 40),
            events_per_day=events // days,
        )
        rows = sum(
            pq.ParquetFile(f).metadata.num_rows
            for f in (root / "data/sources/feed").glob("dt=*/*.parquet")
            if START.isoformat() <= f.parent.name[3:] <= end.isoformat()
        )
        manifest.write_text(json.dumps({"params": params, "feed_rows_in_range": rows}))
        print(f"[{label(events)}] generated {rows:,} feed rows in {time.perf_counter() - t0:.0f} s", flush=True)
    flat = root / "data/feast"
    if not flat.exists():
        tmp = root / "data/feast.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        for name in ("user_profile", "artwork_stats"):
            parts = sorted(str(p) for p in (root / "data/sources" / name).glob("dt=*/*.parquet"))
            pq.write_table(pq.read_table(parts, partitioning=None), tmp / f"{name}.parquet")
        tmp.rename(flat)
    return root, json.loads(manifest.read_text())["feed_rows_in_range"]


def feast_python(work: Path) -> Path:
    """Feast in its own virtual environment (it pins its own versions of shared packages)."""
    venv = work / "feast-venv"
    py = venv / "bin/python"
    if not (venv / ".ready").exists():
        print("installing feast[duckdb] into bench/work/feast-venv ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "feast[duckdb]", "matplotlib"], check=True)
        (venv / ".ready").touch()
    return py


def run_contender(name: str, root: Path, days: list[dt.date], a: argparse.Namespace, logs: Path, i: int) -> dict:
    out = f"data/out_{name}"
    shutil.rmtree(root / out, ignore_errors=True)
    shutil.rmtree(root / ".snakemake", ignore_errors=True)
    log = logs / f"{name}-{i}.log"
    if name in ("daeda", "daeda-joins"):
        svc = "bench_ranking" if name == "daeda" else "bench_joins"
        cmd = [PY, "-m", "daedalus", "pipeline", "train", svc, "--skeleton-only", "--output-root", out]
        res = measure(cmd, root, log)
        tsvs = list((root / out / ".daedalus/benchmarks/skeleton").glob("*.tsv"))
        # A job in the run's warm worker shows its client in Snakemake's benchmark file; the
        # worker's own peak is the largest process of the tree.
        res["job_peak_gib"] = max(
            res["process_peak_gib"],
            max(float(ln.split("\t")[2]) for p in tsvs for ln in p.read_text().splitlines()[1:]) / 1024,
        )
        return res
    if name in ("all-days", "day-by-day"):
        script = write_script(
            root, days, out, per_day=name == "day-by-day", windows=True, threads=2, mem=a.memory_limit
        )
        res = measure([PY, str(script)], root, log)
        res.update(json.loads(log.read_text().strip().splitlines()[-1]))  # query_s, write_s
        return res
    if name == "feast-joins":
        (root / out).mkdir(parents=True)
        return measure(
            [
                str(a.feast_py),
                str(HERE / "feast_joins.py"),
                str(root),
                days[0].isoformat(),
                days[-1].isoformat(),
                f"{out}/all.parquet",
            ],
            root,
            log,
        )
    raise ValueError(name)


PAIRS = (
    [
        "user_id",
        "artwork_id",
        "clicked",
        "user_profile__follower_count",
        "user_profile__country",
        "artwork_stats__like_count",
        "artwork_stats__category",
    ]
    + [f"user_activity__{f}_{w}" for f in ("impressions", "clicks") for w in ("1h", "1d", "7d")]
    + ["artwork_activity__impressions_7d", "artwork_activity__clicks_7d"]
)


def check_values(root: Path, days: list[dt.date], ran: set[str]) -> list[str]:
    """Every cell of daeda against the queries (per day, in order); daeda-joins against Feast (as multisets)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    notes = []

    def ours(name: str, day: dt.date) -> pa.Table:
        parts = sorted(
            (root / f"data/out_{name}/dt={day}").glob("part-*.parquet"), key=lambda p: int(p.name.split("-")[1])
        )
        return pa.concat_tables([pq.read_table(p) for p in parts])

    for other in ("all-days", "day-by-day"):
        if not {"daeda", other} <= ran:
            continue
        cells = 0
        for day in days:
            x, y = ours("daeda", day), pq.read_table(root / f"data/out_{other}/dt={day}.parquet")
            assert x.num_rows == y.num_rows, (other, day, x.num_rows, y.num_rows)
            assert x["event_timestamp"].cast(y["event_timestamp"].type).equals(y["event_timestamp"]), (
                other,
                day,
                "event_timestamp",
            )
            for c in PAIRS:
                assert x[c].cast(y[c].type).equals(y[c]), (other, day, c)
            cells += x.num_rows * (len(PAIRS) + 1)
        notes.append(f"daeda = {other}: {cells:,} cells equal")
    if {"daeda-joins", "feast-joins"} <= ran:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        cols = (
            "CAST(event_timestamp AS TIMESTAMP), user_id, artwork_id, user_profile__follower_count, user_profile__country, "
            "artwork_stats__like_count, artwork_stats__category"
        )
        a = f"SELECT {cols} FROM read_parquet('{root}/data/out_daeda-joins/dt=*/part-*.parquet', hive_partitioning=false)"
        b = (
            f"SELECT {cols.replace('user_profile__country', 'user_profile__Country')} "
            f"FROM read_parquet('{root}/data/out_feast-joins/all.parquet')"
        )
        n = con.execute(f"SELECT count(*) FROM ({a})").fetchone()[0]
        diff = con.execute(
            f"SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b})), (SELECT count(*) FROM ({b} EXCEPT ALL {a}))"
        ).fetchone()
        assert diff == (0, 0), f"daeda-joins and Feast differ: {diff} rows"
        notes.append(f"daeda-joins = feast-joins: {n:,} rows equal as multisets")
    return notes


BUILD_365 = """
from pathlib import Path
from daedalus.compile import compile_service
from daedalus.loading import DefinitionPaths
from daedalus.skeleton import run_skeleton_stage
from daedalus.skeleton.qid import publish_qid_map
c = compile_service("bench_ranking", DefinitionPaths())
for day in c.days:
    if not Path(f"data/out/dt={day}").exists():
        run_skeleton_stage(c.plan, day, Path("data/out"), chunk_rows=500000, run_days=c.days)
publish_qid_map(Path("data/out"), "feed_session")
"""


def noop_rerun(work: Path, a: argparse.Namespace) -> dict:
    """A 365-day project, fully built once; then the timings of runs with nothing to do, and of compile."""
    root = work / "noop365"
    end = START + dt.timedelta(days=364)
    stamp = root / ".built"
    if not (root / "data/sources").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for sub in ("feature_views", "feature_services", "config"):
            shutil.copytree(HERE / "skeleton_defs" / sub, root / sub)
        rt = root / "config/training/runtime.yaml"
        rt.write_text(re.sub(r"feed_end: .*", f"feed_end: {end.isoformat()}", rt.read_text()))
        from daedalus.demo import generate_demo

        generate_demo(root / "data", start=START, end=end, lookback_days=7, users=200, artworks=400, events_per_day=100)
    if not stamp.exists():
        # 365 Snakemake jobs would take ~20 min on 2 cores (a Python start-up each); the same
        # stage in one process writes the same outputs in a minute or two. Snakemake then has
        # no metadata for them, which is not a reason to rerun (only missing output, newer
        # input, changed params/code are), so the runs below are true no-ops.
        print("building the 365-day project once, in one process ...", flush=True)
        measure([PY, "-c", BUILD_365], root, work / "noop-build.log")
        measure(
            [
                PY,
                "-m",
                "daedalus",
                "pipeline",
                "train",
                "bench_ranking",
                "--skeleton-only",
                "--output-root",
                "data/out",
            ],
            root,
            work / "noop-first.log",
        )
        stamp.touch()
    train = [PY, "-m", "daedalus", "pipeline", "train", "bench_ranking", "--skeleton-only", "--output-root", "data/out"]
    from daedalus.uptodate import stamp_path

    record = root / stamp_path(root / "data/out")
    checked, runs = [], []
    for _ in range(a.repeat):
        # Without the record Snakemake builds the DAG and checks every input (and then the
        # record is written); with it, train compares the fingerprint and skips Snakemake.
        record.unlink(missing_ok=True)
        checked.append(measure(train, root, work / "noop-checked.log"))
        assert record.exists(), "a no-op run through Snakemake left no record"
        runs.append(measure(train, root, work / "noop.log"))
    out = (work / "noop.log").read_text()
    assert "nothing changed since Snakemake last checked" in " ".join(out.split()), out[-2000:]
    compiles = [
        measure([PY, "-m", "daedalus", "pipeline", "compile", "bench_ranking"], root, work / "compile.log")
        for _ in range(a.repeat)
    ]
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "data/out").glob("dt=*/part-*.parquet")}
    assert len({p.parent for p in mtimes}) == 365, "the 365-day project is incomplete"
    return {
        "noop_s": statistics.median(r["seconds"] for r in runs),
        "noop_all": [r["seconds"] for r in runs],
        "checked_s": statistics.median(r["seconds"] for r in checked),
        "checked_all": [r["seconds"] for r in checked],
        "compile_s": statistics.median(r["seconds"] for r in compiles),
        "noop_tail": out.strip().splitlines()[-3:],
    }


def enrich(a: argparse.Namespace) -> dict:
    cmd = [PY, str(HERE / "enrich_bench.py"), "--rows", str(a.enrich_rows), "--repeat", str(a.repeat), "--json"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"enrich_bench failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(size_runs: dict[str, list[dict]], rows: int) -> dict:
    s = {}
    for name, runs in size_runs.items():
        s[name] = {
            "seconds": med([r["seconds"] for r in runs]),
            "rows_per_s": rows / med([r["seconds"] for r in runs]),
            "peak_gib": med([r["peak_gib"] for r in runs]),
            "all_seconds": [round(r["seconds"], 1) for r in runs],
        }
        if "job_peak_gib" in runs[0]:
            s[name]["job_peak_gib"] = max(r["job_peak_gib"] for r in runs)
        if "query_s" in runs[0]:
            s[name]["query_seconds"] = med([r["query_s"] for r in runs])
            s[name]["query_rows_per_s"] = rows / s[name]["query_seconds"]

    def ratio(x: str, y: str) -> float | None:
        if x in size_runs and y in size_runs:
            return med([size_runs[y][i]["seconds"] / size_runs[x][i]["seconds"] for i in range(len(size_runs[x]))])
        return None

    s["ratios"] = {
        "daeda/all-days": ratio("daeda", "all-days"),
        "daeda/day-by-day": ratio("daeda", "day-by-day"),
        "daeda-joins/feast-joins": ratio("daeda-joins", "feast-joins"),
    }
    return s


def write_docs(results: dict, a: argparse.Namespace) -> None:
    sizes = results["sizes"]
    # The repeats the sizes were run with (a size given as SIZE:N overrides --repeat).
    runs = "/".join(sorted({str(v.get("repeat", a.repeat)) for v in sizes.values()}))
    lines = [
        "# Benchmarks",
        "",
        "Produced by one command (data generation, every contender, value checks, this page and the plot; "
        "a second command with `--merge` replaces the sizes it measures):",
        "",
        f"    {results['command']}",
        "",
        f"Machine: {results['machine']}. {results['days']} days of the demo feed at each size; the feature set of "
        "`bench/skeleton_defs` (two point-in-time joins, user 30d and artwork 7d TTL, and eight windows: per user "
        "count and sum of `clicked` over 1h/1d/7d, per artwork over 7d). Each figure is the median of "
        f"{runs} run(s) (a size given as SIZE:N, N runs; the wall column lists every run); ratios are "
        "taken within a run (rows/s of the first named over the second), then the median. "
        "Peak memory is RSS summed over the contender's process tree; for daeda also the largest day job "
        "(the largest process of the tree: a warm worker's peak, or a job's own process).",
        "",
    ]
    lines += ["| events | contender | wall s | rows/s | peak RSS GiB |", "|---|---|---:|---:|---:|"]
    for size, s in sizes.items():
        for name in CONTENDERS:
            if name in s:
                c = s[name]
                peak = f"{c['peak_gib']:.2f}" + (
                    f" (largest day job {c['job_peak_gib']:.2f})" if "job_peak_gib" in c else ""
                )
                walls = c.get("all_seconds", [])
                wall = f"{c['seconds']:.1f}" + (f" ({', '.join(f'{x:.1f}' for x in walls)})" if len(walls) > 1 else "")
                lines.append(
                    f"| {size} ({s['rows']:,} rows) | {LABELS[name]} | {wall} | {c['rows_per_s']:,.0f} | {peak} |"
                )
                if name == "all-days" and "query_seconds" in c:
                    lines.append(
                        f"| {size} ({s['rows']:,} rows) | the same query without writing its output (its own "
                        f"timing, same run) | {c['query_seconds']:.1f} | {c['query_rows_per_s']:,.0f} | - |"
                    )
    lines += [
        "",
        "Ratios (within a run, median):",
        "",
        "| events | daeda / all-days | daeda / day-by-day | daeda-joins / Feast |",
        "|---|---:|---:|---:|",
    ]
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    for size, s in sizes.items():
        r = s["ratios"]
        lines.append(
            f"| {size} | {fmt(r['daeda/all-days'])} | {fmt(r['daeda/day-by-day'])} | {fmt(r['daeda-joins/feast-joins'])} |"
        )
    lines += ["", "Value checks:", ""] + [f"- {size}: {n}" for size, s in sizes.items() for n in s["checks"]]
    if "noop" in results:
        n = results["noop"]
        lines += [
            "",
            "## Rerun with nothing to do, and compile",
            "",
            f"A 365-day project (`bench/work/noop365`), built once; then `daeda pipeline train bench_ranking "
            f"--skeleton-only` with nothing to do: **{n['noop_s']:.2f} s** (median; runs {[round(x, 2) for x in n['noop_all']]}). "
            "That run finds its fingerprint of the sources, outputs, definitions and code unchanged since "
            "Snakemake last found nothing to do (daedalus/uptodate.py) and skips Snakemake. The same no-op "
            "with Snakemake building the DAG of 365 jobs and checking their (about 17,600) declared inputs (the record "
            f"removed first): **{n['checked_s']:.2f} s** (median; runs {[round(x, 2) for x in n['checked_all']]}). "
            f"`daeda pipeline compile bench_ranking`: **{n['compile_s']:.2f} s**.",
        ]
    if "enrich" in results:
        e = results["enrich"]
        lines += [
            "",
            "## Enrich stage",
            "",
            f"`bench/enrich_bench.py --rows {a.enrich_rows}` (one skeleton day, a 1M x 64 Lance store): "
            f"numpy single process {e['baseline_rows_per_s']:,.0f} rows/s, peak PSS {e['baseline_pss_mb']:,.0f} MB; "
            f"`run_enrich_stage` (Ray Data, warm) {e['ray_rows_per_s']:,.0f} rows/s, peak PSS {e['ray_pss_mb']:,.0f} MB; "
            f"ratio {e['ratio']:.2f}; outputs: {e['outputs']}.",
        ]
    lines += ["", "![rows/s and peak memory against events](benchmarks.png)", ""]
    notes = HERE / "notes.md"  # hand-written: targets, gaps and what limits them
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    (REPO / "docs/benchmarks.md").write_text("\n".join(lines) + "\n")


PLOT = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
r = json.load(open(sys.argv[1]))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
for name, lab in r["labels"].items():
    pts = [(s["rows"], s[name]) for s in r["sizes"].values() if name in s]
    if not pts:
        continue
    xs = [p[0] for p in pts]
    ax1.plot(xs, [p[1]["rows_per_s"] for p in pts], "o-", label=lab)
    ax2.plot(xs, [p[1]["peak_gib"] for p in pts], "o-", label=lab)
for ax, t in ((ax1, "rows/s"), (ax2, "peak RSS (GiB, process tree)")):
    ax.set_xscale("log"); ax.set_xlabel("feed rows (14 days)"); ax.set_title(t); ax.grid(alpha=.3)
ax1.legend(fontsize=7)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"""


def plot(results_path: Path, py: Path | None) -> None:
    """matplotlib lives in the bench's Feast venv (not a runtime dependency of Daedalus)."""
    if py is None:
        return
    script = results_path.parent / "plot.py"
    script.write_text(PLOT)
    subprocess.run([str(py), str(script), str(results_path), str(REPO / "docs/benchmarks.png")], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes",
        default="1M,5M",
        help="events per run, comma separated (e.g. 1M,5M,20M:1; SIZE:N runs that size N times)",
    )
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma separated: contenders, or enrich, noop")
    ap.add_argument("--memory-limit", default="12GB", help="DuckDB memory_limit of the query contenders")
    ap.add_argument("--enrich-rows", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--docs-only", action="store_true", help="rewrite the page and plot from the last results.json")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the sizes (and enrich/no-op figures) of the last results.json that this run does not "
        "measure; the page then lists both commands",
    )
    a = ap.parse_args()
    skip = {s for s in a.skip.split(",") if s}
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if a.docs_only:
        results = json.loads((work / "results.json").read_text())
        a.repeat, a.enrich_rows = results.get("repeat", a.repeat), results.get("enrich_rows", a.enrich_rows)
        write_docs(results, a)
        plot(work / "results.json", work / "feast-venv/bin/python")
        return
    a.feast_py = None if "feast-joins" in skip and "plot" in skip else feast_python(work)
    days = [START + dt.timedelta(days=i) for i in range(a.days)]
    results: dict = {
        "command": "python bench/run.py " + " ".join(sys.argv[1:]),
        "days": a.days,
        "labels": {},
        "repeat": a.repeat,
        "enrich_rows": a.enrich_rows,
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"load average at start {os.getloadavg()[0]:.1f}",
        "sizes": {},
    }
    names = [c for c in CONTENDERS if c not in skip]
    results["labels"] = {n: LABELS[n] for n in names}
    for spec in a.sizes.split(","):
        size_text, _, n_text = spec.partition(":")
        size, repeat = parse_size(size_text), int(n_text) if n_text else a.repeat
        root, rows = setup_size(work, size, a.days)
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for i in range(repeat):
            for n in names:
                r = run_contender(n, root, days, a, logs, i)
                runs[n].append(r)
                print(
                    f"[{label(size)} #{i + 1}] {n:<12} {r['seconds']:7.1f} s {rows / r['seconds']:>11,.0f} rows/s "
                    f"peak {r['peak_gib']:.2f} GiB",
                    flush=True,
                )
        s = summarize(runs, rows)
        s["rows"] = rows
        s["repeat"] = repeat
        s["checks"] = check_values(root, days, set(names))
        print(f"[{label(size)}] ratios {s['ratios']}; {'; '.join(s['checks'])}", flush=True)
        results["sizes"][label(size)] = s
    if "enrich" not in skip:
        results["enrich"] = enrich(a)
    if "noop" not in skip:
        results["noop"] = noop_rerun(work, a)
        print(
            f"no-op rerun over 365 days: {results['noop']['noop_s']:.2f} s (through Snakemake "
            f"{results['noop']['checked_s']:.2f} s); compile {results['noop']['compile_s']:.2f} s"
        )
    path = work / "results.json"
    if a.merge and path.exists():
        last = json.loads(path.read_text())
        for key in ("enrich", "noop"):
            if key not in results and key in last:
                results[key] = last[key]
        sizes = {**{k: v for k, v in last["sizes"].items() if k not in results["sizes"]}, **results["sizes"]}
        results["sizes"] = dict(sorted(sizes.items(), key=lambda kv: kv[1]["rows"]))
        results["command"] = last["command"] + "\n    " + results["command"]
        results["labels"] = {**last.get("labels", {}), **results["labels"]}
    path.write_text(json.dumps(results, indent=1, default=str))
    write_docs(results, a)
    plot(path, a.feast_py)
    print(f"wrote docs/benchmarks.md, docs/benchmarks.png and {path}")


if __name__ == "__main__":
    main()
