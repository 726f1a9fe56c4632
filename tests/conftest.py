import shutil
from pathlib import Path

import pytest

from projects import make_project


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
    """The demo template after one clean `daeda pipeline train` (both stages), made once;
    tests copy it (copies keep mtimes and .snakemake, so they are up to date)."""
    from projects import train

    dest = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(demo_template, dest, symlinks=True)
    train(dest)
    return dest
