"""`daeda init [DIR]`: the example project, over `daeda demo` data, and never overwriting."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from projects import DAEDA, REPO, run

FILES = [
    ".gitignore",
    "config/training/aggregations.yaml",
    "config/training/runtime.yaml",
    "feature_services/dssm_ranking.yaml",
    "feature_views/__init__.py",
    "feature_views/artwork_stats.yaml",
    "feature_views/udfs.py",
    "feature_views/user_profile.yaml",
]


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_init_writes_a_project_that_compiles_against_demo_data(tmp_path):
    res = run(DAEDA + ["init", "proj"], tmp_path)
    project = tmp_path / "proj"
    assert _files(project) == FILES
    assert "next: cd proj && daeda demo && daeda pipeline train dssm_ranking" in res.stderr
    for rel in FILES:
        if rel.endswith(".yaml"):
            text = (project / rel).read_text()
            assert text.startswith("# "), rel  # commented
            # The shipped definitions, with a header: the same values.
            assert yaml.safe_load(text) == yaml.safe_load((REPO / rel).read_text()), rel
        elif rel.endswith(".py"):
            assert (project / rel).read_bytes() == (REPO / rel).read_bytes(), rel
    demo = ["demo", "--start", "2026-04-01", "--end", "2026-04-02", "--users", "40", "--artworks", "60"]
    run(DAEDA + [*demo, "--events-per-day", "150"], project)
    res = run(DAEDA + ["pipeline", "compile", "dssm_ranking"], project)
    assert "service: dssm_ranking" in res.stdout
    assert (project / "config/pipelines/dssm_ranking.generated.yaml").is_file()
    # The .gitignore keeps everything demo and compile wrote out of version control.
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", "."], cwd=project, check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(line[3:] for line in status.stdout.splitlines()) == FILES


def test_init_into_the_current_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    res = run(DAEDA + ["init"], tmp_path)
    assert _files(tmp_path) == sorted([*FILES, "notes.txt"])
    assert "next: daeda demo && daeda pipeline train dssm_ranking" in res.stderr


@pytest.mark.parametrize("existing", ["feature_views/user_profile.yaml", ".gitignore", "config/training/runtime.yaml"])
def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path, existing):
    project = tmp_path / "proj"
    (project / existing).parent.mkdir(parents=True, exist_ok=True)
    (project / existing).write_text("mine\n")
    res = run(DAEDA + ["init", "proj"], tmp_path, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"daeda: error: proj/{existing}: already exists: daeda init never overwrites a file"
    ]
    assert _files(project) == [existing]
    assert (project / existing).read_text() == "mine\n"


def test_init_twice_refuses_the_second_time(tmp_path):
    run(DAEDA + ["init", "proj"], tmp_path)
    before = {rel: (tmp_path / "proj" / rel).read_bytes() for rel in FILES}
    res = run(DAEDA + ["init", "proj"], tmp_path, check=False)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "already exists" in res.stderr
    assert {rel: (tmp_path / "proj" / rel).read_bytes() for rel in FILES} == before


def test_init_where_a_folder_is_a_file(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "feature_views").write_text("not a folder")
    res = run(DAEDA + ["init", "proj"], tmp_path, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["daeda: error: proj/feature_views: exists and is not a directory"]
    (tmp_path / "file").write_text("x")
    res = run(DAEDA + ["init", "file"], tmp_path, check=False)
    assert res.stderr.strip().splitlines() == ["daeda: error: file: exists and is not a directory"]
