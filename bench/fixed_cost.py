"""The fixed cost of one day job, part by part, before and after the warm worker.

    .venv/bin/python bench/fixed_cost.py                     # after only (this checkout)
    .venv/bin/python bench/fixed_cost.py --before 6f1a2b3    # also a commit, in a worktree
    .venv/bin/python bench/fixed_cost.py --before REF --quickstart   # + the 61-day demo, both

The project is the demo at its default size (about 3,000 feed rows a day) over two days:
2026-04-02 with its feed partition removed (a zero-row day: its cost is all fixed cost) and
2026-04-03 (3,000 rows). `daeda pipeline train --day-workers 1` runs it on a fresh output
root, `--repeat` times; each job's parts come from its log (the stage's own timings) and its
Snakemake benchmark file (the job process's wall time). Two parts are measured on their
own: Snakemake's start of a job (20 trivial jobs of a `script:` rule and of a `shell:` rule,
less the run with one) and a cold Python importing what the job imports.

"Before" runs REF's code from a git worktree in a throw-away environment that reuses this
checkout's installed packages (bench/work/before-venv), so both use the same libraries.
Prints a Markdown table (medians; seconds) and writes bench/work/fixed_cost.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
ZERO, FULL = "2026-04-02", "2026-04-03"


def sh(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return res


def before_env(ref: str) -> tuple[Path, Path]:
    """(python, checkout) of REF: a worktree, and a venv whose site-packages are this venv's
    but whose `daedalus` is the worktree's (put first on the path; no editable finder)."""
    tree = WORK / f"before-{ref}"
    if not tree.exists():
        sh(["git", "worktree", "add", "--detach", str(tree), ref], REPO)
    venv = WORK / f"before-venv-{ref}"
    py = venv / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], REPO)
        site = Path(
            sh([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], REPO).stdout.strip()
        )
        (site / "before.pth").write_text(f"{tree}\n{sysconfig.get_paths()['purelib']}\n")
        for tool in ("ray", "snakemake"):  # commands the code runs next to its Python
            (venv / "bin" / tool).symlink_to(Path(sys.executable).parent / tool)
    return py, tree


def project(py: Path) -> Path:
    p = WORK / "fixed-cost-project"
    if not (p / "data/demo/.daeda-demo.json").exists():
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
        for d in ("feature_views", "feature_services"):
            shutil.copytree(REPO / d, p / d, ignore=shutil.ignore_patterns("__pycache__"))
        (p / "config/training").mkdir(parents=True)
        for f in ("config/config.yaml", "config/training/aggregations.yaml", "config/training/runtime.yaml"):
            shutil.copy(REPO / f, p / f)
        sh([sys.executable, "-m", "daedalus", "demo", "--start", "2026-04-01", "--end", "2026-04-03"], p)
        shutil.rmtree(p / f"data/demo/sources/feed/dt={ZERO}")  # the zero-row day
    rt = p / "config/training/runtime.yaml"
    text = re.sub(r"(?m)^feed_start:.*$", f"feed_start: {ZERO}", rt.read_text())
    rt.write_text(re.sub(r"(?m)^feed_end:.*$", f"feed_end: {FULL}", text))
    return p


def job_parts(root: Path) -> dict[str, dict[str, float]]:
    """Per job (stage/day): wall of its process, and the stage's own timings from its log."""
    out: dict[str, dict[str, float]] = {}
    for stage in ("skeleton", "enrich"):
        for day in (ZERO, FULL):
            parts: dict[str, float] = {}
            tsv = root / f".daedalus/benchmarks/{stage}/dt={day}.tsv"
            with tsv.open() as f:
                parts["job wall"] = float(next(csv.DictReader(f, delimiter="\t"))["s"])
            log = (root / f".daedalus/logs/{stage}/dt={day}.log").read_text()
            if stage == "skeleton":
                parts["stage"] = float(re.findall(r"seconds=([0-9.]+)", log)[-1])
                ops = json.loads(re.findall(r"operator seconds: (\{.*\})", log)[-1])
                parts["operators"] = sum(ops.values())
            else:
                summary = json.loads(re.findall(r"(\{\"rows\".*\})", log)[-1])
                parts["stage"] = summary["seconds"]
                for k in ("ray_init_seconds", "pin_seconds", "first_batch_seconds", "close_publish_seconds"):
                    if k in summary:
                        parts[k] = summary[k]
                parts["ray"] = summary["ray"]  # type: ignore[assignment]
            out[f"{stage} {day}"] = parts
    return out


def run_variant(py: Path, proj: Path, repeat: int) -> dict:
    runs = []
    for i in range(repeat):
        root = f"fc_root_{py.parent.parent.name}"
        for r in (proj / root, proj / (root + "_enriched"), proj / ".snakemake"):
            shutil.rmtree(r, ignore_errors=True)
        t0 = time.perf_counter()
        sh(
            [
                str(py),
                "-m",
                "daedalus",
                "pipeline",
                "train",
                "dssm_ranking",
                "--day-workers",
                "1",
                "--output-root",
                root,
            ],
            proj,
        )
        wall = time.perf_counter() - t0
        runs.append({"train wall": wall, "jobs": job_parts(proj / root)})
        print(f"  run {i + 1}: train {wall:.1f} s", file=sys.stderr)
    return {"runs": runs}


def snakemake_job_start(py: Path, n: int = 20) -> dict[str, float]:
    """Seconds Snakemake adds per local job: a `script:` rule (its Python preamble) and a
    `shell:` rule, from 20 trivial jobs less 1."""
    d = WORK / "snakemake-job-start"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "noop.py").write_text("open(snakemake.output[0], 'w').close()\n")
    (d / "Snakefile").write_text(
        "rule all:\n    input: expand('out/{kind}/{i}', kind=[config['kind']], i=range(int(config['count'])))\n"
        "rule script_job:\n    output: 'out/script/{i}'\n    script: 'noop.py'\n"
        "rule shell_job:\n    output: 'out/shell/{i}'\n    shell: 'touch {output}'\n"
    )
    out = {}
    for kind in ("script", "shell"):
        times = {}
        for count in (1, n):
            shutil.rmtree(d / "out", ignore_errors=True)
            shutil.rmtree(d / ".snakemake", ignore_errors=True)
            t0 = time.perf_counter()
            sh([str(py), "-m", "snakemake", "--cores", "1", "--config", f"kind={kind}", f"count={count}"], d)
            times[count] = time.perf_counter() - t0
        out[kind] = (times[n] - times[1]) / (n - 1)
    return out


def import_seconds(py: Path, statement: str, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sh([str(py), "-c", statement], WORK)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def med(runs: list[dict], job: str, key: str) -> float | None:
    vals = [r["jobs"][job].get(key) for r in runs]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def quickstart(py: Path, tree: Path) -> float:
    """The pipeline part of `make train`: the shipped definitions, 61 demo days, 2 day workers."""
    p = WORK / f"quickstart-{tree.name}"
    if not (p / "data/demo/.daeda-demo.json").exists():
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
        for d in ("feature_views", "feature_services", "config"):
            shutil.copytree(tree / d, p / d, ignore=shutil.ignore_patterns("__pycache__", "pipelines"))
        sh([str(py), "-m", "daedalus", "demo"], p)
    for r in ("data/training_output", "data/training_output_enriched", ".snakemake"):
        shutil.rmtree(p / r, ignore_errors=True)
    t0 = time.perf_counter()
    sh([str(py), "-m", "daedalus", "pipeline", "train", "dssm_ranking"], p)
    return time.perf_counter() - t0


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(results: dict) -> str:
    cols = [k for k in ("before", "after") if k in results]
    head = "| part | " + " | ".join(f"{stage} {c}" for stage in ("skeleton", "enrich") for c in cols) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(cols))]

    def row(name: str, fn) -> None:
        cells = [fmt(fn(results[c], stage)) for stage in ("skeleton", "enrich") for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row(
        "Snakemake's start of a job (`script:` before, `shell:` after)",
        lambda r, s: r["snakemake_job_start"]["script" if r["name"] == "before" else "shell"],
    )
    row("Python start and imports of a job process", lambda r, s: r["imports"])
    for day, label in ((ZERO, "zero-row day"), (FULL, "3,000-row day")):
        row(
            f"{label}: Ray connect",
            lambda r, s, d=day: med(r["runs"], f"{s} {d}", "ray_init_seconds") if s == "enrich" else None,
        )
        row(
            f"{label}: planning, actor start and store load (to the first batch)",
            lambda r, s, d=day: med(r["runs"], f"{s} {d}", "first_batch_seconds") if s == "enrich" else None,
        )
        row(
            f"{label}: store open (pin the version)",
            lambda r, s, d=day: med(r["runs"], f"{s} {d}", "pin_seconds") if s == "enrich" else None,
        )
        row(
            f"{label}: operators (the day's queries)",
            lambda r, s, d=day: med(r["runs"], f"{s} {d}", "operators") if s == "skeleton" else None,
        )
        row(
            f"{label}: the stage in all (compute, write, publish)",
            lambda r, s, d=day: med(r["runs"], f"{s} {d}", "stage"),
        )
        row(
            f"{label}: **job process wall** (Snakemake's benchmark)",
            lambda r, s, d=day: med(r["runs"], f"{s} {d}", "job wall"),
        )
        row(
            f"{label}: **fixed cost per job** (job start + job wall - operators)",
            lambda r, s, d=day: (
                None
                if med(r["runs"], f"{s} {d}", "job wall") is None
                else (
                    r["snakemake_job_start"]["script" if r["name"] == "before" else "shell"]
                    + med(r["runs"], f"{s} {d}", "job wall")
                    - (med(r["runs"], f"{s} {d}", "operators") or 0.0)
                )
            ),
        )
    lines.append("")
    for c in cols:
        r = results[c]
        extra = f", 61-day quickstart pipeline {r['quickstart']:.1f} s" if "quickstart" in r else ""
        lines.append(
            f"- {c}: `daeda pipeline train` of the two days {statistics.median(x['train wall'] for x in r['runs']):.1f} s"
            f" (median of {len(r['runs'])}){extra}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="a commit to compare with (run from a git worktree)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quickstart", action="store_true", help="also time the 61-day demo pipeline")
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    variants = {"after": (Path(sys.executable), REPO)}
    if args.before:
        variants = {"before": before_env(args.before), **variants}
    proj = project(Path(sys.executable))
    results: dict = {}
    for name, (py, tree) in variants.items():
        print(f"{name}: {tree}", file=sys.stderr)
        r = run_variant(py, proj, args.repeat)
        r["name"] = name
        r["snakemake_job_start"] = snakemake_job_start(py)
        stmt = (
            "import daedalus.job"
            if name == "after"
            else "import daedalus.workflow, daedalus.skeleton.stage, daedalus.enrich.stage, snakemake.script"
        )
        r["imports"] = import_seconds(py, stmt)
        if args.quickstart:
            r["quickstart"] = quickstart(py, tree)
        results[name] = r
    (WORK / "fixed_cost.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
