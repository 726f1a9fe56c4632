"""Bucketed aggregations (`bucket_by`, optionally `buckets`) against the naive reference
(tests/reference.py `bucket_map`, `bucket_events`), on every engine, in-process on DuckDB with
the events and rows of tests/test_functions.py: null buckets, buckets whose events all have a
null value (absent from the map), empty windows (the empty map), integer bucket keys (text
order: "-1" < "0" < "10" < "2"), fixed buckets with no events (the empty-window value) and
buckets combined with `where:`. Then the YAML model and compile: names, types, one-line errors.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from daedalus import arrowtypes as at
from daedalus import functions
from daedalus.errors import DaedalusError
from daedalus.plan import Column, Plan, WindowFeature
from daedalus.skeleton.stage import BUCKET_MAP_SUPPORT

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402
import test_functions as TF  # noqa: E402

ENGINES = [engine for (kind, engine) in BUCKET_MAP_SUPPORT if kind == "window_agg"]
WINDOW = "1d"
FIXED = ["a", "c", "zz"]  # "zz" never occurs: its column is the empty-window value
WHERE = "v_float > 0"


def _features(engine: str) -> list[dict]:
    """Bucket maps by v_str of every function the engine has per bucket, on every column it
    accepts; by the integer v_int for a few; fixed buckets (lists included) and where."""
    feats: list[dict] = []
    for name in sorted(BUCKET_MAP_SUPPORT[("window_agg", engine)]):
        fn = functions.get(name)
        for col in TF._case_columns(fn):
            feats.append({"function": name, "column": col, "bucket_by": "v_str"} | TF._params(fn))
    feats += [
        {"function": "count", "column": None, "bucket_by": "v_int"},
        {"function": "sum", "column": "v_float", "bucket_by": "v_int"},
        {"function": "count", "column": None, "bucket_by": "v_str", "where": WHERE},
        {"function": "count", "column": None, "bucket_by": "v_str", "buckets": FIXED},
        {"function": "sum", "column": "v_int", "bucket_by": "v_str", "buckets": FIXED, "where": WHERE},
        {"function": "last_k", "column": "v_int", "bucket_by": "v_str", "buckets": FIXED, "k": 2},
        {"function": "mean", "column": "v_float", "bucket_by": "v_int", "buckets": [1, -2]},
    ]
    for i, f in enumerate(feats):
        f["name"] = f"f{i}_{f['function']}"
    return feats


def _plan(engine: str, spine_path: str, events_path: str) -> Plan:
    base = TF._plan(engine, spine_path, events_path)
    features, outputs = [], []
    for f in _features(engine):
        fn = functions.get(f["function"])
        out_type = fn.output(TF.COLUMNS[f["column"]] if f["column"] else None)
        common = {k: v for k, v in f.items() if k not in ("name", "buckets")} | {"window": WINDOW}
        if "buckets" in f:
            for b in f["buckets"]:
                out = f"{f['name']}_{R._key(b)}"
                features.append(common | {"output": out, "bucket": R._key(b)})
                outputs.append(Column(name=out, type=at.to_str(out_type)))
        else:
            features.append(common | {"output": f["name"]})
            outputs.append(Column(name=f["name"], type=at.to_str(pa.map_(pa.string(), out_type))))
    data = base.model_dump(mode="json")
    for op in data["operators"]:
        if op["kind"] == "window_agg":
            op["params"]["features"] = features
            op["outputs"] = [c.model_dump() for c in outputs]
        if op["kind"] == "write_parts":
            op["outputs"] = op["outputs"][:2] + [c.model_dump() for c in outputs]
    return Plan.model_validate(data)


def _expected(engine: str, events: list[dict], rows: list[dict]) -> list[dict]:
    ref_events = [
        {**{c: e[c] for c in TF.COLUMNS}, "user_id": e["user_id"], "_ts": e["ts"], "_ord": i}
        for i, e in enumerate(events)
    ]
    out = []
    for r in sorted(rows, key=lambda r: r["ts"]):
        row = {"event_timestamp": r["ts"], "user_id": r["user_id"]}
        inside = R.window_events(ref_events, ["user_id"], {"user_id": r["user_id"]}, r["ts"], TF.WINDOWS[WINDOW])
        for f in _features(engine):
            col_type = TF.COLUMNS.get(f["column"] or "")
            kept = [e for e in inside if e["v_float"] is not None and e["v_float"] > 0] if "where" in f else inside
            if "buckets" in f:
                for b in f["buckets"]:
                    row[f"{f['name']}_{R._key(b)}"] = R.aggregate(
                        f["function"],
                        R.bucket_events(kept, f["bucket_by"], b),
                        f["column"],
                        f.get("k"),
                        col_type,
                        r["ts"],
                        f,
                    )
            else:
                row[f["name"]] = R.bucket_map(f["function"], kept, f, col_type, r["ts"])
        out.append(row)
    return out


def test_every_function_with_a_scalar_value_has_a_bucket_map_on_some_engine() -> None:
    scalar = {
        name
        for name, fn in functions.FUNCTIONS.items()
        if not any(pa.types.is_list(t) or pa.types.is_map(t) for t in [fn.output(pa.int64())])
    }
    assert set().union(*BUCKET_MAP_SUPPORT.values()) == scalar


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=TF.events_st, rows=TF.rows_st)
def test_bucketed_features_equal_the_reference(
    engine: str, events: list[dict], rows: list[dict], tmp_path: Path
) -> None:
    spine_path, events_path = TF._write(tmp_path, events, rows)
    plan = _plan(engine, spine_path, events_path)
    got = TF._run(plan)
    expected = _expected(engine, events, rows)
    got = _approximate(got, expected)
    columns = [(c.name, at.from_str(c.type)) for c in plan.columns]
    problems = R.compare_rows(columns, expected, got, label=f"bucketed window_agg on {engine}")
    assert not problems, "\n".join(problems)


def _approximate(got: pa.Table, expected: list[dict]) -> pa.Table:
    """approx_count_distinct per bucket: within the sketch's bound, then taken as equal."""
    for name in got.column_names:
        if "approx_count_distinct" not in name:
            continue
        for g, e in zip(got[name].to_pylist(), expected):
            assert [k for k, _ in g] == [k for k, _ in e[name]]
            for (_, x), (_, y) in zip(g, e[name]):
                assert abs(x - y) <= max(1, 0.12 * y), (name, g, e[name])
        i = got.column_names.index(name)
        got = got.set_column(i, name, pa.array([e[name] for e in expected], got[name].type))
    return got


def test_a_bucket_needs_its_column() -> None:
    with pytest.raises(ValueError, match="'bucket' needs 'bucket_by'"):
        WindowFeature(output="x", function="count", window="1d", bucket="a")


def test_where_only_keys_keep_their_digest() -> None:
    """Plans written before buckets existed keep their value keys (and so their digests)."""
    f = WindowFeature(output="x", function="count", window="1d", where="a > 0")
    assert f.value == "?" + __import__("hashlib").sha1(b"a > 0").hexdigest()[:12]
    assert "bucket_by" not in f.model_dump()


# -- definitions and compile -------------------------------------------------------------------


@pytest.fixture
def small_project(demo_template: Path, tmp_path: Path, monkeypatch) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(demo_template, dest, symlinks=True)
    monkeypatch.chdir(dest)
    return dest


def _compile():
    from daedalus.compile import compile_service
    from daedalus.loading import DefinitionPaths

    return compile_service("dssm_ranking", DefinitionPaths(), output_dir=None)


AGG = "config/training/aggregations.yaml"
LIKES = "      - {name: likes, function: count}\n      - {name: recent_liked"


def test_bucketed_demo_features_compile_to_maps_and_fixed_columns(small_project: Path) -> None:
    c = _compile()
    types = {col.name: col.type for col in c.plan.columns}
    assert types["user_surfaces__likes_7d"] == "map<string, int64>"
    assert types["user_surfaces__recent_7d"] == "list<string>"
    for b in ("ios", "android", "web"):
        assert types[f"artwork_engagement__clicks_on_{b}_7d"] == "int64"
    op = c.plan.op("window_agg.artwork_engagement")
    fixed = [f for f in op.params.features if f.bucket is not None]
    assert [f.bucket for f in fixed] == ["ios", "android", "web"] and all(f.bucket_by == "device" for f in fixed)


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (
            "      - {name: likes, function: count, buckets: [a]}\n",
            f"{AGG}: aggregations[3].features[0]: feature 'likes': 'buckets' needs 'bucket_by'",
        ),
        (
            "      - {name: likes, function: count, bucket_by: surface, buckets: [a-b]}\n",
            f"{AGG}: aggregations[3].features[0]: feature 'likes': bucket 'a-b' cannot be part of",
        ),
        (
            "      - {name: likes, function: count, bucket_by: surface, buckets: [a, a]}\n",
            f"{AGG}: aggregations[3].features[0]: duplicate bucket 'a'",
        ),
        (
            "      - {name: likes, function: count, bucket_by: surfaec}\n",
            f"{AGG}: aggregation 'user_likes': feature 'likes': bucket_by: column 'surfaec' not found",
        ),
        (
            "      - {name: likes, function: count, bucket_by: event_timestamp}\n",
            f"{AGG}: aggregation 'user_likes': feature 'likes': bucket_by: column 'event_timestamp' is "
            "timestamp[us, tz=UTC], expected a string, integer or bool column",
        ),
        (
            "      - {name: likes, function: last_k, column: artwork_id, k: 2, bucket_by: surface}\n",
            f"{AGG}: aggregation 'user_likes': feature 'likes': bucket_by: last_k has a list<int64> value",
        ),
    ],
)
def test_bucket_errors_are_one_line(small_project: Path, new: str, message: str) -> None:
    path = small_project / AGG
    text = path.read_text()
    old = "      - {name: likes, function: count}\n      - {name: recent_liked"
    assert old in text
    path.write_text(text.replace(old, new + "      - {name: recent_liked", 1))
    with pytest.raises(DaedalusError) as e:
        _compile()
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_a_label_window_takes_no_buckets(small_project: Path) -> None:
    path = small_project / AGG
    text = path.read_text()
    old = "    windows: [1d]\n    features:\n      - {name: likes, function: count}\n\nembedding_store"
    assert old in text, "the demo's label window"
    path.write_text(
        text.replace(
            old,
            "    windows: [1d]\n    features:\n      - {name: likes, function: count, bucket_by: surface}\n\nembedding_store",
        )
    )
    with pytest.raises(DaedalusError) as e:
        _compile()
    assert str(e.value).startswith(f"{AGG}: label window 'likes_ahead': feature 'likes': 'bucket_by' is not supported")


# -- files as pandas and polars write them -------------------------------------------------------


def _rewrite(path: str, writer: str) -> None:
    """The same rows written by pandas (datetime64[ns, America/New_York]) or polars
    (Datetime('us', 'Asia/Kolkata')), the ways users make their event files."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    ts = [n for n in t.column_names if pa.types.is_timestamp(t.schema.field(n).type)]
    if writer == "pandas":
        import pandas as pd

        df = t.to_pandas(types_mapper=pd.ArrowDtype)
        for n in ts:
            df[n] = df[n].astype("datetime64[ns, UTC]").dt.tz_convert("America/New_York")
        df.to_parquet(path, index=False)
    else:
        import polars as pl

        frame = pl.from_arrow(t)
        assert isinstance(frame, pl.DataFrame)
        frame.with_columns([pl.col(n).dt.convert_time_zone("Asia/Kolkata") for n in ts]).write_parquet(path)
    written = pq.read_schema(path)
    unit, tz = ("ns", "America/New_York") if writer == "pandas" else ("us", "Asia/Kolkata")
    assert all(written.field(n).type == pa.timestamp(unit, tz) for n in ts), written


@pytest.mark.parametrize("writer", ["pandas", "polars"])
@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=TF.events_st, rows=TF.rows_st)
def test_bucketed_features_over_pandas_and_polars_files(
    engine: str, writer: str, events: list[dict], rows: list[dict], tmp_path: Path
) -> None:
    spine_path, events_path = TF._write(tmp_path, events, rows)
    for p in (spine_path, events_path):
        _rewrite(p, writer)
    plan = _plan(engine, spine_path, events_path)
    got = _approximate(TF._run(plan), expected := _expected(engine, events, rows))
    columns = [(c.name, at.from_str(c.type)) for c in plan.columns]
    problems = R.compare_rows(columns, expected, got, label=f"bucketed window_agg on {engine}, {writer} files")
    assert not problems, "\n".join(problems)
