"""Per-source-day state (daedalus.skeleton.state) gives the raw look-back's values, to the row.

Events are drawn (hypothesis) on a grid around the day boundaries of the look-back and each
window's lower bound, written as `dt=` partitions the way users write them, sometimes with
rows in a partition of another day (a broken hive layout, which the state must survive);
the day's windows are computed from the state files (whole-day windows by their running
aggregates, the others by frames over fine partials) and compared with the naive reference
(tests/reference.py) and with the raw path's result. A second test does the same for a
point-in-time join read from a chain of snapshots.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daedalus import arrowtypes as at
from daedalus import functions
from daedalus.plan import Column, Plan, SourceSpec, make_op
from daedalus.skeleton import state
from daedalus.skeleton.context import DayContext
from daedalus.skeleton.stage import IMPLEMENTATIONS, run_skeleton_stage, scan_sources
from daedalus.skeleton.writer import assemble_sql, output_schema

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import reference as R  # noqa: E402
import test_functions as TF  # noqa: E402

DAY = TF.DAY
START = TF.START_US
H = 3600 * R.US
WINDOWS = {"1h": H, "1d": 24 * H, "2d": 48 * H, "36h": 36 * H}
# Day starts of the look-back, each window's bound for rows early in the day, and in between.
GRID = sorted(
    {
        START + d
        for d in (-49 * H, -48 * H, -47 * H, -37 * H, -36 * H, -35 * H, -25 * H, -24 * H, -23 * H)
        + (-12 * H, -2 * H, -H, -1, 0, 1, H // 2, H, 2 * H, 3 * H)
    }
)
ROW_GRID = [START + d for d in (0, 1, H // 2, H, 2 * H, 3 * H)]

events_st = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from([1, 2, 3, None]),
            "ts": st.sampled_from(GRID),
            "v_int": st.one_of(st.none(), st.integers(-3, 3)),
            "v_float": st.one_of(st.none(), st.sampled_from([-1.5, 0.0, 0.25, 2.0])),
            "v_str": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
            "v_ts": st.one_of(st.none(), st.sampled_from(GRID)),
            # 0: the event's own partition; otherwise a partition of another day
            "misplace": st.sampled_from([0, 0, 0, 0, 0, 0, -1, 1]),
        }
    ),
    max_size=30,
)
rows_st = st.lists(
    st.fixed_dictionaries({"user_id": st.sampled_from([1, 2, 3, 4, None]), "ts": st.sampled_from(ROW_GRID)}),
    max_size=10,
)


def _day_of(us: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(microseconds=us)


def _write_events(root: Path, events: list[dict]) -> str:
    """One `dt=` partition per day, rows in the order drawn (source order)."""
    by_day: dict[dt.date, list[dict]] = {}
    for e in events:
        d = _day_of(e["ts"]) + dt.timedelta(days=e["misplace"])
        by_day.setdefault(d, []).append(e)
    base = root / "events"
    for d, es in sorted(by_day.items()):
        part = base / f"dt={d.isoformat()}"
        part.mkdir(parents=True)
        pq.write_table(
            pa.table(
                {
                    "user_id": pa.array([e["user_id"] for e in es], pa.int64()),
                    "event_timestamp": TF._ts_array([e["ts"] for e in es]),
                    **{c: pa.array([e[c] for e in es], TF.COLUMNS[c]) for c in ("v_int", "v_float", "v_str")},
                    "v_ts": TF._ts_array([e["v_ts"] for e in es]),
                }
            ),
            part / "part-0.parquet",
        )
    base.mkdir(exist_ok=True)
    return str(base)


def _source_order(events: list[dict]) -> list[dict]:
    """The events in source order: by partition day (file path), then the order drawn."""
    return sorted(events, key=lambda e: _day_of(e["ts"]) + dt.timedelta(days=e["misplace"]))


def _run(plan: Plan, root: Path, with_state: bool, chain_from: dt.date | None = None) -> pa.Table:
    """The day's table; `chain_from`: the snapshots of the day before made as one chain from
    that day on (each merged from the one before), else from the raw look-back."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        scans = scan_sources(plan)
        if chain_from is not None:
            for spec in state.specs(plan).values():
                if spec.kind == "snapshot":
                    state.ensure(
                        plan, spec, DAY - dt.timedelta(days=1), root / "out", scans[spec.source], floor=chain_from
                    )
        files = {sid: scans[sid].for_day(DAY, spec.lookback_days) for sid, spec in plan.sources.items()}
        states = state.day_states(plan, DAY, root / "out", scans) if with_state else {}
        ctx = DayContext(con=con, plan=plan, day=DAY, files=files, output_root=root / "out", states=states)
        for op in plan.skeleton_operators:
            if op.kind != "write_parts":
                IMPLEMENTATIONS[(op.kind, op.engine)](ctx, op)
        write = plan.ops("write_parts")[0]
        return con.sql(assemble_sql(ctx, write)).to_arrow_table().cast(output_schema(write))
    finally:
        con.close()


def _merging_cases(engine: str) -> list[tuple[str, str | None]]:
    """The functions that merge from partials or reduced events (integer sums and means)."""
    out = []
    for name, col in ALL_CASES(engine):
        fn = functions.get(name)
        if name in state.REDUCED or (fn.merge and (not fn.merge_needs_exact or col == "v_int")):
            out.append((name, col))
    return out


ALL_CASES = TF._cases


@pytest.mark.parametrize("subset", ["all", "merging"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events_st, rows=rows_st, broken=st.booleans())
def test_windows_from_state_equal_the_reference(
    subset: str,
    events: list[dict],
    rows: list[dict],
    broken: bool,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Half the examples keep every event in its own day's partition (whole-day windows then
    come from running aggregates), half break the layout (frames over fine partials). With
    every function, the ranked and distinct ones read the raw look-back (`first` and float
    sums are among them); with only the ones that merge, they read the reduced events of the
    earlier days (state.REDUCED)."""
    tmp = tmp_path_factory.mktemp("state")
    if not broken:
        events = [{**e, "misplace": 0} for e in events]
    monkeypatch.setattr(TF, "WINDOWS", WINDOWS)
    if subset == "merging":
        monkeypatch.setattr(TF, "_cases", _merging_cases)
        monkeypatch.setattr(TF, "WITH_WHERE", False)
    spine_path, _ = TF._write(tmp, [], rows)
    events_path = _write_events(tmp, events)
    plan = TF._plan("sql", spine_path, events_path)
    # The look-back the compiler gives this source: partitions back to the longest window.
    spec = plan.sources["events"].model_copy(update={"lookback_days": 2})
    plan = plan.model_copy(update={"sources": {**plan.sources, "events": spec}})
    assert "window_agg.a" in state.specs(plan)
    assert ("window_agg.a" + state.EVENTS in state.specs(plan)) == (subset == "merging")
    # The events state after the day before, merged along a chain from three days before it
    # (the first from the raw look-back) ...
    got = _run(plan, tmp, with_state=True, chain_from=DAY - dt.timedelta(days=4))
    ordered = _source_order(events)
    # Events outside every partition the day reads are not in its look-back.
    lo = DAY - dt.timedelta(days=2)
    visible = [e for e in ordered if lo <= _day_of(e["ts"]) + dt.timedelta(days=e["misplace"]) <= DAY]
    expected = TF._expected("sql", visible, rows)
    columns = [(c.name, at.from_str(c.type)) for c in plan.columns]
    problems = R.compare_rows(columns, expected, got, label="window_agg from state")
    assert not problems, "\n".join(problems)
    assert got.equals(_run(plan, tmp, with_state=False)), "state and raw paths differ"
    # ... and made from the raw look-back alone.
    shutil.rmtree(tmp / "out", ignore_errors=True)
    assert got.equals(_run(plan, tmp, with_state=True)), "chained and raw-made states differ"


def _sum_cases(engine: str) -> list[tuple[str, str | None]]:
    """Only functions whose partials all merge by sum: the vectorized running sums."""
    return [(n, c) for n, c in ALL_CASES(engine) if n in ("count", "sum", "mean") and c in (None, "v_int")]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events_st, rows=rows_st)
def test_vectorized_partials_equal_window_functions(
    events: list[dict], rows: list[dict], tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The numpy running sums (state._running_sums) give the table the window functions
    give, to the null, for counts, integer sums and means, filtered (`where:`) or not; and
    the day's windows read from them equal the naive reference."""
    tmp = tmp_path_factory.mktemp("vec")
    events = [{**e, "misplace": 0} for e in events]
    monkeypatch.setattr(TF, "WINDOWS", WINDOWS)
    monkeypatch.setattr(TF, "_cases", _sum_cases)
    spine_path, _ = TF._write(tmp, [], rows)
    plan = TF._plan("sql", spine_path, _write_events(tmp, events))
    spec = plan.sources["events"].model_copy(update={"lookback_days": 2})
    plan = plan.model_copy(update={"sources": {**plan.sources, "events": spec}})
    partials = state.specs(plan)["window_agg.a"]
    scan = scan_sources(plan)["events"]
    used = []
    real = state._running_sums
    monkeypatch.setattr(state, "_running_sums", lambda *a: used.append(1) or real(*a))
    for day in [d for d in scan.days if d is not None]:
        files = state.input_files(partials, scan, day)
        fast = state.compute_partials(plan, [partials], day, files, tmp, None)[partials.key]
        with monkeypatch.context() as m:
            m.setattr(state, "_running_sums", lambda *a: None)
            slow = state.compute_partials(plan, [partials], day, files, tmp, None)[partials.key]
        assert fast.schema.remove_metadata() == slow.schema.remove_metadata()
        assert fast.equals(slow), (day, fast.to_pylist(), slow.to_pylist())
    assert len(used) == len({d for d in scan.days if d is not None})
    got = _run(plan, tmp, with_state=True)
    visible = [e for e in _source_order(events) if DAY - dt.timedelta(days=2) <= _day_of(e["ts"]) <= DAY]
    columns = [(c.name, at.from_str(c.type)) for c in plan.columns]
    problems = R.compare_rows(columns, TF._expected("sql", visible, rows), got, label="windows from numpy partials")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- snapshots

PIT_DAYS = [DAY - dt.timedelta(days=i) for i in (3, 2, 1, 0)]
feature_rows_st = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from([1, 2, 3, None]),
            "ts": st.sampled_from(sorted({START + d for d in range(-4 * 24 * H, 3 * H, 6 * H)} | set(GRID))),
            "created": st.one_of(st.none(), st.sampled_from([START - H, START, START + H])),
            "score": st.one_of(st.none(), st.integers(0, 9)),
            "misplace": st.sampled_from([0, 0, 0, 0, 0, -1, 1]),
        }
    ),
    max_size=30,
)


def _pit_plan(spine_path: str, rows_path: str, ttl: str | None) -> Plan:
    cols = {"event_timestamp": at.to_str(R.UTC_US), "user_id": "int64"}
    spine = make_op(
        kind="spine",
        name="spine",
        engine="sql",
        inputs=["source:spine"],
        outputs=[Column(name=c, type=t) for c, t in cols.items()],
        params={"source": "spine", "entities": ["user_id"]},
    )
    pit = make_op(
        kind="pit_join",
        name="pit_join.v",
        engine="sql",
        inputs=["spine", "source:v"],
        outputs=[Column(name="score", type="int64")],
        params={"view": "v", "source": "v", "entities": ["user_id"], "ttl": ttl, "columns": ["score"]},
    )
    write = make_op(
        kind="write_parts",
        name="write_parts",
        engine="sql",
        inputs=["spine", "pit_join.v"],
        outputs=[*spine.outputs, Column(name="score", type="int64")],
    )
    lookback = None if ttl is None else -(-R.duration_us(ttl) // (24 * H))
    return Plan(
        service="pit",
        sources={
            "spine": SourceSpec(path=spine_path, timestamp_field="event_timestamp", columns=cols),
            "v": SourceSpec(
                path=rows_path,
                timestamp_field="event_timestamp",
                created_timestamp_field="created_at",
                lookback_days=lookback,
                columns={
                    "user_id": "int64",
                    "event_timestamp": at.to_str(R.UTC_US),
                    "created_at": at.to_str(R.UTC_US),
                    "score": "int64",
                },
            ),
        },
        operators=[spine, pit, write],
    )


def _write_feature_rows(where: Path, rows: list[dict]) -> None:
    by_day: dict[dt.date, list[dict]] = {}
    for r in rows:
        by_day.setdefault(_day_of(r["ts"]) + dt.timedelta(days=r["misplace"]), []).append(r)
    for d, rs in by_day.items():
        part = where / f"dt={d.isoformat()}"
        part.mkdir(parents=True)
        pq.write_table(
            pa.table(
                {
                    "user_id": pa.array([r["user_id"] for r in rs], pa.int64()),
                    "event_timestamp": TF._ts_array([r["ts"] for r in rs]),
                    "created_at": TF._ts_array([r["created"] for r in rs]),
                    "score": pa.array([r["score"] for r in rs], pa.int64()),
                }
            ),
            part / "part-0.parquet",
        )
    where.mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize("ttl", ["1d", "36h", None])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=feature_rows_st, spine=rows_st)
def test_joins_from_snapshots_equal_the_raw_look_back(
    ttl: str | None, rows: list[dict], spine: list[dict], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Snapshots chained over four days (each merged from the one before, the first from raw)
    give every day's join the raw look-back's values and bytes, with late and early rows in
    partitions of other days, created-timestamp ties and null entities."""
    tmp = tmp_path_factory.mktemp("snap")
    _write_feature_rows(tmp / "v", rows)
    for day in PIT_DAYS:
        shift = (day - DAY).days * 24 * H
        sp = tmp / f"spine-{day}"
        sp.mkdir()
        pq.write_table(
            pa.table(
                {
                    "event_timestamp": TF._ts_array([r["ts"] + shift for r in spine]),
                    "user_id": pa.array([r["user_id"] for r in spine], pa.int64()),
                }
            ),
            sp / "spine.parquet",
        )
    for day in PIT_DAYS:
        plan = _pit_plan(str(tmp / f"spine-{day}" / "spine.parquet"), str(tmp / "v"), ttl)
        outs = {}
        for inc in (True, False):
            out = tmp / f"out-{inc}"
            run_skeleton_stage(plan, day, out, chunk_rows=1000, incremental=inc)
            outs[inc] = (out / f"dt={day}" / "part-0-0.parquet").read_bytes()
        assert outs[True] == outs[False], f"{day}: snapshot and raw paths differ"


@pytest.mark.parametrize("ttl", ["36h", None])
def test_snapshot_jobs_in_any_order_make_one_chain(ttl: str | None, tmp_path: Path, monkeypatch) -> None:
    """State jobs of a run run in whatever order the scheduler picks: each makes the chain back
    to the run's first snapshot day when it is not there, so newest-first gives the same files
    as oldest-first, with one snapshot from the raw look-back in either order; and a changed
    partition remakes the snapshots that stand for it from the chain."""
    rows = [
        {
            "user_id": u,
            "ts": START + (12 + 5 * i + u) * H,
            "created": START + (12 + 5 * i) * H,
            "score": i * 10 + u,
            "misplace": 0,
        }
        for i in range(20)
        for u in (1, 2)
    ]
    _write_feature_rows(tmp_path / "v", rows)
    (tmp_path / "spine").mkdir()
    plan = _pit_plan(str(tmp_path / "spine"), str(tmp_path / "v"), ttl)
    scans = scan_sources(plan)
    days = sorted(d for d in scans["v"].days if d is not None)[1:]
    raw: list[dt.date] = []
    compute = state.compute_snapshot

    def counting(plan, spec, day, files, root, temp, previous, partition):
        if previous is None:
            raw.append(day)
        return compute(plan, spec, day, files, root, temp, previous, partition)

    monkeypatch.setattr(state, "compute_snapshot", counting)
    made = {}
    for name, order in (("up", days), ("down", days[::-1])):
        raw.clear()
        root = tmp_path / name
        for d in order:
            state.ensure_day(plan, "snapshot", d, root, scans, floor=days[0])
        assert raw == [days[0]], (name, raw)
        made[name] = {p.name: p.read_bytes() for p in sorted(root.glob(".daedalus/state/snapshot/*/*.parquet"))}
    assert len(made["up"]) == len(days) and made["up"] == made["down"]

    # Partition days[2] changes: the snapshots that stand for it are remade, merged from the chain.
    part = tmp_path / "v" / f"dt={days[2].isoformat()}" / "part-0.parquet"
    t = pq.read_table(part)
    pq.write_table(t.slice(1), part)
    scans = scan_sources(plan)
    raw.clear()
    for d in days[::-1]:
        state.ensure_day(plan, "snapshot", d, tmp_path / "up", scans, floor=days[0])
    assert raw == []
    fresh = tmp_path / "fresh"
    for d in days:
        state.ensure_day(plan, "snapshot", d, fresh, scans, floor=days[0])
    again = {p.name: p.read_bytes() for p in sorted((tmp_path / "up").glob(".daedalus/state/snapshot/*/*.parquet"))}
    assert again == {p.name: p.read_bytes() for p in sorted(fresh.glob(".daedalus/state/snapshot/*/*.parquet"))}
    assert again != made["up"]
