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
