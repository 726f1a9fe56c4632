"""Every aggregation function of the registry, on every engine that has it, against the naive
reference: one window_agg operator run in-process on a DuckDB connection (no compile, no
Snakemake), its day assembled by the writer's own SQL, so empty-window values are checked too.

The cases are generated from `daedalus.functions.FUNCTIONS` and the engines' declared
support (`daedalus.skeleton.stage.FUNCTION_SUPPORT`): a new function is tested here as soon as
it is registered, against its entry in tests/reference.py (`aggregate`).

Events and rows are drawn (hypothesis) on a small grid of times around the day's start and a
window's lower bound, so ties, rows at exactly `t` (excluded), events at exactly `t - w`
(included), null groups, null values, groups without events and empty windows all occur.
"""

from __future__ import annotations

import datetime as dt
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
from daedalus.skeleton.context import DayContext
from daedalus.skeleton.stage import FUNCTION_SUPPORT, IMPLEMENTATIONS
from daedalus.skeleton.writer import assemble_sql, output_schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402

DAY = dt.date(2026, 3, 10)
START_US = R.day_start_us(DAY)
H = 3600 * R.US
WINDOWS = {"1h": H, "1d": 24 * H}
# Times near the day's start, near t - 1h and t - 1d for rows early in the day, and a few
# inside the day: the grid makes exact-boundary and equal-timestamp cases likely.
GRID = sorted({START_US + d for d in (-25 * H, -24 * H, -23 * H, -2 * H, -H, -1, 0, 1, H // 2, H, 2 * H, 3 * H)})
ROW_GRID = [START_US + d for d in (0, 1, H // 2, H, 2 * H, 3 * H)]
USERS = st.sampled_from([1, 2, 3, None])
COLUMNS = {"v_int": pa.int64(), "v_float": pa.float64(), "v_str": pa.string(), "v_ts": R.UTC_US}
KINDS = list(FUNCTION_SUPPORT)  # (window_agg, engine) pairs


def _case_columns(fn: functions.AggFunction) -> list[str | None]:
    cols: list[str | None] = [c for c, t in COLUMNS.items() if fn.accepts(t)]
    return ([None] if fn.column == "optional" else []) + cols


def _cases(engine: str) -> list[tuple[str, str | None]]:
    """(function, column) pairs the engine has: every registered function, every column it accepts."""
    support = FUNCTION_SUPPORT[("window_agg", engine)]
    return [(name, col) for name, fn in functions.FUNCTIONS.items() if name in support for col in _case_columns(fn)]


ENGINES = [engine for (kind, engine) in FUNCTION_SUPPORT if kind == "window_agg"]


def test_every_registered_function_is_tested_on_some_engine() -> None:
    tested = {name for engine in ENGINES for name, _ in _cases(engine)}
    assert tested == set(functions.FUNCTIONS), set(functions.FUNCTIONS) - tested


events_st = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": USERS,
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
    min_size=0,
    max_size=10,
)


def _ts_array(values: list[int | None]) -> pa.Array:
    return pa.array(values, pa.int64()).cast(R.UTC_US)


def _write(tmp: Path, events: list[dict], rows: list[dict]) -> tuple[str, str]:
    ev = pa.table(
        {
            "user_id": pa.array([e["user_id"] for e in events], pa.int64()),
            "event_timestamp": _ts_array([e["ts"] for e in events]),
            "v_int": pa.array([e["v_int"] for e in events], pa.int64()),
            "v_float": pa.array([e["v_float"] for e in events], pa.float64()),
            "v_str": pa.array([e["v_str"] for e in events], pa.string()),
            "v_ts": _ts_array([e["v_ts"] for e in events]),
        }
    )
    sp = pa.table(
        {
            "event_timestamp": _ts_array([r["ts"] for r in rows]),
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        }
    )
    pq.write_table(ev, tmp / "events.parquet")
    pq.write_table(sp, tmp / "spine.parquet")
    return str(tmp / "spine.parquet"), str(tmp / "events.parquet")


# A value for each parameter a function takes: k = 2 keeps lists short enough to cut;
# top_n = 1 cuts a histogram's ties.
PARAM_VALUES = {"k": 2, "q": 0.5, "half_life": "30m", "top_n": 1}


def _params(fn: functions.AggFunction) -> dict:
    return {p: PARAM_VALUES[p] for p in fn.params + fn.optional}


def _output(function: str, column: str | None, window: str) -> str:
    return f"{function}__{column or 'rows'}__{window}"


# Each (function, column) once more over the 1d window with a `where:` filter, null cases
# included (`NULL OR false` is null, which counts as false), and its meaning in Python.
WHERE = "v_int > 0 OR v_str = 'a'"
WITH_WHERE = True  # tests/test_state.py's merging-only case turns the filtered ones off


def _where(e: dict) -> bool:
    return (e["v_int"] is not None and e["v_int"] > 0) or (e["v_str"] is not None and e["v_str"] == "a")


def _plan(engine: str, spine_path: str, events_path: str) -> Plan:
    features, outputs = [], []
    for function, column in _cases(engine):
        fn = functions.get(function)
        out_type = at.to_str(fn.output(COLUMNS[column] if column else None))
        for w in WINDOWS:
            features.append(
                {"output": _output(function, column, w), "function": function, "column": column, "window": w}
                | _params(fn)
            )
            outputs.append(Column(name=_output(function, column, w), type=out_type))
        if not WITH_WHERE:
            continue
        features.append(
            {"output": _output(function, column, "where"), "function": function, "column": column, "window": "1d"}
            | _params(fn)
            | {"where": WHERE}
        )
        outputs.append(Column(name=_output(function, column, "where"), type=out_type))
    cols = {"event_timestamp": at.to_str(R.UTC_US), "user_id": "int64"}
    spine = make_op(
        kind="spine",
        name="spine",
        engine="sql",
        inputs=["source:spine"],
        outputs=[Column(name=c, type=t) for c, t in cols.items()],
        params={"source": "spine", "entities": ["user_id"]},
    )
    agg = make_op(
        kind="window_agg",
        name="window_agg.a",
        engine=engine,
        inputs=["spine", "source:events"],
        outputs=outputs,
        params={"aggregation": "a", "source": "events", "group_by": ["user_id"], "features": features},
    )
    write = make_op(
        kind="write_parts",
        name="write_parts",
        engine="sql",
        inputs=["spine", "window_agg.a"],
        outputs=[*spine.outputs, *agg.outputs],
    )
    ev_cols = {"user_id": "int64", "event_timestamp": at.to_str(R.UTC_US)}
    ev_cols |= {c: at.to_str(t) for c, t in COLUMNS.items()}
    return Plan(
        service="functions",
        sources={
            "spine": SourceSpec(path=spine_path, timestamp_field="event_timestamp", columns=cols),
            "events": SourceSpec(
                path=events_path, timestamp_field="event_timestamp", lookback_days=None, columns=ev_cols
            ),
        },
        operators=[spine, agg, write],
    )


def _expected(engine: str, events: list[dict], rows: list[dict]) -> list[dict]:
    ref_events = [
        {**{c: e[c] for c in COLUMNS}, "user_id": e["user_id"], "_ts": e["ts"], "_ord": i} for i, e in enumerate(events)
    ]
    out = []
    for r in sorted(rows, key=lambda r: r["ts"]):  # the spine's order: time, then source order (stable sort)
        row = {"event_timestamp": r["ts"], "user_id": r["user_id"]}
        for w, us in WINDOWS.items():
            inside = R.window_events(ref_events, ["user_id"], {"user_id": r["user_id"]}, r["ts"], us)
            for function, column in _cases(engine):
                params = _params(functions.get(function))
                row[_output(function, column, w)] = R.aggregate(
                    function, inside, column, params.get("k"), COLUMNS.get(column or ""), r["ts"], params
                )
        if not WITH_WHERE:
            out.append(row)
            continue
        kept = [e for e in R.window_events(ref_events, ["user_id"], {"user_id": r["user_id"]}, r["ts"], WINDOWS["1d"])]
        for function, column in _cases(engine):
            params = _params(functions.get(function))
            row[_output(function, column, "where")] = R.aggregate(
                function,
                [e for e in kept if _where(e)],
                column,
                params.get("k"),
                COLUMNS.get(column or ""),
                r["ts"],
                params,
            )
        out.append(row)
    return out


def _run(plan: Plan) -> pa.Table:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        files = {sid: [spec.path] for sid, spec in plan.sources.items()}
        ctx = DayContext(con=con, plan=plan, day=DAY, files=files, output_root=Path(plan.sources["spine"].path).parent)
        for op in plan.skeleton_operators:
            if op.kind != "write_parts":
                IMPLEMENTATIONS[(op.kind, op.engine)](ctx, op)
        write = plan.ops("write_parts")[0]
        return con.sql(assemble_sql(ctx, write)).to_arrow_table().cast(output_schema(write))
    finally:
        con.close()


def _approximate_within_bound(got: pa.Table, expected: list[dict]) -> pa.Table:
    """A sketch's estimate is checked against the exact value within its bound (an off-by-one
    on the few values drawn here: linear counting), then taken as equal for the comparison of
    the rest; tests/test_sketches.py checks the bound at scale."""
    for name in got.column_names:
        if not name.startswith("approx_count_distinct__"):
            continue
        values = got[name].to_pylist()
        for row, (g, e) in enumerate(zip(values, expected)):
            assert abs(g - e[name]) <= max(1, 0.12 * e[name]), (name, row, g, e[name])
        i = got.column_names.index(name)
        got = got.set_column(i, name, pa.array([e[name] for e in expected], got[name].type))
    return got


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events_st, rows=rows_st)
def test_functions_equal_the_reference(engine: str, events: list[dict], rows: list[dict], tmp_path: Path) -> None:
    """Each output column is one (function, column, window): a failure names the function."""
    spine_path, events_path = _write(tmp_path, events, rows)
    plan = _plan(engine, spine_path, events_path)
    got = _run(plan)
    expected = _expected(engine, events, rows)
    got = _approximate_within_bound(got, expected)
    columns = [(c.name, at.from_str(c.type)) for c in plan.columns]
    problems = R.compare_rows(columns, expected, got, label=f"window_agg on {engine}")
    assert not problems, "\n".join(problems)
