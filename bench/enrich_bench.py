"""Benchmark of the enrich stage (not a test).

    .venv/bin/python bench/enrich_bench.py --rows 5000000          # defaults: 1M x 64 store
    .venv/bin/python bench/enrich_bench.py --rows 1000000 --keep   # keep the generated data

Generates one skeleton day (`--rows` rows in parts of `--chunk-rows`, each row with a scalar
`artwork_id` and a list of 0..`--max-history` history ids, ~2% of ids absent from the store)
and a Lance store (`--store-rows` vectors of `--dim` float32), then measures, each in its
own subprocess so memory figures do not mix:

  (a) baseline: one process, no Ray: load the store into a matrix (dense id->row index),
      read the parts in order, gather + mean (the same numpy kernel as the stage), write
      Zstd shards of `--shard-rows` with pyarrow;
  (b) ray: `ensure_ray(None, --num-cpus)` (timed separately: Ray start-up), then
      `run_enrich_stage` (Ray Data: read_parquet -> one actor -> ordered driver writer).

Memory: a sampler thread in this (parent) process sums RSS and PSS over the subprocess and
all its descendants (for (b): the driver, raylet, GCS, Ray workers and the actor) every
0.25 s; PSS splits shared pages (the object store in /dev/shm) between the processes that
map them, so it is the fairer "total" figure; RSS double-counts shared pages.
The outputs of (a) and (b) are compared file by file (bytes) and, if they differ, cell by cell.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAY = "dt=2026-04-01"
EMBEDDINGS = [("artwork_emb", "artwork_id"), ("history_emb", "user_engagement__recent_artworks_30d")]


# -- data -------------------------------------------------------------------------------


def generate(work: Path, a: argparse.Namespace) -> dict:
    import lance
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    key_space = int(a.store_rows / (1 - a.missing))
    keys = rng.choice(key_space, size=a.store_rows, replace=False).astype(np.int64)  # random order
    store_uri = work / "artworks.lance"
    if store_uri.exists():
        shutil.rmtree(store_uri)
    step = 250_000
    for i in range(0, a.store_rows, step):
        k = keys[i : i + step]
        vec = rng.standard_normal((len(k), a.dim), dtype=np.float32)
        t = pa.table(
            {"artwork_id": k, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), a.dim)}
        )
        lance.write_dataset(t, str(store_uri), mode="create" if i == 0 else "append")
    day = work / "skeleton" / DAY
    if day.exists():
        shutil.rmtree(day)
    day.mkdir(parents=True)
    ts0 = 1_775_001_600_000_000  # 2026-04-01 UTC, microseconds
    n_parts = 0
    for p, start in enumerate(range(0, a.rows, a.chunk_rows)):
        n = min(a.chunk_rows, a.rows - start)
        lengths = rng.integers(0, a.max_history + 1, n)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        hist = rng.integers(0, key_space, int(offsets[-1]), dtype=np.int64)
        t = pa.table(
            {
                "event_timestamp": pa.array(
                    ts0 + np.sort(rng.integers(0, 86_400_000_000, n)), pa.timestamp("us", tz="UTC")
                ),
                "user_id": pa.array(rng.integers(0, 2_000_000, n, dtype=np.int64)),
                "artwork_id": pa.array(rng.integers(0, key_space, n, dtype=np.int64)),
                "clicked": pa.array(rng.random(n) < 0.1),
                "position": pa.array(rng.integers(0, 50, n, dtype=np.int64)),
                "user_engagement__recent_artworks_30d": pa.ListArray.from_arrays(pa.array(offsets), pa.array(hist)),
            }
        )
        pq.write_table(t, day / f"part-{p}-0.parquet", compression="zstd")
        n_parts += 1
    size = sum(f.stat().st_size for f in day.iterdir())
    return {
        "store_uri": str(store_uri),
        "skeleton_day": str(day),
        "parts": n_parts,
        "skeleton_mb": round(size / 2**20, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# -- the two contenders (each runs in its own subprocess) ---------------------------------


def phase_baseline(a: argparse.Namespace) -> dict:
    import pyarrow.parquet as pq

    from daedalus.atomic import publish_dir, temp_sibling
    from daedalus.enrich.pooling import EmbeddingSpec, enrich_table
    from daedalus.enrich.stage import ShardWriter, _skeleton_schema, plan_output_schema, skeleton_parts
    from daedalus.enrich.store import EmbeddingStore, pin_store

    t0 = time.perf_counter()
    specs = [EmbeddingSpec(n, c) for n, c in EMBEDDINGS]
    parts = skeleton_parts(Path(a.skeleton_day))
    skel_schema, rows = _skeleton_schema(parts)
    ref = pin_store(a.store_uri, "artwork_id", "embedding")
    store = EmbeddingStore.load(ref)
    t_load = time.perf_counter() - t0
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    tmp.mkdir()
    writer = ShardWriter(tmp, plan_output_schema(skel_schema, specs, ref.dim, Path(a.skeleton_day)), a.shard_rows)
    for p in parts:
        for batch in pq.ParquetFile(p).iter_batches(batch_size=a.batch_rows):
            writer.add(enrich_table(batch, store, specs))
    writer.close()
    publish_dir(tmp, out)
    return {"rows": rows, "seconds": time.perf_counter() - t0, "store_load_seconds": t_load, "shards": writer.shards}


def phase_ray(a: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    import ray
    import ray.data  # noqa: F401

    from daedalus.enrich.stage import ensure_ray, run_enrich_stage

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    how = ensure_ray(a.ray_address, a.num_cpus)
    t_init = time.perf_counter() - t1
    t2 = time.perf_counter()
    res = run_enrich_stage(
        Path(a.skeleton_day),
        Path(a.out),
        store_uri=a.store_uri,
        key="artwork_id",
        vector="embedding",
        embeddings=EMBEDDINGS,
        shard_rows=a.shard_rows,
        batch_rows=a.batch_rows,
        actor_num_cpus=a.actor_cpus,
    )
    t_stage = time.perf_counter() - t2
    t3 = time.perf_counter()
    ray.shutdown()
    return {
        "rows": res["rows"],
        "seconds": t_stage,
        "import_seconds": t_import,
        "init_seconds": t_init,
        "ray": how,
        "shutdown_seconds": time.perf_counter() - t3,
        "shards": res["shards"],
    }


# -- measurement ------------------------------------------------------------------------


class TreeSampler(threading.Thread):
    """Peak summed RSS / PSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.25, extra_roots: tuple[int, ...] = ()) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.extra_roots = pid, interval, extra_roots
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                break
            seen = {p.pid for p in procs}
            for pid in self.extra_roots:  # a Ray head's processes (not our descendants)
                try:
                    r = psutil.Process(pid)
                    for p in [r] + r.children(recursive=True):
                        if p.pid not in seen:
                            seen.add(p.pid)
                            procs.append(p)
                except psutil.Error:
                    pass
            rss = pss = 0
            for p in procs:
                try:
                    m = p.memory_full_info()
                    rss += m.rss
                    pss += getattr(m, "pss", m.rss)
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(procs))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_phase(phase: str, a: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--out", str(out)] + passthrough(a)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    sampler = TreeSampler(proc.pid, extra_roots=tuple(getattr(a, "head_pids", ()) if phase == "ray" else ()))
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{phase} failed (exit {proc.returncode}):\n{stderr[-4000:]}")
    res = json.loads(stdout.strip().splitlines()[-1])
    res.update(
        wall_seconds=wall,
        peak_rss_mb=sampler.peak_rss / 2**20,
        peak_pss_mb=sampler.peak_pss / 2**20,
        peak_processes=sampler.peak_procs,
        stderr_lines=len([ln for ln in stderr.splitlines() if ln.strip()]),
    )
    return res


def passthrough(a: argparse.Namespace) -> list[str]:
    return (["--ray-address", a.ray_address] if a.ray_address else []) + [
        "--store-uri",
        a.store_uri,
        "--skeleton-day",
        a.skeleton_day,
        "--shard-rows",
        str(a.shard_rows),
        "--batch-rows",
        str(a.batch_rows),
        "--num-cpus",
        str(a.num_cpus),
        "--actor-cpus",
        str(a.actor_cpus),
    ]


def median_run(runs: list[dict]) -> dict:
    """The run with the median `seconds` (its own memory figures), with every run's seconds."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    res = dict(ordered[(len(ordered) - 1) // 2])
    res["all_seconds"] = [round(r["seconds"], 1) for r in runs]
    return res


def compare(a_dir: Path, b_dir: Path) -> str:
    import pyarrow.parquet as pq

    an, bn = sorted(p.name for p in a_dir.iterdir()), sorted(p.name for p in b_dir.iterdir())
    if an != bn:
        return f"DIFFERENT shard names ({len(an)} vs {len(bn)})"
    if all((a_dir / n).read_bytes() == (b_dir / n).read_bytes() for n in an):
        return f"identical bytes ({len(an)} shards)"
    for n in an:
        if not pq.read_table(a_dir / n).equals(pq.read_table(b_dir / n)):
            return f"DIFFERENT values in {n}"
    return "same values, different bytes"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--store-rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--max-history", type=int, default=50)
    ap.add_argument("--missing", type=float, default=0.02, help="fraction of the id space absent from the store")
    ap.add_argument("--chunk-rows", type=int, default=500_000, help="rows per skeleton part")
    ap.add_argument("--shard-rows", type=int, default=200_000)
    ap.add_argument("--batch-rows", type=int, default=131_072)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--actor-cpus", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="default: a new temp dir (removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reuse-data", action="store_true", help="skip generation when --workdir already has data")
    ap.add_argument("--only", choices=["baseline", "ray"], default=None)
    ap.add_argument(
        "--head",
        action="store_true",
        help="(b) attaches to a head started once with start_local_head (as `daeda pipeline train` "
        "does); its processes count in (b)'s memory",
    )
    ap.add_argument("--ray-address", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=1, help="run (a) and (b) alternately this many times; medians")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the medians (for bench/run.py)")
    # internal (subprocess phases)
    ap.add_argument("--phase", choices=["baseline", "ray"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--store-uri", help=argparse.SUPPRESS)
    ap.add_argument("--skeleton-day", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.phase:
        res = phase_baseline(a) if a.phase == "baseline" else phase_ray(a)
        print(json.dumps(res))
        return

    command = " ".join(
        shlex.quote(x)
        for x in [
            os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable,
            os.path.relpath(__file__, ROOT),
        ]
        + sys.argv[1:]
    )
    work = a.workdir or Path(tempfile.mkdtemp(prefix="enrich-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if a.reuse_data and (work / "artworks.lance").exists() and (work / "skeleton" / DAY).exists():
            gen = {
                "store_uri": str(work / "artworks.lance"),
                "skeleton_day": str(work / "skeleton" / DAY),
                "seconds": 0.0,
                "parts": len(list((work / "skeleton" / DAY).glob("part-*.parquet"))),
            }
        else:
            gen = generate(work, a)
        a.store_uri, a.skeleton_day = gen["store_uri"], gen["skeleton_day"]
        print(
            f"data: {a.rows:,} rows in {gen['parts']} parts, store {a.store_rows:,} x {a.dim} "
            f"(generated in {gen['seconds']} s) under {work}",
            flush=True,
        )
        head_s = None
        if a.head and a.only != "baseline":
            from daedalus.enrich import cluster

            th = time.perf_counter()
            a.ray_address = cluster.start_local_head(a.num_cpus, None)
            head_s = time.perf_counter() - th
            a.head_pids = tuple(cluster._HEADS[-1].pids)
            print(f"ray head {a.ray_address} started in {head_s:.1f} s", flush=True)
        runs: dict[str, list[dict]] = {"baseline": [], "ray": []}
        for i in range(a.repeat):
            for phase in ("baseline", "ray"):
                if a.only and a.only != phase:
                    continue
                res = run_phase(phase, a, work / phase / DAY)
                runs[phase].append(res)
                print(
                    f"{phase} #{i + 1}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()})}",
                    flush=True,
                )
        results = {k: median_run(v) for k, v in runs.items() if v}
        print()
        print(f"command: {command}")
        print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print()
        print(f"{'':34s} {'seconds':>9s} {'rows/s':>10s} {'peak PSS MB':>12s} {'peak RSS MB':>12s}")
        if "baseline" in results:
            b = results["baseline"]
            print(
                f"{'(a) single process (numpy)':34s} {b['seconds']:9.1f} {b['rows'] / b['seconds']:10,.0f} "
                f"{b['peak_pss_mb']:12,.0f} {b['peak_rss_mb']:12,.0f}"
            )
        if "ray" in results:
            r = results["ray"]
            print(
                f"{'(b) run_enrich_stage (Ray warm)':34s} {r['seconds']:9.1f} {r['rows'] / r['seconds']:10,.0f} "
                f"{r['peak_pss_mb']:12,.0f} {r['peak_rss_mb']:12,.0f}"
            )
            e2e = r["import_seconds"] + r["init_seconds"] + r["seconds"]
            what = "attach" if a.head else "start-up"
            print(
                f"{'    + Ray import and ' + what:34s} {e2e:9.1f} {r['rows'] / e2e:10,.0f}"
                f"   (import {r['import_seconds']:.1f} s, ray.init {r['init_seconds']:.1f} s, shutdown {r['shutdown_seconds']:.1f} s)"
            )
            if head_s is not None:
                print(f"{'    (head start-up, once per run)':34s} {head_s:9.1f}")
        if len(results) == 2:
            b, r = results["baseline"], results["ray"]
            print()
            print(
                f"ratio (b)/(a) throughput: {b['seconds'] / r['seconds']:.2f} (target >= 0.7); "
                f"with Ray start-up: {b['seconds'] / (r['import_seconds'] + r['init_seconds'] + r['seconds']):.2f}"
            )
            print(
                f"memory (b)/(a): PSS {r['peak_pss_mb'] / max(b['peak_pss_mb'], 1):.1f}x, "
                f"RSS {r['peak_rss_mb'] / max(b['peak_rss_mb'], 1):.1f}x (peak {r['peak_processes']} processes)"
            )
            if a.repeat > 1:
                print(f"all runs, seconds: (a) {b['all_seconds']}  (b) {r['all_seconds']}  (medians above)")
            print(f"outputs: {compare(work / 'baseline' / DAY, work / 'ray' / DAY)}")
            print(f"stderr lines: baseline {b['stderr_lines']}, ray {r['stderr_lines']}")
            if a.json:
                print(
                    json.dumps(
                        {
                            "baseline_rows_per_s": b["rows"] / b["seconds"],
                            "ray_rows_per_s": r["rows"] / r["seconds"],
                            "baseline_pss_mb": b["peak_pss_mb"],
                            "ray_pss_mb": r["peak_pss_mb"],
                            "ratio": b["seconds"] / r["seconds"],
                            "outputs": compare(work / "baseline" / DAY, work / "ray" / DAY),
                        }
                    )
                )
    finally:
        if a.ray_address and a.head:
            from daedalus.enrich import cluster

            cluster.stop_head()
        if not a.keep and a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
