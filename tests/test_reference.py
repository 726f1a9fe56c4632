"""The real `daedalus pipeline train --skeleton-only` against the naive reference
(tests/reference.py) on the edge-case datasets of tests/edge_data.py, cell by cell.

Run:  .venv/bin/python -m pytest tests/test_reference.py -v
      (DAEDALUS_REF_EXAMPLES=N hypothesis examples, default 2, each merging
      DAEDALUS_REF_SPECS=M random datasets, default 6, into one CLI run.)

The tests named `test_reference_*` check the reference itself against hand-computed
values and need no CLI.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edge_data  # noqa: E402
import output_checks as C  # noqa: E402
import reference as R  # noqa: E402
from edge_data import D, T  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLI_TIMEOUT = 600


# --------------------------------------------------------------------------- running the CLI


def _installed() -> bool:
    """Is `daedalus` importable outside the repository (e.g. an editable install)?"""
    probe = subprocess.run([sys.executable, "-c", "import daedalus"], cwd=tempfile.gettempdir(), capture_output=True)
    return probe.returncode == 0


_NEEDS_PYTHONPATH = None


def run_cli(ds: edge_data.Dataset, *extra: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    global _NEEDS_PYTHONPATH
    if _NEEDS_PYTHONPATH is None:
        _NEEDS_PYTHONPATH = not _installed()
    env = dict(os.environ)
    if _NEEDS_PYTHONPATH:  # only when not installed: the repository on sys.path can shadow user modules
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "daedalus", "pipeline", "train", ds.service, "--skeleton-only", *extra]
    return subprocess.run(cmd, cwd=ds.root, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)


def require_ok(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        pytest.fail(
            f"{what}: exit {proc.returncode}\n--- stderr (tail) ---\n{proc.stderr[-4000:]}"
            f"\n--- stdout (tail) ---\n{proc.stdout[-2000:]}",
            pytrace=False,
        )


def read_day(ds: edge_data.Dataset, day: dt.date) -> tuple[pa.Table | None, list[str]]:
    """The day's skeleton parts concatenated in N order, plus layout problems."""
    return C.read_day(ds.root / ds.output_root, day, ds.chunk_rows)


def day_problems(ds, cols, day, expected_rows) -> list[str]:
    return C.day_problems(ds.root / ds.output_root, ds.chunk_rows, cols, day, expected_rows)


def qid_map_problems(ds, defs, expected: dict | None) -> list[str]:
    return C.qid_map_problems(ds.root / ds.output_root, defs, ds.service, ds.root, expected)


def output_days(ds) -> list[str]:
    return C.output_days(ds.root / ds.output_root)


fail_if = C.fail_if


# --------------------------------------------------------------------------- the reference itself


def find(rows, ts: str, user=..., art=...):
    hits = [
        r
        for r in rows
        if r["event_timestamp"] == T(ts)
        and (user is ... or r.get("user_id") == user)
        and (art is ... or r.get("artwork_id") == art)
    ]
    assert len(hits) == 1, (ts, user, art, len(hits))
    return hits[0]


def test_reference_hand_values_edge(tmp_path):
    ds = edge_data.build_edge(tmp_path / "edge")
    defs = R.load_defs(ds.root, ds.exprs)
    per_day, qmap = R.expected_run(defs, ds.service, ds.days)
    assert [len(per_day[d]) for d in ds.days] == [12, 14, 0, 0, 2]
    d2, d3, d6 = per_day[D("2026-04-02")], per_day[D("2026-04-03")], per_day[D("2026-04-06")]
    # sorted by ts, ties in source order (the page keeps its order; the file had 23:59:59 first)
    assert [r["artwork_id"] for r in d2[:4]] == [10, 11, 12, 13]
    assert d2[-1]["event_timestamp"] == T("2026-04-02 23:59:59")
    assert [r["user_id"] for r in d3[:6]] == [3, 1, 5, 6, 7, 8]  # part-0's 10:00 rows before part-1's

    # windows at t = 04-02 10:00 for user 1: the page at exactly t - 1h is in
    r = find(d2, "2026-04-02 10:00:00", 1, 10)
    assert r["user_engagement__impressions_1h"] == 4
    assert r["user_engagement__dwell_events_1h"] == 3
    assert r["user_engagement__clicks_1h"] == 2 and r["user_engagement__ctr_1h"] == 0.5
    assert r["user_engagement__dwell_total_1h"] == 1100
    assert (r["user_engagement__dwell_min_1h"], r["user_engagement__dwell_max_1h"]) == (100, 700)
    assert r["user_engagement__last_surface_1h"] == "search"  # tie at 09:00: later source row, non-null
    assert r["user_engagement__impressions_1d"] == 5  # + 04-01 10:00 at exactly t - 1d
    assert r["user_engagement__recent_artworks_2d"] == [13, 12, 11]
    assert r["user_engagement__bid_sum_1d"] == 3.75 and r["user_engagement__bid_mean_1d"] == 0.9375
    # likes of artwork 10 in [04-01 10:00, 04-02 10:00): 'bob' at t - 1d - 1s out, 'cat' at t out
    assert r["artwork_likes__likes_1d"] == 5
    assert r["artwork_likes__weighted_likes_1d"] == 4
    assert r["artwork_likes__likers_1d"] == 4
    assert r["artwork_likes__weight_sum_1d"] == 3.0 and r["artwork_likes__weight_mean_1d"] == 0.75
    assert (r["artwork_likes__weight_min_1d"], r["artwork_likes__weight_max_1d"]) == (0.25, 1.5)
    assert r["artwork_likes__last_liker_1d"] == "eve"
    assert r["artwork_likes__recent_likers_2d"] == [6, 5, 4]
    # one microsecond later the page is at t - 1h - 1us: out
    r = find(d2, "2026-04-02 10:00:00.000001", 1, 11)
    assert r["user_engagement__impressions_1h"] == 1 and r["user_engagement__last_surface_1h"] == "explore"
    # the page itself: profile row exactly at t joins; the rows of the page do not see each other
    r = find(d2, "2026-04-02 09:00:00", 1, 12)
    assert r["user_profile__followers"] == 30 and r["user_engagement__impressions_1h"] == 0
    assert r["user_artwork__affinity"] == 0.25  # ns row 400ns after t truncates to t
    assert find(d2, "2026-04-02 09:00:00", 1, 13)["user_artwork__affinity"] == 0.125  # exactly t - 36h
    assert find(d2, "2026-04-02 09:00:00", 1, 11)["user_artwork__affinity"] is None  # t - 36h - 1us
    assert find(d2, "2026-04-02 09:00:00", 1, 11)["artwork_stats__like_count"] == 2  # same ts: later row
    # empty windows
    r = find(d2, "2026-04-02 12:00:00", None, 10)
    assert r["user_profile__followers"] is None and r["user_engagement__impressions_2d"] == 0
    assert r["user_engagement__ctr_2d"] is None and r["user_engagement__recent_artworks_2d"] == []
    assert r["user_engagement__bid_sum_1d"] == 0.0
    r = find(d2, "2026-04-02 13:00:00", 2, None)
    assert r["artwork_likes__likes_1d"] == 0 and r["artwork_likes__weight_mean_1d"] is None
    assert r["artwork_likes__recent_likers_2d"] == []
    assert find(d2, "2026-04-02 09:00:00", 1, 11)["artwork_likes__weight_sum_1d"] == 0.0  # only null weights

    # PIT join boundaries and tie-breaks at 04-03 10:00
    f = {r["user_id"]: r for r in d3 if r["event_timestamp"] == T("2026-04-03 10:00:00")}
    assert f[5]["user_profile__followers"] == 50  # exactly t - ttl
    assert f[6]["user_profile__followers"] == 61  # exactly t
    assert f[7]["user_profile__followers"] is None  # t - ttl - 1us
    assert f[7]["user_profile__country_or_unknown"] is None  # no row: derived features null too
    assert f[8]["user_profile__followers"] == 80  # greater created
    assert f[10]["user_profile__followers"] == 101  # ns t + 500ns truncates to t
    assert f[11]["user_profile__followers"] == 110  # null created sorts lowest
    assert f[12]["user_profile__followers"] == 121  # part-1 after part-0
    assert f[13]["user_profile__followers"] == 131  # later row in the file
    assert f[14]["user_profile__followers"] == 141  # part-9 after part-10 (lexical)
    assert f[15]["user_profile__country_or_unknown"] == "unknown" and f[15]["user_profile__country_bucket"] == -1
    assert f[15]["user_profile__size_class"] == "small" and f[15]["user_profile__log_followers"] is None
    assert f[16]["user_profile__followers"] is None and f[16]["user_profile__country"] == "KR"
    assert f[10]["user_profile__boosted"] == 202 and f[10]["user_profile__size_class"] == "big"
    assert f[10]["user_profile__updated"] == T("2026-04-03 10:00:00")  # ns value truncated
    assert f[10]["user_profile__fav_artwork"] == 601 and f[10]["artwork_id"] == 11
    assert f[99]["user_profile__is_pro"] is None
    assert find(d3, "2026-04-03 09:00:00", 1, 10)["user_artwork__affinity"] == 0.5  # exactly t - 36h
    assert find(d6, "2026-04-06 08:00:00", 6, 11)["user_profile__followers"] == 62  # exactly t - 2d
    assert find(d6, "2026-04-06 00:00:00", 1, 10)["artwork_stats__like_count"] == 9  # no ttl, row at t
    assert find(d6, "2026-04-06 00:00:00", 1, 10)["artwork_stats__published"] == T("2026-04-05 00:00:00")

    assert qmap == {"sA": 0, "sB": 1, "sC": 2, "sD": 3, "sM": 4, "sE": 5, "sP": 6, "sQ": 7, "s6": 8}
    assert all(r["qid"] == 4 for d in ds.days for r in per_day[d] if r["feed_session"] == "sM")


def test_reference_hand_values_simple(tmp_path):
    ds = edge_data.build_simple(tmp_path / "simple")
    defs = R.load_defs(ds.root, ds.exprs)
    per_day, qmap = R.expected_run(defs, ds.service, ds.days)
    assert qmap is None
    assert [len(per_day[d]) for d in ds.days] == [4, 0, 7]
    d1, d3 = per_day[D("2026-04-01")], per_day[D("2026-04-03")]
    r = find(d1, "2026-04-01 06:30:00", "ann")
    assert (r["user_stats__score"], r["user_stats__tier"]) == (3.5, "plat")  # glob: b.parquet after a.parquet
    assert r["user_static__cohort"] == 3 and r["user_activity__n_1w"] == 1 and r["user_activity__n_90m"] == 0
    assert r["user_activity__recent_labels_1w"] == [3]
    r = find(d1, "2026-04-01 08:00:00", "ann")
    assert r["user_activity__n_90m"] == 1 and r["user_activity__label_sum_90m"] == 1  # 06:30 = t - 90m
    r = find(d1, "2026-04-01 08:00:00", "bob")
    assert r["user_stats__score"] is None and r["user_static__cohort"] == 2
    r = find(d3, "2026-04-03 13:29:59.999", "bob")
    assert r["user_activity__n_90m"] == 2 and r["user_stats__tier_len"] == 0  # row with null tier: udf -> 0
    r = find(d3, "2026-04-03 13:30:00.001", "bob")
    assert r["user_activity__n_90m"] == 1 and r["user_stats__tier_len"] is None  # no row: null
    assert r["user_activity__recent_labels_1w"] == [0, 1, 1] and r["user_activity__last_item_1w"] == "y"
    assert r["user_activity__n_recent_45s"] == 1  # 13:29:59.999 is 2ms before
    cy = [r for r in d3 if r["user_id"] == "cy"]
    assert [r["event_timestamp"] for r in cy] == [T("2026-04-03 15:00:00")] * 2
    assert [r["label"] for r in cy] == [1, 2]  # source order, not raw ns order
    assert [r["user_activity__n_1w"] for r in cy] == [0, 0]  # same truncated ts: not strictly before
    r = find(d3, "2026-04-03 23:59:59.999", "zoe")
    assert r["user_static__cohort"] == 4 and r["user_stats__double_score"] == 0.25


def test_reference_assign_qids():
    rows = [{"s": x} for x in ["b", "a", "b", "c"]]
    assert R.assign_qids(rows, "s") == {"b": 0, "a": 1, "c": 2}
    assert R.assign_qids(rows, "s", {"a": 7, "z": 3}) == {"a": 7, "z": 3, "b": 8, "c": 9}


# --------------------------------------------------------------------------- CLI vs reference


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory):
    ds = edge_data.build_edge(tmp_path_factory.mktemp("edge"))
    proc = run_cli(ds)
    defs = R.load_defs(ds.root, ds.exprs)
    per_day, qmap = R.expected_run(defs, ds.service, ds.days)
    return ds, defs, R.output_columns(defs, ds.service), per_day, qmap, proc


@pytest.mark.e2e
@pytest.mark.parametrize("day", edge_data._days("2026-04-02", "2026-04-06"), ids=str)
def test_edge_day(edge_run, day):
    ds, defs, cols, per_day, _qmap, proc = edge_run
    require_ok(proc, "daeda pipeline train edge_ranking --skeleton-only")
    fail_if(day_problems(ds, cols, day, per_day[day]))


@pytest.mark.e2e
def test_edge_layout_and_qid_map(edge_run):
    ds, defs, cols, per_day, qmap, proc = edge_run
    require_ok(proc, "daeda pipeline train edge_ranking --skeleton-only")
    problems = qid_map_problems(ds, defs, qmap)
    want = [f"dt={d.isoformat()}" for d in ds.days]
    if output_days(ds) != want:
        problems.append(f"output day directories: expected {want}, got {output_days(ds)}")
    fail_if(problems)


@pytest.fixture(scope="module")
def simple_run(tmp_path_factory):
    ds = edge_data.build_simple(tmp_path_factory.mktemp("simple"))
    # Contract §1: the machine's local time zone never matters. This dataset (naive ns spine,
    # a view in ms Asia/Tokyo with a us UTC created timestamp, a naive us view) runs under a
    # local zone with a half-hour offset; the edge dataset runs with the environment's own TZ.
    proc = run_cli(ds, env_extra={"TZ": "Asia/Kolkata"})
    defs = R.load_defs(ds.root, ds.exprs)
    per_day, qmap = R.expected_run(defs, ds.service, ds.days)
    return ds, defs, R.output_columns(defs, ds.service), per_day, qmap, proc


@pytest.mark.e2e
@pytest.mark.parametrize("day", edge_data._days("2026-04-01", "2026-04-03"), ids=str)
def test_simple_day(simple_run, day):
    ds, defs, cols, per_day, _qmap, proc = simple_run
    require_ok(proc, "TZ=Asia/Kolkata daeda pipeline train simple --skeleton-only")
    fail_if(day_problems(ds, cols, day, per_day[day]))


@pytest.mark.e2e
def test_simple_no_qid_map(simple_run):
    ds, defs, cols, per_day, qmap, proc = simple_run
    require_ok(proc, "TZ=Asia/Kolkata daeda pipeline train simple --skeleton-only")
    problems = qid_map_problems(ds, defs, None)
    want = [f"dt={d.isoformat()}" for d in ds.days]
    if output_days(ds) != want:
        problems.append(f"output day directories: expected {want}, got {output_days(ds)}")
    fail_if(problems)


@pytest.mark.e2e
def test_edge_target_date_then_full_run_qids(tmp_path):
    """Contract §7: a --target-date run, then a full run (new sessions numbered above the
    existing ones, old qids unchanged, the session over midnight keeps its qid), then an
    unchanged re-run (nothing rewritten, byte-identical)."""
    ds = edge_data.build_edge(tmp_path / "edge")
    defs = R.load_defs(ds.root, ds.exprs)
    cols = R.output_columns(defs, ds.service)
    target = D("2026-04-03")

    require_ok(run_cli(ds, "--target-date", target.isoformat()), "train --target-date 2026-04-03")
    per_day1, qmap1 = R.expected_run(defs, ds.service, [target])
    problems = []
    if output_days(ds) != [f"dt={target}"]:
        problems.append(f"after --target-date: day directories {output_days(ds)}")
    problems += day_problems(ds, cols, target, per_day1[target])
    problems += qid_map_problems(ds, defs, qmap1)
    fail_if(["[after --target-date 2026-04-03] " + p for p in problems])

    require_ok(run_cli(ds), "full run after --target-date")
    per_day2, qmap2 = R.expected_run(defs, ds.service, ds.days, existing_qids=qmap1)
    assert all(qmap2[s] == q for s, q in qmap1.items())
    problems = []
    for day in ds.days:
        problems += day_problems(ds, cols, day, per_day2[day])
    problems += qid_map_problems(ds, defs, qmap2)
    fail_if(["[full run after --target-date] " + p for p in problems])

    out = ds.root / ds.output_root
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}
    require_ok(run_cli(ds), "unchanged re-run")
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}
    problems = []
    if sorted(before) != sorted(after):
        problems.append(f"re-run changed the file set: {sorted(set(before) ^ set(after))}")
    for p in sorted(set(before) & set(after)):
        if before[p][0] != after[p][0]:
            problems.append(f"re-run changed the bytes of {p.relative_to(out)}")
        elif before[p][1] != after[p][1]:
            problems.append(f"re-run rewrote {p.relative_to(out)} (same bytes, new mtime)")
    fail_if(["[unchanged re-run] " + p for p in problems])


# --------------------------------------------------------------------------- random datasets

EXAMPLES = int(os.environ.get("DAEDALUS_REF_EXAMPLES", "2"))
SPECS_PER_EXAMPLE = int(os.environ.get("DAEDALUS_REF_SPECS", "6"))


# Each example merges SPECS_PER_EXAMPLE random specs into one working directory (disjoint
# keys, one view and two aggregations per spec) and runs the CLI once (with --day-workers 2):
# a CLI run costs 10-20 s, so this is how ~12 random datasets fit in the time budget.
@pytest.mark.e2e
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: every example runs the CLI
    suppress_health_check=list(HealthCheck),
)
@given(specs=st.lists(edge_data.random_spec_strategy(), min_size=SPECS_PER_EXAMPLE, max_size=SPECS_PER_EXAMPLE))
def test_random_datasets(specs):
    with tempfile.TemporaryDirectory(prefix="daedalus_ref_") as tmp:
        ds = edge_data.build_random(Path(tmp) / "rand", specs)
        # two days at once: qids (and everything else) must not depend on day_workers (§7)
        proc = run_cli(ds, "--day-workers", "2")
        if proc.returncode != 0:
            keep = Path(tempfile.mkdtemp(prefix="daedalus_ref_fail_"))
            shutil.copytree(ds.root, keep / "rand")
            require_ok(proc, f"train on random dataset (kept at {keep / 'rand'}) specs={specs}")
        defs = R.load_defs(ds.root, ds.exprs)
        cols = R.output_columns(defs, ds.service)
        per_day, qmap = R.expected_run(defs, ds.service, ds.days)
        problems = []
        for day in ds.days:
            problems += day_problems(ds, cols, day, per_day[day])
        problems += qid_map_problems(ds, defs, qmap)
        if problems:
            keep = Path(tempfile.mkdtemp(prefix="daedalus_ref_fail_"))
            shutil.copytree(ds.root, keep / "rand")
            problems.insert(0, f"random dataset kept at {keep / 'rand'}; specs={specs}")
        fail_if(problems)


@pytest.mark.e2e
def test_udf_module_named_like_the_repositorys(tmp_path):
    """Contract §3: a udf is `module:function`, importable from the working directory. A user
    naturally names it `feature_views.udfs` (the contract's own example); the working
    directory's module must win over any other `feature_views` package on sys.path."""
    ds = edge_data.build_simple(tmp_path / "simple", udf_module="feature_views.udfs")
    require_ok(run_cli(ds), "train simple with udf feature_views.udfs:tag_len")
    defs = R.load_defs(ds.root, ds.exprs)
    cols = R.output_columns(defs, ds.service)
    per_day, _ = R.expected_run(defs, ds.service, ds.days)
    problems = []
    for day in ds.days:
        problems += day_problems(ds, cols, day, per_day[day])
    fail_if(problems)
