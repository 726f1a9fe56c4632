import shutil
from pathlib import Path

import pytest
from projects import make_project

# Files with the most work first: `make test` hands whole files to its two workers in
# collection order (--dist loadfile), so a long file collected last leaves one worker idle
# while the other finishes it. Approximate seconds per file on 2 cores (from
# `make test PYTEST_ARGS=--durations=0`); they only set the order, nothing is timed.
FILE_SECONDS = {
    "test_kill.py": 130,
    "test_invalid_inputs.py": 110,
    "test_uptodate.py": 100,
    "test_failed_rerun.py": 95,
    "test_scale_out.py": 95,
    "test_workflow.py": 80,
    "test_worker.py": 60,
    "test_reference.py": 60,
    "test_enrich.py": 55,
    "test_quickstart.py": 40,
    "test_definition_changes.py": 40,
    "test_type_matrix.py": 40,
    "test_engine_reference.py": 35,
    "test_status.py": 35,
    "test_report.py": 30,
    "test_partitions.py": 30,
}


def pytest_collection_modifyitems(config, items):
    # A stable sort keeps each file's own test order.
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 10))


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """A small project (3 days, small demo data), made once; tests copy it."""
    return make_project(tmp_path_factory.mktemp("template") / "project")


@pytest.fixture
def project(demo_template, tmp_path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(demo_template, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def trained_template(demo_template, tmp_path_factory) -> Path:
    """The demo template after one full `daeda pipeline train` (both stages); tests copy it.

    The train command's stderr is kept in `train.stderr` beside the project.
    """
    from projects import train

    dest = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(demo_template, dest, symlinks=True)
    res = train(dest)
    (dest.parent / "train.stderr").write_text(res.stderr)
    return dest


@pytest.fixture
def trained(trained_template, tmp_path) -> Path:
    """A copy of the trained template (mtimes and Snakemake's metadata kept)."""
    dest = tmp_path / "project"
    shutil.copytree(trained_template, dest, symlinks=True)
    return dest
