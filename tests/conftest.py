import shutil
from pathlib import Path

import pytest
from projects import make_project

# Files with the most work first: `make test` hands whole files to its two workers in
# collection order (--dist loadfile), so a long file collected last leaves one worker idle
# while the other finishes it. Approximate seconds per file on 2 cores (from
# `make test PYTEST_ARGS=--durations=0`); they only set the order, nothing is timed.
FILE_SECONDS = {
    "test_workflow.py": 113,
    "test_scale_out.py": 92,
    "test_kill.py": 90,
    "test_type_matrix.py": 88,
    "test_uptodate.py": 83,
    "test_failed_rerun.py": 76,
    "test_invalid_inputs.py": 66,
    "test_enrich.py": 62,
    "test_reference.py": 54,
    "test_worker.py": 43,
    "test_dataset.py": 37,
    "test_engine_reference.py": 36,
    "test_partitions.py": 33,
    "test_definition_changes.py": 28,
    "test_quickstart.py": 18,
    "test_status.py": 15,
    "test_wheel.py": 15,
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
