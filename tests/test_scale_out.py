"""Scale-out: the same workflow through a real Slurm, attached to a Ray cluster, and with N
day workers, each compared byte for byte with one local run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from projects import DAEDA, data_files, run, train
from slurm_cluster import LocalSlurm, install

pytestmark = [pytest.mark.e2e, pytest.mark.scale_out]

SKEL, ENR = "data/training_output", "data/training_output_enriched"
DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]


def outputs(project: Path) -> dict[str, dict[str, str]]:
    return {sub: data_files(project / sub) for sub in (SKEL, ENR)}


@pytest.fixture(scope="module")
def local_run(trained_template) -> Path:
    """Both stages, one day at a time (the template's day_workers is 1), on this machine:
    what every scale-out run must equal."""
    out = outputs(trained_template)
    assert len(out[SKEL]) == len(DAYS) + 1 and len(out[ENR]) == len(DAYS)  # parts + qid_map, shards
    return trained_template


def test_day_workers_give_the_same_bytes(local_run, project):
    res = train(project, "--day-workers", "3")
    assert "3 day worker(s)" in " ".join(res.stderr.split())
    assert outputs(project) == outputs(local_run)  # qid_map.parquet included


def _set_ray_address(project: Path, address: str) -> None:
    rt = project / "config/training/runtime.yaml"
    text, n = re.subn(r"(?m)^(\s+address:)\s*null", rf"\1 {address}", rt.read_text())
    assert n == 1
    # Every day big: small days are enriched without Ray (tests/test_worker.py), these through it.
    rt.write_text(text + "small_day_rows: 0\n")


def test_enrich_attaches_to_a_ray_cluster_from_runtime_config(local_run, project):
    from daedalus.enrich import cluster

    shutil.copytree(local_run / SKEL, project / SKEL)  # reuse the skeleton (copy keeps mtimes)
    address = cluster.start_local_head(2, None)  # `ray start --head`, with Ray's token auth
    try:
        _set_ray_address(project, address)
        res = train(project, "--enrich-only")
        assert "ray head for this run" not in res.stderr  # no head of its own: it attached
        for day in DAYS:
            log = (project / SKEL / ".daedalus/logs/enrich" / f"dt={day}.log").read_text()
            assert f"ray_address={address}" in log and '"ray": "attached"' in log, log[-2000:]
    finally:
        assert cluster.stop_head(address) is True
    assert outputs(project)[ENR] == outputs(local_run)[ENR]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = LocalSlurm.unavailable() or install()
    if why:
        pytest.skip(why)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


_SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


@pytest.mark.slurm
def test_slurm_profile_runs_every_day_job_through_slurm(slurm, local_run, project):
    # The polling flags only make a tiny test quick; without accounting `sacct` cannot answer.
    fast = [
        "--slurm-status-command=squeue",
        "--slurm-init-seconds-before-status-checks=1",
        "--seconds-between-status-checks=1",
    ]
    cmd = DAEDA + ["pipeline", "train", "dssm_ranking", "--profile", "slurm", "--day-workers", "2"]
    cmd += [f"--snakemake-arg={a}" for a in fast]
    # `timeout -s KILL`: a snakemake waiting on a lost Slurm job ignores SIGTERM
    res = run(["timeout", "-s", "KILL", "900", *cmd, "--verbose"], project, timeout=960)
    text = res.stdout + res.stderr
    submitted = {}
    for jobid, log in _SUBMITTED.findall(text):
        rule, day = Path(log).parts[-3], Path(log).parts[-2]
        submitted[(rule.removeprefix("rule_"), day)] = int(jobid)
    expected = {(rule, day) for rule in ("skeleton_day", "enrich_day") for day in DAYS}
    # The per-source-day state jobs are cluster jobs too (rules/state.smk).
    states = {(rule, day) for rule, day in submitted if rule.startswith("state_")}
    assert set(submitted) - states == expected, text[-3000:]
    assert {rule for rule, _ in states} == {"state_partials", "state_snapshot"}
    assert len(set(submitted.values())) == len(submitted)
    # slurmctld allocated and completed exactly these jobs, each with exit status 0
    assert set(submitted.values()) <= slurm.job_ids()
    assert set(submitted.values()) <= slurm.completed_job_ids(exit_status=0)
    assert outputs(project) == outputs(local_run)
    # A second run submits nothing.
    res = run(["timeout", "-s", "KILL", "300", *cmd], project, timeout=360)
    assert "nothing to do" in res.stderr
    assert not _SUBMITTED.search(res.stdout + res.stderr)


def test_profile_errors_are_one_line(project):
    res = run(DAEDA + ["pipeline", "train", "dssm_ranking", "--profile", "no/such/profile"], project, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "daeda: error: --profile: no/such/profile: not a Snakemake profile (no no/such/profile/config.yaml)"
    ]
    assert not (project / SKEL).exists()
