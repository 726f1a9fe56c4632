"""Label windows (contract section 9): aggregates of the events after a row, against the naive
reference (tests/reference_labels.py), in-process on DuckDB (no compile, no Snakemake); the
waiting rule; what a day job reads forward; the YAML model's and compile's one-line errors.

Events are drawn (hypothesis) on a grid around each row's `t`, `t + 1h` and `t + 1d` and the
day's boundaries, so events at exactly `t` (excluded), at exactly `t + w` (included), ties,
null groups and values, groups without events, empty windows and windows crossing midnight
all occur. The events are day-partitioned, some partitions written by pandas, some by pyarrow,
and the day job's files are chosen as a real job's are (its look-ahead).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daedalus import arrowtypes as at
from daedalus import functions
from daedalus.errors import DaedalusError
from daedalus.plan import Column, Plan, SourceSpec, make_op
from daedalus.skeleton import labels
from daedalus.skeleton.context import DayContext
from daedalus.skeleton.stage import FUNCTION_SUPPORT, IMPLEMENTATIONS, day_files
from daedalus.skeleton.writer import assemble_sql, output_schema
from daedalus.sources import SourceFiles

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402
import reference_labels as RL  # noqa: E402

DAY = dt.date(2026, 3, 10)
START_US = R.day_start_us(DAY)
H = 3600 * R.US
WINDOWS = {"1h": H, "1d": 24 * H}
ROW_OFFSETS = (0, 1, H // 2, H, 2 * H, 23 * H, 24 * H - 1)
ROW_GRID = [START_US + d for d in ROW_OFFSETS]
# Row times, one microsecond around them, and around t + 1h and t + 1d; the day's bounds.
GRID = sorted(
    {START_US + r + d for r in (0, H, 23 * H, 24 * H - 1) for d in (-1, 0, 1, H - 1, H, H + 1, 24 * H, 24 * H + 1)}
    | {START_US - 1, START_US + 48 * H}
)
COLUMNS = {"v_int": pa.int64(), "v_float": pa.float64(), "v_str": pa.string(), "v_ts": R.UTC_US}
TS = R.UTC_US


def _case_columns(fn: functions.AggFunction) -> list[str | None]:
    cols: list[str | None] = [c for c, t in COLUMNS.items() if fn.accepts(t)]
    return ([None] if fn.column == "optional" else []) + cols


def _cases() -> list[tuple[str, str | None]]:
    return [
        (name, col) for name, fn in functions.FUNCTIONS.items() if name in labels.SUPPORTED for col in _case_columns(fn)
    ]


def _output(function: str, column: str | None, window: str) -> str:
    return f"{function}__{column or 'rows'}__{window}"


def test_the_contract_functions_are_supported_forward() -> None:
    assert {"count", "sum", "max", "min", "mean", "last", "first"} <= labels.SUPPORTED
    assert FUNCTION_SUPPORT[("label_window", "sql")] == set(labels.SUPPORTED)
    assert labels.SUPPORTED <= set(functions.FUNCTIONS)


# -- the values against the reference --------------------------------------------------------


events_st = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from([1, 2, 3, None]),
            "ts": st.sampled_from(GRID),
            "v_int": st.one_of(st.none(), st.integers(-3, 3)),
            "v_float": st.one_of(st.none(), st.sampled_from([-1.5, 0.0, 0.25, 2.0, 1e-3])),
            "v_str": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
            "v_ts": st.one_of(st.none(), st.sampled_from(GRID)),
        }
    ),
    max_size=25,
)
rows_st = st.lists(
    st.fixed_dictionaries({"user_id": st.sampled_from([1, 2, 3, 4, None]), "ts": st.sampled_from(ROW_GRID)}),
    max_size=10,
)


def _ts_array(values: list[int | None]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(TS)


def _write_events(root: Path, events: list[dict]) -> list[dict]:
    """Day partitions of the events (even days by pyarrow, odd by pandas); returns the events
    with `_ts` and `_ord` (source order: partition path, then row)."""
    by_day: dict[dt.date, list[dict]] = {}
    for e in events:
        by_day.setdefault(dt.date(1970, 1, 1) + dt.timedelta(microseconds=e["ts"]), []).append(e)
    ordered = []
    for d in sorted(by_day):
        part = root / f"dt={d.isoformat()}"
        part.mkdir(parents=True)
        es = by_day[d]
        table = pa.table(
            {
                "user_id": pa.array([e["user_id"] for e in es], pa.int64()),
                "event_timestamp": _ts_array([e["ts"] for e in es]),
                "v_int": pa.array([e["v_int"] for e in es], pa.int64()),
                "v_float": pa.array([e["v_float"] for e in es], pa.float64()),
                "v_str": pa.array([e["v_str"] for e in es], pa.string()),
                "v_ts": _ts_array([e["v_ts"] for e in es]),
            }
        )
        if d.toordinal() % 2:
            df = table.to_pandas()
            df["user_id"] = df["user_id"].astype("Int64")  # nullable, as a pandas user writes it
            df["v_int"] = df["v_int"].astype("Int64")
            df.to_parquet(part / "part-0.parquet", index=False)
        else:
            pq.write_table(table, part / "part-0.parquet")
        ordered += es
    return [
        {**{c: e[c] for c in COLUMNS}, "user_id": e["user_id"], "_ts": e["ts"], "_ord": i}
        for i, e in enumerate(ordered)
    ]


def _write_spine(path: Path, rows: list[dict]) -> None:
    part = path / f"dt={DAY.isoformat()}"
    part.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "event_timestamp": _ts_array([r["ts"] for r in rows]),
                "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            }
        ),
        part / "part-0.parquet",
    )


def _plan(spine_path: str, events_path: str, cases: list[tuple[str, str | None]], windows: dict[str, int]) -> Plan:
    features, outputs = [], []
    for function, column in cases:
        fn = functions.get(function)
        out_type = at.to_str(fn.output(COLUMNS[column] if column else None))
        for w in windows:
            k = 2 if "k" in fn.params else None
            features.append(
                {"output": _output(function, column, w), "function": function, "column": column, "window": w, "k": k}
            )
            outputs.append(Column(name=_output(function, column, w), type=out_type))
    cols = {"event_timestamp": at.to_str(TS), "user_id": "int64"}
    spine = make_op(
        kind="spine",
        name="spine",
        engine="sql",
        inputs=["source:spine"],
        outputs=[Column(name=c, type=t) for c, t in cols.items()],
        params={"source": "spine", "entities": ["user_id"]},
    )
    lab = make_op(
        kind="label_window",
        name="label_window.a",
        engine="sql",
        inputs=["spine", "source:events"],
        outputs=outputs,
        params={"aggregation": "a", "source": "events", "group_by": ["user_id"], "features": features},
    )
    write = make_op(
        kind="write_parts",
        name="write_parts",
        engine="sql",
        inputs=["spine", "label_window.a"],
        outputs=[*spine.outputs, *lab.outputs],
    )
    ev_cols = {"user_id": "int64", "event_timestamp": at.to_str(TS)} | {c: at.to_str(t) for c, t in COLUMNS.items()}
    return Plan(
        service="labels",
        sources={
            "spine": SourceSpec(path=spine_path, timestamp_field="event_timestamp", columns=cols),
            "events": SourceSpec(path=events_path, timestamp_field="event_timestamp", columns=ev_cols),
        },
        operators=[spine, lab, write],
    )


def _run(plan: Plan, files: dict[str, list[str]]) -> pa.Table:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        ctx = DayContext(con=con, plan=plan, day=DAY, files=files, output_root=Path(plan.sources["spine"].path).parent)
        for op in plan.skeleton_operators:
            if op.kind != "write_parts":
                IMPLEMENTATIONS[(op.kind, op.engine)](ctx, op)
        write = plan.ops("write_parts")[0]
        return con.sql(assemble_sql(ctx, write)).to_arrow_table().cast(output_schema(write))
    finally:
        con.close()


def _expected(
    events: list[dict], rows: list[dict], cases: list[tuple[str, str | None]], windows: dict[str, int]
) -> list[dict]:
    out = []
    for r in sorted(rows, key=lambda r: r["ts"]):  # the spine's order: time, then source order (stable)
        row = {"event_timestamp": r["ts"], "user_id": r["user_id"]}
        for w, us in windows.items():
            inside = RL.label_events(events, ["user_id"], {"user_id": r["user_id"]}, r["ts"], us)
            for function, column in cases:
                k = 2 if "k" in functions.get(function).params else None
                row[_output(function, column, w)] = RL.label_value(
                    function, inside, column, k, COLUMNS.get(column or "")
                )
        out.append(row)
    return out


def _check(tmp: Path, events: list[dict], rows: list[dict], cases=None, windows=WINDOWS) -> Plan:
    cases = cases or _cases()
    ev_root, sp_root = tmp / "events", tmp / "spine"
    ref_events = _write_events(ev_root, events)
    _write_spine(sp_root, rows)
    plan = _plan(str(sp_root), str(ev_root), cases, windows)
    files = day_files(plan, DAY)  # what a day job of DAY reads: its look-ahead decides
    got = _run(plan, files)
    expected = _expected(ref_events, rows, cases, windows)
    columns = [(c.name, at.from_str(c.type)) for c in plan.columns]
    problems = R.compare_rows(columns, expected, got, label="label_window on sql")
    assert not problems, "\n".join(problems)
    return plan


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events_st, rows=rows_st)
def test_label_windows_equal_the_reference(events: list[dict], rows: list[dict], tmp_path_factory) -> None:
    _check(tmp_path_factory.mktemp("labels"), events, rows)


def _ev(ts: int, user: int | None = 1, v: int | None = 1, s: str | None = "x") -> dict:
    return {"user_id": user, "ts": ts, "v_int": v, "v_float": None if v is None else float(v), "v_str": s, "v_ts": ts}


def test_label_window_bounds_and_ties(tmp_path: Path) -> None:
    """Hand-picked: the row's own instant is out, t + w is in, one microsecond more is out;
    ties at one instant take source order (first: earlier, last: later)."""
    t = START_US + 23 * H  # late in the day: the 1d window runs into the next day's partition
    events = [
        _ev(t, v=100),  # at t: excluded
        _ev(t + 1, v=1, s="a"),  # just after t
        _ev(t + H, v=2, s="b"),  # at t + 1h: in the 1h window
        _ev(t + H, v=3, s="c"),  # a tie at t + 1h, later in source order
        _ev(t + H + 1, v=4),  # just past 1h
        _ev(t + 24 * H, v=5, s="z"),  # at t + 1d (next day's partition): included
        _ev(t + 24 * H + 1, v=6),  # past it: excluded
        _ev(t + 2, user=None, v=50),  # null group: never counts
        _ev(t + 3, v=None, s=None),  # null value: counted by count(), not by the rest
        _ev(t + 5, user=2, v=7),  # another group
    ]
    rows = [{"user_id": 1, "ts": t}, {"user_id": 3, "ts": t}, {"user_id": None, "ts": t}]
    cases = [
        ("count", None),
        ("count", "v_int"),
        ("sum", "v_int"),
        ("max", "v_int"),
        ("min", "v_int"),
        ("mean", "v_int"),
        ("first", "v_str"),
        ("last", "v_str"),
        ("last_k", "v_int"),
    ]
    _check(tmp_path, events, rows, cases)
    got = _run(*_plan_and_files(tmp_path, cases)).to_pylist()
    by_user = {r["user_id"]: r for r in got}
    u1 = by_user[1]
    assert u1["count__rows__1h"] == 4 and u1["sum__v_int__1h"] == 6 and u1["last__v_str__1h"] == "c"
    assert u1["count__rows__1d"] == 6 and u1["count__v_int__1d"] == 5 and u1["max__v_int__1d"] == 5
    assert u1["first__v_str__1d"] == "a" and u1["last__v_str__1d"] == "z" and u1["last_k__v_int__1d"] == [5, 4]
    for empty in (by_user[3], by_user[None]):  # no events / a null group: the empty-window values
        assert empty["count__rows__1d"] == 0 and empty["sum__v_int__1d"] == 0 and empty["max__v_int__1d"] is None
        assert empty["last_k__v_int__1d"] == [] and empty["first__v_str__1d"] is None


def _plan_and_files(tmp: Path, cases) -> tuple[Plan, dict[str, list[str]]]:
    plan = _plan(str(tmp / "spine"), str(tmp / "events"), cases, WINDOWS)
    return plan, day_files(plan, DAY)


def test_a_day_job_reads_the_partitions_its_windows_reach(tmp_path: Path) -> None:
    """1d: partitions D and D + 1 (events up to t + w < D + 2); 1h: the same; 2d: D..D+2."""
    events = [_ev(START_US + d * 24 * H + H) for d in range(-2, 5)]
    _write_events(tmp_path / "events", events)
    _write_spine(tmp_path / "spine", [])
    for windows, last in (({"1h": H}, 1), ({"1d": 24 * H}, 1), ({"36h": 36 * H}, 2), ({"2d": 48 * H}, 2)):
        plan = _plan(str(tmp_path / "spine"), str(tmp_path / "events"), [("count", None)], windows)
        days = sorted(dt.date.fromisoformat(f.split("dt=")[1][:10]) for f in day_files(plan, DAY)["events"])
        assert days == [DAY + dt.timedelta(days=i) for i in range(last + 1)], windows


# -- waiting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["1h", "1d", "36h", "2d"])
def test_waiting_follows_the_contract_for_partitioned_sources(tmp_path: Path, window: str) -> None:
    w_us = R.duration_us(window)
    _write_spine(tmp_path / "spine", [])
    ev = tmp_path / "events"
    days = [DAY + dt.timedelta(days=i) for i in range(5)]
    plan = _plan(str(tmp_path / "spine"), str(ev), [("count", None)], {window: w_us})
    for n in range(1, 9):  # the source grows a partition at a time
        d = DAY + dt.timedelta(days=n - 1)
        (ev / f"dt={d.isoformat()}").mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.table({"user_id": pa.array([], pa.int64()), "event_timestamp": pa.array([], TS)}),
            ev / f"dt={d.isoformat()}" / "p.parquet",
        )
        have = {DAY + dt.timedelta(days=i) for i in range(n)}
        waits = labels.waiting(plan, {"events": SourceFiles.scan(str(ev))}, days)
        for day in days:
            assert (day not in waits) == RL.is_complete(day, w_us, have, None), (window, n, day)


def test_waiting_of_an_unpartitioned_source_is_its_latest_event(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the horizon cache lives in .daedalus_tmp/
    _write_spine(tmp_path / "spine", [])
    path = tmp_path / "events.parquet"
    plan = _plan(str(tmp_path / "spine"), str(path), [("count", None)], {"1d": 24 * H})
    days = [DAY, DAY + dt.timedelta(days=1)]
    for latest in (START_US + 48 * H - 1, START_US + 48 * H, START_US + 72 * H):  # D + 2 days is DAY's horizon
        pd.DataFrame({"user_id": [1], "event_timestamp": pd.to_datetime([latest * 1000], utc=True)}).to_parquet(path)
        waits = labels.waiting(plan, {"events": SourceFiles.scan(str(path))}, days)
        assert {d for d in days if d not in waits} == {d for d in days if RL.is_complete(d, 24 * H, None, latest)}
    assert labels.waiting(plan, {"events": SourceFiles.scan(str(path))}, days) == {}


# -- definitions: one-line errors --------------------------------------------------------------


@pytest.fixture
def small_project(demo_template: Path, tmp_path: Path, monkeypatch) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(demo_template, dest, symlinks=True)
    monkeypatch.chdir(dest)
    return dest


def _compile(project: Path):
    from daedalus.compile import compile_service
    from daedalus.loading import DefinitionPaths

    return compile_service("dssm_ranking", DefinitionPaths(), output_dir=None)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_the_demo_label_window_compiles_after_the_features(small_project: Path) -> None:
    c = _compile(small_project)
    names = [col.name for col in c.plan.columns]
    assert names[-1] == "likes_ahead__likes_1d"
    assert names.index("user_likes__recent_liked_14d") < names.index("likes_ahead__likes_1d")
    op = c.plan.op("label_window.likes_ahead")
    assert op.engine == "sql" and op.lookahead_days() == 1 and c.plan.lookahead_days("label.likes_ahead") == 1
    assert c.waiting == {}  # make_project writes the data two days past the range


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "feature_services/dssm_ranking.yaml",
            "label_windows: [likes_ahead]",
            "label_windows: [likes_ahaed]",
            "feature_services/dssm_ranking.yaml: label_windows: unknown aggregation 'likes_ahaed'",
        ),
        (
            "feature_services/dssm_ranking.yaml",
            "label_windows: [likes_ahead]",
            "label_windows: [user_likes]",
            "feature_services/dssm_ranking.yaml: label_windows: 'user_likes' is also in aggregations",
        ),
        (
            "config/training/aggregations.yaml",
            "    windows: [1d]\n    features:\n      - {name: likes, function: count}\n",
            "    windows: [1d]\n    features:\n      - {name: likes, function: sum, column: surface}\n",
            "config/training/aggregations.yaml: label window 'likes_ahead': feature 'likes': sum needs a numeric",
        ),
        (
            "config/training/aggregations.yaml",
            "    group_by: [user_id, artwork_id]\n    windows: [1d]",
            "    group_by: [user_id, artwork_id]\n    windows: [1x]",
            "config/training/aggregations.yaml: aggregations[5].windows[0]: invalid duration '1x'",
        ),
    ],
)
def test_definition_errors_are_one_line(small_project: Path, file: str, old: str, new: str, message: str) -> None:
    _edit(small_project / file, old, new)
    with pytest.raises(DaedalusError) as e:
        _compile(small_project)
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_a_function_without_a_forward_implementation_is_a_compile_error(small_project: Path, monkeypatch) -> None:
    monkeypatch.setattr(labels, "SUPPORTED", labels.SUPPORTED - {"count"})
    with pytest.raises(DaedalusError) as e:
        _compile(small_project)
    assert str(e.value).startswith(
        "config/training/aggregations.yaml: label window 'likes_ahead': feature 'likes': function 'count' is not "
        "supported in a label window (label windows compute: "
    ), str(e.value)


def test_the_last_days_wait_without_later_partitions(small_project: Path) -> None:
    for d in ("2026-04-05", "2026-04-04"):
        shutil.rmtree(small_project / "data/demo/sources/likes" / f"dt={d}")
    c = _compile(small_project)
    assert list(c.waiting) == [dt.date(2026, 4, 2), dt.date(2026, 4, 3)]
    assert "needs partition dt=2026-04-04 of 'data/demo/sources/likes'" in c.waiting[dt.date(2026, 4, 2)]
    assert c.ready_days == [dt.date(2026, 4, 1)]
    with pytest.raises(DaedalusError, match=r"^dt=2026-04-03: waiting: label window 'likes_ahead'"):
        labels.check_not_waiting(c.plan, dt.date(2026, 4, 3))
    assert os.path.isdir(small_project / "data/demo/sources/likes/dt=2026-04-03")
