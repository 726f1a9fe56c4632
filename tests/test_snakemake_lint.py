"""`snakemake --lint` finds nothing to say about the workflow (Snakefile, rules/*.smk), and
what the lint-clean rules rely on holds: the jobs take their output root from the record
they publish, and the rules' conda env (envs/daedalus.yaml) lists the package's dependencies.
"""

from __future__ import annotations

import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from projects import REPO, SNAKEMAKE, run

from daedalus.job import root_of_record
from daedalus.layout import Layout


@pytest.mark.parametrize("stage", ["all", "skeleton", "enrich"])
def test_snakemake_lint_is_clean(project, stage):
    # The stage decides which rules the Snakefile defines (`--enrich-only` leaves out the skeleton's).
    res = run(SNAKEMAKE + ["--lint", "--config", f"stage={stage}"], project, check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Lints for" not in out, out[-6000:]
    assert "Congratulations, your workflow is in a good condition!" in out, out[-3000:]


@pytest.mark.parametrize("root", ["data/training_output", "/abs/out", ".", "out/", "a/.daedalus/published/b"])
def test_the_job_finds_the_root_from_its_record(root):
    layout = Layout.of(root)
    for stage in ("skeleton", "enrich"):
        assert root_of_record(stage, layout.record(stage, "2026-04-01")) == layout.root
    assert root_of_record("qid_map", layout.qid_map_record) == layout.root
    assert root_of_record("skeleton", layout.qid_map_record) is None
    assert root_of_record("qid_map", layout.record("enrich", "2026-04-01")) is None


# Run outside the rules' env (Snakemake and its executor) or only by the CLI.
NOT_IN_JOB_ENV = {"snakemake", "snakemake-executor-plugin-slurm", "typer", "rich", "pillow"}


def test_conda_env_lists_the_job_dependencies_of_pyproject():
    env = yaml.safe_load((REPO / "envs" / "daedalus.yaml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "pip" in conda and any(d.startswith("python>=3.11") for d in conda)
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    # By name and extras: the versions are pyproject's (pip resolves the newest, within them).
    wanted = {(canonicalize_name(r.name), frozenset(r.extras)) for r in map(Requirement, declared)}
    listed = {(canonicalize_name(r.name), frozenset(r.extras)) for r in map(Requirement, pip)}
    assert all(not Requirement(p).specifier for p in pip), pip
    assert listed == {w for w in wanted if w[0] not in NOT_IN_JOB_ENV}
