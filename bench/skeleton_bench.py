"""Skeleton stage at scale: `daeda pipeline train --skeleton-only` against a day-at-a-time
DuckDB query (what a hand-written per-day pipeline costs), on the same data, same run.

    .venv/bin/python bench/skeleton_bench.py --events 20000000 --days 14

Generates the demo data at scale (bench/work/, reused when the parameters match), runs each
contender under /usr/bin/time -v, checks that both give the same values for every row of one
day, and prints rows/s, wall time and peak RSS with their ratio. The feature set is the one
of shared/notes/skeleton-performance.md: two PIT joins (30d, 7d TTL), eight windows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB, the largest process) of a command."""
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    return wall, rss_kb / 1024 / 1024


def generate(work: Path, events: int, days: int, start: dt.date) -> int:
    from daedalus.demo import generate_demo

    end = start + dt.timedelta(days=days - 1)
    params = {"events": events, "days": days, "start": start.isoformat()}
    manifest = work / "data" / ".bench.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("params") == params:
        return json.loads(manifest.read_text())["feed_rows_in_range"]
    per_day = events // days
    t0 = time.perf_counter()
    generate_demo(work / "data", start=start, end=end, lookback_days=7, users=max(100, events // 100),
                  artworks=max(100, events // 40), events_per_day=per_day)
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (work / "data/sources/feed").glob("dt=*/*.parquet")
               if start.isoformat() <= f.parent.name[3:] <= end.isoformat())
    manifest.write_text(json.dumps({"params": params, "feed_rows_in_range": rows}))
    print(f"generated {rows:,} feed rows in range in {time.perf_counter() - t0:.0f}s")
    return rows


DAY_QUERY = """
SET threads = {threads}; SET memory_limit = '{mem}'; SET TimeZone = 'UTC';
SET temp_directory = '.daedalus_tmp/baseline'; SET preserve_insertion_order = true;
CREATE TEMP TABLE spine AS
  SELECT CAST(event_timestamp AS TIMESTAMP) AS ts, user_id, artwork_id, feed_session, clicked, filename AS f, file_row_number AS r
  FROM read_parquet({day_files}, filename = true, file_row_number = true, hive_partitioning = false);
CREATE TEMP TABLE hist AS
  SELECT CAST(event_timestamp AS TIMESTAMP) AS ts, user_id, artwork_id, clicked
  FROM read_parquet({hist_files}, hive_partitioning = false)
  WHERE CAST(event_timestamp AS TIMESTAMP) >= TIMESTAMP '{day}' - INTERVAL 7 DAY;
CREATE TEMP TABLE uw AS
  SELECT user_id, ts,
    count(e) OVER w1h AS n1h, coalesce(sum(c) OVER w1h, 0) AS c1h,
    count(e) OVER w1d AS n1d, coalesce(sum(c) OVER w1d, 0) AS c1d,
    count(e) OVER w7d AS n7d, coalesce(sum(c) OVER w7d, 0) AS c7d, q
  FROM (SELECT user_id, ts, 1 AS e, CAST(clicked AS BIGINT) AS c, false AS q FROM hist
        UNION ALL SELECT DISTINCT user_id, ts, NULL, NULL, true FROM spine)
  WINDOW w1h AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING),
         w1d AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING),
         w7d AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 7 DAY PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)
  QUALIFY q;
CREATE TEMP TABLE aw AS
  SELECT artwork_id, ts, count(e) OVER w7d AS n7d, coalesce(sum(c) OVER w7d, 0) AS c7d, q
  FROM (SELECT artwork_id, ts, 1 AS e, CAST(clicked AS BIGINT) AS c, false AS q FROM hist
        UNION ALL SELECT DISTINCT artwork_id, ts, NULL, NULL, true FROM spine)
  WINDOW w7d AS (PARTITION BY artwork_id ORDER BY ts RANGE BETWEEN INTERVAL 7 DAY PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)
  QUALIFY q;
CREATE TEMP TABLE up AS
  SELECT user_id, CAST(event_timestamp AS TIMESTAMP) AS fts, follower_count, Country FROM read_parquet({up_files}, hive_partitioning = false)
  QUALIFY row_number() OVER (PARTITION BY user_id, event_timestamp ORDER BY created_at DESC) = 1;
CREATE TEMP TABLE ast AS
  SELECT artwork_id, CAST(event_timestamp AS TIMESTAMP) AS fts, like_count, category FROM read_parquet({as_files}, hive_partitioning = false);
COPY (
  SELECT s.ts AS event_timestamp, s.user_id, s.artwork_id, s.clicked,
    CASE WHEN u.fts >= s.ts - INTERVAL 30 DAY THEN u.follower_count END AS user_profile__follower_count,
    CASE WHEN u.fts >= s.ts - INTERVAL 30 DAY THEN u.Country END AS user_profile__country,
    CASE WHEN a.fts >= s.ts - INTERVAL 7 DAY THEN a.like_count END AS artwork_stats__like_count,
    CASE WHEN a.fts >= s.ts - INTERVAL 7 DAY THEN a.category END AS artwork_stats__category,
    uw.n1h, uw.n1d, uw.n7d, uw.c1h, uw.c1d, uw.c7d, aw.n7d AS an7d, aw.c7d AS ac7d
  FROM spine s
  ASOF LEFT JOIN up u ON s.user_id = u.user_id AND s.ts >= u.fts
  ASOF LEFT JOIN ast a ON s.artwork_id = a.artwork_id AND s.ts >= a.fts
  LEFT JOIN uw ON s.user_id = uw.user_id AND s.ts = uw.ts
  LEFT JOIN aw ON s.artwork_id = aw.artwork_id AND s.ts = aw.ts
  ORDER BY s.ts, s.f, s.r
) TO '{out}' (FORMAT parquet, COMPRESSION zstd);
"""


def baseline_script(work: Path, days: list[dt.date], threads: int, mem: str) -> Path:
    """A Python script running the day-at-a-time query for every day (one process)."""
    src = work / "data/sources"

    def files(name: str, lo: dt.date, hi: dt.date) -> str:
        fs = sorted(str(p.relative_to(work)) for p in (src / name).glob("dt=*/*.parquet")
                    if lo.isoformat() <= p.parent.name[3:] <= hi.isoformat())
        return "[" + ", ".join(f"'{f}'" for f in fs) + "]"

    lines = ["import duckdb, os", "os.makedirs('data/out_baseline', exist_ok=True)"]
    for d in days:
        sql = DAY_QUERY.format(threads=threads, mem=mem, day=d.isoformat(),
                               day_files=files("feed", d, d), hist_files=files("feed", d - dt.timedelta(days=7), d),
                               up_files=files("user_profile", d - dt.timedelta(days=30), d),
                               as_files=files("artwork_stats", d - dt.timedelta(days=7), d),
                               out=f"data/out_baseline/dt={d.isoformat()}.parquet")
        lines.append(f"con = duckdb.connect(); con.execute({sql!r}); con.close()")
    path = work / "baseline.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def compare_day(work: Path, day: dt.date) -> int:
    import pyarrow.parquet as pq
    import pyarrow as pa

    ours = pa.concat_tables([pq.read_table(p) for p in sorted((work / f"data/out_daeda/dt={day}").glob("part-*.parquet"),
                                                            key=lambda p: int(p.name.split("-")[1]))])
    base = pq.read_table(work / f"data/out_baseline/dt={day}.parquet")
    pairs = {"user_profile__follower_count": "user_profile__follower_count", "user_profile__country": "user_profile__country",
             "artwork_stats__like_count": "artwork_stats__like_count", "artwork_stats__category": "artwork_stats__category",
             "user_activity__impressions_1h": "n1h", "user_activity__impressions_1d": "n1d", "user_activity__impressions_7d": "n7d",
             "user_activity__clicks_1h": "c1h", "user_activity__clicks_1d": "c1d", "user_activity__clicks_7d": "c7d",
             "artwork_activity__impressions_7d": "an7d", "artwork_activity__clicks_7d": "ac7d",
             "user_id": "user_id", "artwork_id": "artwork_id"}
    assert ours.num_rows == base.num_rows, (ours.num_rows, base.num_rows)
    for a, b in pairs.items():
        x, y = ours[a].to_pylist(), base[b].to_pylist()
        bad = sum(1 for u, v in zip(x, y) if u != v)
        assert bad == 0, f"{a}: {bad} rows differ"
    return ours.num_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--day-workers", type=int, default=1)
    ap.add_argument("--memory-limit", default="12GB")
    args = ap.parse_args()
    work = args.work.resolve()
    start = dt.date(2026, 4, 1)
    days = [start + dt.timedelta(days=i) for i in range(args.days)]
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("feature_views", "feature_services", "config"):
        shutil.rmtree(work / sub, ignore_errors=True)
        shutil.copytree(HERE / "skeleton_defs" / sub, work / sub)
    rt = work / "config/training/runtime.yaml"
    rt.write_text(re.sub(r"feed_end: .*", f"feed_end: {days[-1].isoformat()}", rt.read_text())
                  .replace("memory_limit: 12GB", f"memory_limit: {args.memory_limit}"))
    rows = generate(work, args.events, args.days, start)
    for out in ("data/out_daeda", "data/out_baseline", ".snakemake"):
        shutil.rmtree(work / out, ignore_errors=True)

    daeda = [PY, "-m", "daedalus", "pipeline", "train", "bench_ranking", "--skeleton-only",
             "--output-root", "data/out_daeda", "--day-workers", str(args.day_workers)]
    t_ours, rss_ours = timed(daeda, work)
    job_rss = max(float(l.split("\t")[2]) for p in (work / "data/out_daeda/.daedalus/benchmarks/skeleton").glob("*.tsv")
                  for l in p.read_text().splitlines()[1:]) / 1024
    t_base, rss_base = timed([PY, str(baseline_script(work, days, 2, args.memory_limit))], work)
    checked = compare_day(work, days[len(days) // 2])

    print(f"\nskeleton stage, {rows:,} feed rows over {args.days} days ({args.events:,} events requested), 2 cores")
    print(f"{'contender':<44} {'wall s':>8} {'rows/s':>10} {'peak RSS GiB':>13}")
    print(f"{'daeda pipeline train --skeleton-only':<44} {t_ours:>8.1f} {rows / t_ours:>10,.0f} {max(rss_ours, job_rss):>13.2f}")
    print(f"{'day-at-a-time DuckDB query (one process)':<44} {t_base:>8.1f} {rows / t_base:>10,.0f} {rss_base:>13.2f}")
    print(f"ratio (daeda rows/s / day-at-a-time rows/s): {t_base / t_ours:.2f}")
    print(f"largest day job peak RSS (Snakemake benchmark files): {job_rss:.2f} GiB")
    print(f"values agree on every row of {days[len(days) // 2]} ({checked:,} rows, 14 columns)")
    print(f"command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
