"""The wheel carries the workflow: built from the sdist, installed (not editable) into a new
venv, its `daeda` runs init, demo and train in a folder that knows nothing of the repository.

The new venv gets Daedalus from the wheel only. Its dependencies are not downloaded again
(ray, duckdb, pyarrow, snakemake... are hundreds of MB): a .pth file puts this test
environment's site-packages after the venv's own. A path line in a .pth only extends
sys.path, it does not run the .pth files of that folder, so the editable install's import
hook (`_editable_impl_daedalus.pth`, which maps `daedalus` to the repository) stays
inactive, and `import daedalus` finds the wheel's copy first. The test checks that it does,
that the workflow directory and the shipped profiles are the wheel's, and that every
requirement the wheel declares is met by what the venv sees.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = ["Snakefile", "rules", "scripts", "profiles", "envs", "feature_views", "feature_services", "config/training"]


def _workflow_files() -> list[str]:
    out = []
    for entry in WORKFLOW:
        p = REPO / entry
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        out += [f.relative_to(REPO).as_posix() for f in files]
    return out


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    return res


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    # sdist first, then the wheel built from the unpacked sdist: the sdist must hold the
    # workflow too. No isolation: the build backend (hatchling) is in the test extras.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)], out, env)
    (wheel,) = out.glob("daedalus-*.whl")
    (sdist,) = out.glob("daedalus-*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> Path:
    wheel, _ = dists
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], root, dict(os.environ))
    py = root / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # This environment's packages, after the venv's own (see the module docstring).
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_test_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps", str(wheel)],
        root,
        dict(os.environ),
    )
    return root


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_wheel_and_sdist_carry_the_workflow(dists):
    wheel, sdist = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _workflow_files()
    assert {"rules/common.smk", "rules/skeleton.smk", "scripts/job.py", "profiles/slurm/config.yaml"} <= set(expected)
    for rel in expected:
        assert f"daedalus/_workflow/{rel}" in names, rel
        packaged = zipfile.ZipFile(wheel).read(f"daedalus/_workflow/{rel}")
        assert packaged == (REPO / rel).read_bytes(), rel
    assert not [n for n in names if "__pycache__" in n or n.endswith(".generated.yaml")]
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert set(expected) <= members
    assert "pyproject.toml" in members and not [m for m in members if m.startswith((".ci", "data/", ".hypothesis"))]


def test_installed_wheel_inits_and_trains_anywhere(venv, tmp_path):
    env, py, daeda = _env(venv), str(venv / "bin" / "python"), str(venv / "bin" / "daeda")
    where = tmp_path / "elsewhere"
    where.mkdir()
    probe = (
        "import daedalus, json, sys\n"
        "from importlib import metadata\n"
        "from packaging.requirements import Requirement\n"
        "from daedalus.runner import resolve_profile, workflow_dir\n"
        "unmet = []\n"
        "for text in metadata.requires('daedalus') or []:\n"
        "    r = Requirement(text)\n"
        "    if r.marker and not r.marker.evaluate({'extra': ''}):\n"
        "        continue\n"
        "    try:\n"
        "        v = metadata.version(r.name)\n"
        "    except metadata.PackageNotFoundError:\n"
        "        v = None\n"
        "    if v is None or not r.specifier.contains(v, prereleases=True):\n"
        "        unmet.append(f'{text} (found {v})')\n"
        "slurm = resolve_profile('slurm')\n"
        "print(json.dumps({'module': daedalus.__file__, 'workflow': str(workflow_dir()), 'slurm': str(slurm.path),\n"
        "    'executor': slurm.executor, 'unmet': unmet, 'path': sys.path}))\n"
    )
    import json

    info = json.loads(_run([py, "-c", probe], where, env).stdout)
    installed = Path(info["module"]).resolve()
    assert installed.is_relative_to(venv.resolve()), info["module"]
    assert not installed.is_relative_to(REPO), info["module"]
    assert Path(info["workflow"]) == installed.parent / "_workflow"
    assert Path(info["slurm"]) == installed.parent / "_workflow" / "profiles" / "slurm"
    assert info["executor"] == "slurm"
    assert info["unmet"] == []
    # Nothing of the repository but this environment's installed packages is on sys.path.
    dev = Path(sys.prefix).resolve()
    assert not [
        p
        for p in info["path"]
        if p and Path(p).resolve().is_relative_to(REPO) and not Path(p).resolve().is_relative_to(dev)
    ]

    res = _run([daeda, "init", "proj"], where, env)
    project = where / "proj"
    assert "daeda demo" in res.stderr
    assert (project / ".gitignore").is_file() and (project / "feature_services/dssm_ranking.yaml").is_file()
    # Data two days past the run: the example's label window (1d) waits for the likes of D + 2.
    demo = ["demo", "--start", "2026-04-01", "--end", "2026-04-04", "--users", "40", "--artworks", "60"]
    _run([daeda, *demo, "--events-per-day", "150"], project, env)
    # The user's one edit: the run's days (the example covers the default demo's two months).
    rt = project / "config/training/runtime.yaml"
    text = re.sub(r"(?m)^feed_start:.*$", "feed_start: 2026-04-01", rt.read_text())
    rt.write_text(re.sub(r"(?m)^feed_end:.*$", "feed_end: 2026-04-02", text))
    # --verbose shows the snakemake command (COLUMNS: on one line).
    res = _run([daeda, "pipeline", "train", "dssm_ranking", "--verbose"], project, {**env, "COLUMNS": "10000"})
    assert f"--snakefile {installed.parent / '_workflow' / 'Snakefile'}" in res.stdout + res.stderr
    for day in ("2026-04-01", "2026-04-02"):
        assert list((project / f"data/training_output/dt={day}").glob("part-*.parquet")), day
        assert list((project / f"data/training_output_enriched/dt={day}").glob("*.parquet")), day
    assert (project / "data/training_output/qid_map.parquet").is_file()
    status = subprocess.run(
        [daeda, "pipeline", "status", "dssm_ranking"], cwd=project, env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr


def test_editable_install_runs_the_repository(tmp_path):
    """The editable install carries no copy of the workflow (hatch_build.py adds it to standard
    wheels only): such a copy in site-packages/daedalus/ would shadow the editable package."""
    probe = "import daedalus; from daedalus.runner import workflow_dir; print(daedalus.__file__); print(workflow_dir())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    module, workflow = _run([sys.executable, "-c", probe], tmp_path, env).stdout.split()
    assert Path(module) == REPO / "daedalus" / "__init__.py"
    assert Path(workflow) == REPO
    assert not (Path(sysconfig.get_paths()["purelib"]) / "daedalus").exists()
