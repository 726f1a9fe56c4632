"""A feature's `expr` is one scalar expression over the view's columns, nothing else.

Each hostile form is refused at compile time with one line naming the view file and the
feature (the CLI runs in-process: one copy of the demo project for the module, each case
edits one feature). Behind that check, the skeleton stage's DuckDB has external access
disabled: a plan that skipped the check still cannot read a file.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from daedalus.cli import main
from daedalus.compile import compile_service
from daedalus.loading import DefinitionPaths
from daedalus.plan import validate_plan
from daedalus.skeleton import run_skeleton_stage

VIEW = "feature_views/user_profile.yaml"
FEATURE = "log_followers"

# (id, expr, a word the error must contain)
FORMS = [
    ("semicolon", "ln(1 + follower_count); select 1", "';'"),
    ("second_statement", "1) AS a FROM __source; DROP TABLE __source; SELECT (1", "statements"),
    ("scalar_subquery", "(select max(follower_count) from user_profile)", "sub-quer"),
    ("exists_subquery", "exists(select 1)", "sub-quer"),
    ("in_subquery", "follower_count in (select 1)", "sub-quer"),
    ("from_injection", "1) FROM read_csv('/etc/passwd') --", "FROM"),
    ("where_injection", "1) FROM __source WHERE (true", "FROM"),
    ("read_csv", "read_csv('/etc/passwd')", "read_csv"),
    ("read_parquet", "read_parquet('data/demo/sources/feed')", "read_parquet"),
    ("glob", "glob('/etc/*')", "glob"),
    ("read_text", "read_text('/etc/hostname')", "read_text"),
    ("read_blob", "read_blob('/etc/hostname')", "read_blob"),
    ("query_table_function", "query('select 42')", "query"),
    ("copy", "copy (select 1) to '/tmp/daeda_pwned.csv'", "COPY"),
    ("attach", "attach '/tmp/daeda_pwned.db'", "ATTACH"),
    ("install", "install httpfs", "INSTALL"),
    ("load", "load httpfs", "LOAD"),
    ("pragma", "pragma version", "PRAGMA"),
    ("set", "set threads = 1", "SET"),
    ("getenv", "getenv('HOME')", "getenv"),
    ("current_setting", "current_setting('temp_directory')", "current_setting"),
    ("now", "now()", "now"),
    ("volatile", "random()", "deterministic"),
    ("aggregate", "max(follower_count)", "aggregate"),
    ("window", "sum(follower_count) over ()", "window"),
    ("qualified_function", "main.abs(follower_count)", "qualified"),
    ("parameter", "$1", "parameter"),
    ("star", "columns(*)", "COLUMNS"),
    ("unknown_type", "follower_count::my_type", "type"),
]


@pytest.fixture(scope="module")
def workdir(demo_template, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile") / "project"
    shutil.copytree(demo_template, d, symlinks=True)
    return d


def run_cli(workdir: Path, capsys, *args: str) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(workdir)
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        os.chdir(old)
    return code, capsys.readouterr().err


def set_expr(workdir: Path, expr: str) -> str:
    path = workdir / VIEW
    original = path.read_text()
    view = yaml.safe_load(original)
    next(f for f in view["features"] if f["name"] == FEATURE)["expr"] = expr
    path.write_text(yaml.safe_dump(view, sort_keys=False))
    return original


@pytest.mark.parametrize("expr,word", [f[1:] for f in FORMS], ids=[f[0] for f in FORMS])
def test_hostile_expr_is_one_compile_error(workdir, capsys, expr, word):
    original = set_expr(workdir, expr)
    try:
        code, err = run_cli(workdir, capsys, "pipeline", "compile", "dssm_ranking", "--no-write")
    finally:
        (workdir / VIEW).write_text(original)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"daeda: error: {VIEW}: feature '{FEATURE}': expr "), err
    assert word.lower() in lines[0].lower(), err
    assert not Path("/tmp/daeda_pwned.csv").exists() and not Path("/tmp/daeda_pwned.db").exists()


@pytest.mark.parametrize(
    "expr",
    [
        "ln(1 + follower_count)",
        "if(follower_count > 10, 1.0, 0.0)",
        "list_sum(list_transform([follower_count, following_count], lambda x: x * 2))",
        "length(split_part(Country, ';', 1))::double",
        "coalesce(nullif(bio_length, 0), 1)",
    ],
)
def test_ordinary_expressions_still_compile(workdir, capsys, expr):
    original = set_expr(workdir, expr)
    try:
        code, err = run_cli(workdir, capsys, "pipeline", "compile", "dssm_ranking", "--no-write")
    finally:
        (workdir / VIEW).write_text(original)
    assert code == 0, err


def test_hand_edited_plan_with_hostile_expr_is_refused(workdir, capsys):
    """config/pipelines/<svc>.yaml is what train runs: its expressions get the same check."""
    code, _ = run_cli(workdir, capsys, "pipeline", "compile", "dssm_ranking")
    assert code == 0
    plan = yaml.safe_load((workdir / "config/pipelines/dssm_ranking.generated.yaml").read_text())
    derive = next(op for op in plan["operators"] if op["name"] == "derive.user_profile")
    feat = next(f for f in derive["params"]["features"] if f.get("expr"))
    feat["expr"] = "(select string_agg(column0, ',') from read_csv('/etc/passwd', header=false))"
    hand = workdir / "config/pipelines/dssm_ranking.yaml"
    hand.write_text(yaml.safe_dump(plan, sort_keys=False))
    try:
        code, err = run_cli(workdir, capsys, "pipeline", "train", "dssm_ranking", "--skeleton-only")
    finally:
        hand.unlink()
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("daeda: error: config/pipelines/dssm_ranking.yaml: "), err
    assert "derive.user_profile" in lines[0] and feat["output"] in lines[0] and "sub-quer" in lines[0], err
    assert not (workdir / "data/training_output").exists()


@pytest.mark.parametrize(
    "expr",
    [
        "(select count(*) from read_csv('/etc/passwd', header=false))::double",
        "(select length(content) from read_text('/etc/hostname'))::double",
        "(select count(*) from read_parquet('data/demo/sources/feed/*/*.parquet'))::double",
    ],
)
def test_skeleton_duckdb_cannot_reach_other_files(workdir, tmp_path, expr):
    """The second wall: a plan whose expression was never checked still cannot read a file
    the day job was not given (not even another file of the project's own sources)."""
    old = os.getcwd()
    os.chdir(workdir)
    try:
        paths = DefinitionPaths(
            Path("feature_views"),
            Path("feature_services"),
            Path("config/training/runtime.yaml"),
            Path("config/training/aggregations.yaml"),
        )
        data = yaml.safe_load(compile_service("dssm_ranking", paths, output_dir=None).plan.to_yaml())
        derive = next(op for op in data["operators"] if op["name"] == "derive.user_profile")
        next(f for f in derive["params"]["features"] if f.get("expr"))["expr"] = expr
        plan = validate_plan(data, "hand-made")
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            run_skeleton_stage(plan, dt.date(2026, 4, 2), tmp_path / "out", chunk_rows=1000)
    finally:
        os.chdir(old)
    assert not (tmp_path / "out" / "dt=2026-04-02").exists()
