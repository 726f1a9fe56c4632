"""The sql and pythonic engines of pit_join and window_agg agree on every cell."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from daedalus.compile import compile_service
from daedalus.errors import DaedalusError
from daedalus.loading import DefinitionPaths
from daedalus.skeleton import run_skeleton_stage


def read_day(root: Path, day: str) -> pa.Table:
    parts = sorted((root / f"dt={day}").glob("part-*-0.parquet"), key=lambda p: int(p.name.split("-")[1]))
    return pa.concat_tables([pq.read_table(p) for p in parts])


def assert_tables_equal(a: pa.Table, b: pa.Table) -> None:
    assert a.schema == b.schema
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a[name].to_pylist(), b[name].to_pylist()
        for i, (u, v) in enumerate(zip(x, y)):
            if isinstance(u, float) and isinstance(v, float):
                assert math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-12), (name, i, u, v)
            else:
                assert u == v, (name, i, u, v)


def override_engines(project: Path, engines: dict[str, str]) -> None:
    """Hand-edit the plan as a user would: copy the generated one, change engines."""
    gen = yaml.safe_load((project / "config/pipelines/dssm_ranking.generated.yaml").read_text())
    for op in gen["operators"]:
        if op["kind"] in engines:
            op["engine"] = engines[op["kind"]]
    (project / "config/pipelines/dssm_ranking.yaml").write_text(yaml.safe_dump(gen, sort_keys=False))


@pytest.fixture
def in_project(project):
    old = os.getcwd()
    os.chdir(project)
    yield project
    os.chdir(old)


def test_sql_and_pythonic_engines_agree_on_demo_data(in_project):
    project = in_project
    sql = compile_service("dssm_ranking", DefinitionPaths())
    override_engines(project, {"pit_join": "pythonic", "window_agg": "pythonic"})
    py = compile_service("dssm_ranking", DefinitionPaths())
    assert py.plan_path.name == "dssm_ranking.yaml"
    assert {o.engine for o in py.plan.ops("pit_join") + py.plan.ops("window_agg")} == {"pythonic"}
    assert {o.engine for o in sql.plan.ops("pit_join") + sql.plan.ops("window_agg")} == {"sql"}
    for day in sql.days:
        run_skeleton_stage(sql.plan, day, project / "out_sql", chunk_rows=1000, run_days=sql.days)
        run_skeleton_stage(py.plan, day, project / "out_py", chunk_rows=1000, run_days=sql.days)
        a, b = read_day(project / "out_sql", day.isoformat()), read_day(project / "out_py", day.isoformat())
        assert a.num_rows > 100
        assert_tables_equal(a, b)


def test_unsupported_engine_in_override_is_a_clear_error(in_project):
    compile_service("dssm_ranking", DefinitionPaths())
    override_engines(in_project, {"derive": "pythonic"})
    with pytest.raises(DaedalusError) as e:
        compile_service("dssm_ranking", DefinitionPaths())
    assert "dssm_ranking.yaml" in e.value.where
    assert "engine 'pythonic' is not supported by a derive operator" in e.value.problem


def test_compile_is_deterministic_across_directories(in_project, tmp_path):
    first = compile_service("dssm_ranking", DefinitionPaths()).generated_yaml
    other = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(in_project, other, ignore=shutil.ignore_patterns("config"))
    shutil.copytree(in_project / "config" / "training", other / "config" / "training")
    os.chdir(other)
    second = compile_service("dssm_ranking", DefinitionPaths()).generated_yaml
    assert first == second
    assert str(in_project) not in first and str(other) not in first


def test_empty_day_gets_a_zero_row_part_with_the_full_schema(in_project):
    project = in_project
    c = compile_service("dssm_ranking", DefinitionPaths())
    day = c.days[0]
    shutil.rmtree(project / f"data/demo/sources/feed/dt={day.isoformat()}")
    c = compile_service("dssm_ranking", DefinitionPaths())
    res = run_skeleton_stage(c.plan, day, project / "out", chunk_rows=1000)
    assert res.rows == 0 and res.parts == 1
    t = pq.read_table(project / f"out/dt={day.isoformat()}/part-0-0.parquet")
    assert t.num_rows == 0
    assert t.schema.names == [col.name for col in c.plan.columns]
    assert t.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
