"""A hand-edited plan is bound at compile: every defect a day job would meet is a compile error.

Each case edits the generated plan the way a user would (config/pipelines/dssm_ranking.yaml)
and compiles in-process; the error must name the plan file and, where one is at fault, the
operator. A renaming done consistently is not a defect: it runs and gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from daedalus.compile import compile_service
from daedalus.errors import DaedalusError
from daedalus.loading import DefinitionPaths
from daedalus.skeleton import run_skeleton_stage

HAND = Path("config/pipelines/dssm_ranking.yaml")


def op(plan: dict, name: str) -> dict:
    return next(o for o in plan["operators"] if o["name"] == name)


def rename(plan: dict, old: str, new: str) -> None:
    for o in plan["operators"]:
        if o["name"] == old:
            o["name"] = new
        o["inputs"] = [new if i == old else i for i in o["inputs"]]


def move_before_write(plan: dict, name: str, **changes: object) -> None:
    """Move an operator to just before write_parts (after every operator it could read)."""
    ops = plan["operators"]
    moved = op(plan, name)
    ops.remove(moved)
    moved.update(changes)
    ops.insert(next(i for i, o in enumerate(ops) if o["kind"] == "write_parts"), moved)


def second_store(plan: dict) -> None:
    extra = dict(op(plan, "embed.artwork_emb"), name="embed.other")
    extra["params"] = dict(extra["params"], store_uri="data/demo/embeddings/other.lance")
    plan["operators"].append(extra)


CASES: list[tuple[str, Callable[[dict], None], tuple[str, ...]]] = [
    (
        "renamed operator, inputs not updated",
        lambda p: op(p, "pit_join.user_profile").update(name="pj.user_profile"),
        ("derive.user_profile", "pit_join.user_profile", "did you mean 'pj.user_profile'"),
    ),
    (
        "derive dtype int128",
        lambda p: op(p, "derive.user_profile")["params"]["features"][0].update(dtype="int128"),
        ("derive.user_profile", "'int128'", "int64"),
    ),
    (
        "output type int7",
        lambda p: op(p, "derive.user_profile")["outputs"][0].update(type="int7"),
        ("derive.user_profile", "'int7'"),
    ),
    (
        "derive reads another view's join",
        lambda p: move_before_write(p, "derive.user_profile", inputs=["pit_join.artwork_stats"]),
        ("derive.user_profile", "follower_count"),
    ),
    (
        "derive reads a window aggregation",
        lambda p: move_before_write(p, "derive.user_profile", inputs=["window_agg.user_engagement"]),
        ("derive.user_profile", "window_agg", "pit_join"),
    ),
    ("a second embed over another store", second_store, ("2 embedding stores", "other.lance")),
    (
        "embed ids not in the skeleton output",
        lambda p: op(p, "embed.history_emb")["params"].update(ids="no_such_column"),
        ("embed.history_emb", "no_such_column"),
    ),
    (
        "write_parts output that no input makes",
        lambda p: op(p, "write_parts")["outputs"].append({"name": "ghost", "type": "int64"}),
        ("write_parts", "ghost"),
    ),
    (
        "output type the values cannot take",
        lambda p: next(
            c for c in op(p, "write_parts")["outputs"] if c["name"] == "user_profile__follower_count"
        ).update(type="list<int64>"),
        ("write_parts", "list<int64>"),
    ),
    (
        "join no longer carries a column a feature reads",
        lambda p: op(p, "pit_join.user_profile")["params"]["columns"].remove("Country"),
        ("Country",),
    ),
    ("unknown operator kind", lambda p: op(p, "qid").update(kind="quid"), ("qid", "'quid'", "did you mean 'qid'")),
    (
        "params.source disagrees with the source input",
        lambda p: op(p, "pit_join.user_profile")["params"].update(source="view.artwork_stats"),
        ("pit_join.user_profile", "view.artwork_stats"),
    ),
    (
        "an aggregation function the engine lacks is checked per engine",
        lambda p: op(p, "window_agg.user_likes")["params"]["features"][0].update(function="median"),
        ("window_agg.user_likes", "'median'", "did you mean 'mean'"),
    ),
]


@pytest.fixture
def in_project(project):
    old = os.getcwd()
    os.chdir(project)
    compile_service("dssm_ranking", DefinitionPaths())
    yield project
    os.chdir(old)


def hand_edit(fn: Callable[[dict], None]) -> None:
    plan = yaml.safe_load(Path("config/pipelines/dssm_ranking.generated.yaml").read_text())
    fn(plan)
    HAND.write_text(yaml.safe_dump(plan, sort_keys=False))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_defect_in_a_hand_edited_plan_is_a_compile_error(in_project, case):
    _, fn, contains = case
    hand_edit(fn)
    with pytest.raises(DaedalusError) as e:
        compile_service("dssm_ranking", DefinitionPaths(), output_dir=None)
    line = f"{e.value.where}: {e.value.problem}"
    assert e.value.where.endswith("pipelines/dssm_ranking.yaml"), line
    for text in contains:
        assert text in line, (text, line)


def test_consistent_renames_run_and_give_the_same_bytes(in_project):
    generated = compile_service("dssm_ranking", DefinitionPaths())

    def edit(p: dict) -> None:
        rename(p, "pit_join.user_profile", "profile_join")
        rename(p, "spine", "feed")
        rename(p, "window_agg.user_engagement", "engagement")

    hand_edit(edit)
    hand = compile_service("dssm_ranking", DefinitionPaths())
    assert hand.plan_path == HAND and hand.plan.op("profile_join").kind == "pit_join"
    day = generated.days[0]
    run_skeleton_stage(generated.plan, day, in_project / "a", chunk_rows=1000, run_days=[day])
    run_skeleton_stage(hand.plan, day, in_project / "b", chunk_rows=1000, run_days=[day])
    name = f"dt={day.isoformat()}/part-0-0.parquet"
    assert (in_project / "a" / name).read_bytes() == (in_project / "b" / name).read_bytes()
