"""The hand-written DuckDB contenders: the same joins and windows as bench_ranking.

Each is written to a standalone script run as its own process (so its memory is its own):
`all_days_script` is the best single query over every day (the speed limit: one sort, the
per-user windows on distinct (user, ts) pairs, one ASOF join per view with TTL-pruned
feature rows, then one ordered COPY per day); `day_script` runs the same query one day at a
time (each day re-reads its look-back). Outputs: `<out>/dt=<day>.parquet`, sorted like
Daedalus' (event_timestamp, then source order).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

SETTINGS = """
SET threads = {threads}; SET memory_limit = '{mem}'; SET TimeZone = 'UTC';
SET temp_directory = '.daedalus_tmp/baseline'; SET preserve_insertion_order = true;
"""

# {lo}/{hi}: the first and last day of the spine; {windows}: false for the joins-only query.
QUERY = """
CREATE OR REPLACE TEMP TABLE spine AS
  SELECT CAST(event_timestamp AS TIMESTAMP) AS ts, user_id, artwork_id, clicked, file_index AS f, file_row_number AS r
  FROM read_parquet({spine_files}, file_row_number = true, hive_partitioning = false)
  WHERE CAST(event_timestamp AS TIMESTAMP) >= TIMESTAMP '{lo}' AND CAST(event_timestamp AS TIMESTAMP) < TIMESTAMP '{hi}' + INTERVAL 1 DAY;
CREATE OR REPLACE TEMP TABLE up AS
  SELECT user_id, fts, follower_count, Country FROM (
    SELECT user_id, CAST(event_timestamp AS TIMESTAMP) AS fts, CAST(created_at AS TIMESTAMP) AS cts, follower_count, Country,
           file_index AS f, file_row_number AS r
    FROM read_parquet({up_files}, file_row_number = true, hive_partitioning = false))
  WHERE fts >= TIMESTAMP '{lo}' - INTERVAL 30 DAY AND fts < TIMESTAMP '{hi}' + INTERVAL 1 DAY
  QUALIFY row_number() OVER (PARTITION BY user_id, fts ORDER BY cts DESC NULLS LAST, f DESC, r DESC) = 1;
CREATE OR REPLACE TEMP TABLE ast AS
  SELECT artwork_id, fts, like_count, category FROM (
    SELECT artwork_id, CAST(event_timestamp AS TIMESTAMP) AS fts, like_count, category, file_index AS f, file_row_number AS r
    FROM read_parquet({as_files}, file_row_number = true, hive_partitioning = false))
  WHERE fts >= TIMESTAMP '{lo}' - INTERVAL 7 DAY AND fts < TIMESTAMP '{hi}' + INTERVAL 1 DAY
  QUALIFY row_number() OVER (PARTITION BY artwork_id, fts ORDER BY f DESC, r DESC) = 1;
CREATE OR REPLACE TEMP TABLE uj AS
  SELECT k.user_id, k.ts,
    CASE WHEN u.fts >= k.ts - INTERVAL 30 DAY THEN u.follower_count END AS user_profile__follower_count,
    CASE WHEN u.fts >= k.ts - INTERVAL 30 DAY THEN u.Country END AS user_profile__country
  FROM (SELECT DISTINCT user_id, ts FROM spine) k ASOF LEFT JOIN up u ON k.user_id = u.user_id AND k.ts >= u.fts;
CREATE OR REPLACE TEMP TABLE aj AS
  SELECT k.artwork_id, k.ts,
    CASE WHEN a.fts >= k.ts - INTERVAL 7 DAY THEN a.like_count END AS artwork_stats__like_count,
    CASE WHEN a.fts >= k.ts - INTERVAL 7 DAY THEN a.category END AS artwork_stats__category
  FROM (SELECT DISTINCT artwork_id, ts FROM spine) k ASOF LEFT JOIN ast a ON k.artwork_id = a.artwork_id AND k.ts >= a.fts;
"""

WINDOWS = """
CREATE OR REPLACE TEMP TABLE hist AS
  SELECT CAST(event_timestamp AS TIMESTAMP) AS ts, user_id, artwork_id, CAST(clicked AS BIGINT) AS c
  FROM read_parquet({hist_files}, hive_partitioning = false)
  WHERE CAST(event_timestamp AS TIMESTAMP) >= TIMESTAMP '{lo}' - INTERVAL 7 DAY AND CAST(event_timestamp AS TIMESTAMP) < TIMESTAMP '{hi}' + INTERVAL 1 DAY;
CREATE OR REPLACE TEMP TABLE uw AS
  SELECT user_id, ts,
    coalesce(sum(n) OVER w1h, 0) AS user_activity__impressions_1h, coalesce(sum(n) OVER w1d, 0) AS user_activity__impressions_1d,
    coalesce(sum(n) OVER w7d, 0) AS user_activity__impressions_7d, coalesce(sum(c) OVER w1h, 0) AS user_activity__clicks_1h,
    coalesce(sum(c) OVER w1d, 0) AS user_activity__clicks_1d, coalesce(sum(c) OVER w7d, 0) AS user_activity__clicks_7d, q
  FROM (SELECT user_id, ts, count(*) AS n, sum(c) AS c, false AS q FROM hist GROUP BY ALL
        UNION ALL SELECT DISTINCT user_id, ts, NULL, NULL, true FROM spine)
  WINDOW w1h AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING),
         w1d AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING),
         w7d AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL 7 DAY PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)
  QUALIFY q;
CREATE OR REPLACE TEMP TABLE aw AS
  SELECT artwork_id, ts, coalesce(sum(n) OVER w7d, 0) AS artwork_activity__impressions_7d,
    coalesce(sum(c) OVER w7d, 0) AS artwork_activity__clicks_7d, q
  FROM (SELECT artwork_id, ts, count(*) AS n, sum(c) AS c, false AS q FROM hist GROUP BY ALL
        UNION ALL SELECT DISTINCT artwork_id, ts, NULL, NULL, true FROM spine)
  WINDOW w7d AS (PARTITION BY artwork_id ORDER BY ts RANGE BETWEEN INTERVAL 7 DAY PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)
  QUALIFY q;
"""

RESULT = """
CREATE OR REPLACE TEMP TABLE result AS
  SELECT s.ts AS event_timestamp, s.user_id, s.artwork_id, s.clicked,
    uj.user_profile__follower_count, uj.user_profile__country, aj.artwork_stats__like_count, aj.artwork_stats__category
    {window_cols}
  FROM spine s
  LEFT JOIN uj ON s.user_id = uj.user_id AND s.ts = uj.ts
  LEFT JOIN aj ON s.artwork_id = aj.artwork_id AND s.ts = aj.ts
  {window_joins}
  ORDER BY s.ts, s.f, s.r;
"""

WINDOW_COLS = """, uw.* EXCLUDE (user_id, ts, q), aw.* EXCLUDE (artwork_id, ts, q)"""
WINDOW_JOINS = """LEFT JOIN uw ON s.user_id = uw.user_id AND s.ts = uw.ts
  LEFT JOIN aw ON s.artwork_id = aw.artwork_id AND s.ts = aw.ts"""

COPY = """COPY (SELECT * FROM result WHERE event_timestamp >= TIMESTAMP '{day}' AND event_timestamp < TIMESTAMP '{day}' + INTERVAL 1 DAY)
  TO '{out}/dt={day}.parquet' (FORMAT parquet, COMPRESSION zstd);
"""


def _files(root: Path, name: str, lo: dt.date, hi: dt.date) -> str:
    fs = sorted(
        p.relative_to(root).as_posix()
        for p in (root / "data/sources" / name).glob("dt=*/*.parquet")
        if lo.isoformat() <= p.parent.name[3:] <= hi.isoformat()
    )
    return "[" + ", ".join(f"'{f}'" for f in fs) + "]"


def _sql(root: Path, lo: dt.date, hi: dt.date, out: str, windows: bool) -> tuple[str, str]:
    """The query (every table up to the sorted result) and the writes (one COPY per day)."""
    d = dt.timedelta
    args = dict(
        lo=lo.isoformat(),
        hi=hi.isoformat(),
        spine_files=_files(root, "feed", lo, hi),
        hist_files=_files(root, "feed", lo - d(days=7), hi),
        up_files=_files(root, "user_profile", lo - d(days=30), hi),
        as_files=_files(root, "artwork_stats", lo - d(days=7), hi),
    )
    sql = QUERY.format(**args) + (WINDOWS.format(**args) if windows else "")
    sql += RESULT.format(window_cols=WINDOW_COLS if windows else "", window_joins=WINDOW_JOINS if windows else "")
    days = [lo + d(days=i) for i in range((hi - lo).days + 1)]
    return sql, "".join(COPY.format(day=x.isoformat(), out=out) for x in days)


def write_script(
    root: Path, days: list[dt.date], out: str, *, per_day: bool, windows: bool, threads: int, mem: str
) -> Path:
    """A Python script (run with cwd=root) computing `days` into `out`, all at once or day by day.

    Its last line of output is JSON: the seconds of the query (up to the sorted result) and
    of writing the day files, so the query's speed without its write is measured in the same
    run."""
    spans = [(x, x) for x in days] if per_day else [(days[0], days[-1])]
    lines = ["import duckdb, json, os, time", f"os.makedirs({out!r}, exist_ok=True)", "tq = tw = 0.0"]
    for lo, hi in spans:
        query, copies = _sql(root, lo, hi, out, windows)
        query = SETTINGS.format(threads=threads, mem=mem) + query
        lines += [
            f"con = duckdb.connect(); t = time.perf_counter(); con.execute({query!r}); tq += time.perf_counter() - t",
            f"t = time.perf_counter(); con.execute({copies!r}); tw += time.perf_counter() - t; con.close()",
        ]
    lines.append('print(json.dumps({"query_s": tq, "write_s": tw}))')
    name = f"{'day' if per_day else 'all'}_{'windows' if windows else 'joins'}.py"
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path
