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
