"""A rerun that fails never loses a good day (daedalus.layout, daedalus.atomic.publish_dir).

Snakemake deletes a job's outputs before it runs the job. Those outputs are the days'
published records, not the days: a day job swaps its directory in place, so a rerun that
fails (a definition that fails on the data, a UDF that raises, a source partition that
turned bad, a kill, a broken embedding store) leaves the previous complete day readable and
byte-identical, `status` says the day is stale (interrupted run), and the next good run
replaces it with exactly what a fresh run gives.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from projects import DAEDA, data_files, run, train

pytestmark = pytest.mark.e2e

ROOT = "data/training_output"
EROOT = ROOT + "_enriched"
DAYS = ("2026-04-01", "2026-04-02", "2026-04-03")
VIEW = "feature_views/user_profile.yaml"


def days_of(project: Path, root: str) -> dict[str, str]:
    return {k: v for k, v in data_files(project / root).items() if k.startswith("dt=")}


def failed_train(project: Path, *args: str) -> subprocess.CompletedProcess:
    res = train(project, *args, check=False)
    assert res.returncode != 0, res.stderr[-2000:]
    assert "snakemake failed" in res.stderr, res.stderr[-2000:]
    return res


def status_of(project: Path) -> str:
    return run(DAEDA + ["pipeline", "status", "dssm_ranking"], project, check=False).stdout


class Watcher:
    """Checks, the whole time a run goes on, that every day directory is there."""

    def __init__(self, project: Path, roots: tuple[str, ...]) -> None:
        self.dirs = [project / r / f"dt={d}" for r in roots for d in DAYS]
        self.gaps: list[str] = []
        self.looks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for d in self.dirs:
                if not d.is_dir():
                    self.gaps.append(str(d))
            self.looks += 1

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def corrupt_pages(path: Path) -> None:
    """Garbage in the column data; the footer stays intact, so compile (footers only) accepts it."""
    data = bytearray(path.read_bytes())
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    for i in range(4, footer_start):  # every page, between the magic bytes and the footer
        data[i] = 0xAB
    path.write_bytes(bytes(data))


def test_failed_skeleton_reruns_keep_the_old_days(trained: Path, tmp_path: Path) -> None:
    old = days_of(trained, ROOT)
    view = trained / VIEW

    # 1. A definition that compiles (it binds on the source's types) but fails on the data.
    edit(view, "expr: ln(1 + follower_count)", "expr: CAST(Country AS INTEGER)")
    with Watcher(trained, (ROOT,)) as w:
        failed_train(trained, "--skeleton-only")
    assert w.looks > 0 and not w.gaps, w.gaps[:5]
    assert days_of(trained, ROOT) == old
    # Snakemake stops at the first failed job: that day is interrupted, the others not yet run.
    st = status_of(trained)
    assert "stale (interrupted run)" in st and "missing" not in st.split("skeleton:")[0], st

    # 2. A UDF that raises inside the day job.
    edit(view, "expr: CAST(Country AS INTEGER)", "expr: ln(1 + follower_count)")
    udfs = trained / "feature_views/udfs.py"
    edit(
        udfs,
        '    """Region code of a 2-letter country (4 = elsewhere, null stays null)."""\n',
        '    """Region code of a 2-letter country (4 = elsewhere, null stays null)."""\n'
        '    raise RuntimeError("broken udf")\n',
    )
    failed_train(trained, "--skeleton-only")
    assert days_of(trained, ROOT) == old
    edit(udfs, '    raise RuntimeError("broken udf")\n', "")

    # 3. A partition whose pages turned bad (its footer is fine): read by 04-02 and 04-03. (Not
    # one the leakage lint reads before the run: that one is an error before Snakemake starts.)
    part = next((trained / "data/demo/sources/artwork_stats/dt=2026-04-02").glob("*.parquet"))
    saved = part.read_bytes()
    corrupt_pages(part)
    assert pq.read_schema(part) is not None  # the footer still reads
    failed_train(trained, "--skeleton-only")
    assert days_of(trained, ROOT) == old  # 04-01 was redone with the original definition: same bytes
    part.write_bytes(saved)

    # 4. The next good run, of a new definition, replaces every day with a fresh run's bytes.
    edit(view, "expr: ln(1 + follower_count)", "expr: ln(2 + follower_count)")
    train(trained, "--skeleton-only")
    new = days_of(trained, ROOT)
    assert set(new) == set(old) and all(new[k] != old[k] for k in old if k.endswith("part-0-0.parquet"))
    fresh = tmp_path / "fresh"
    shutil.copytree(trained, fresh)
    train(fresh, "--skeleton-only", "--output-root", "fresh_root")
    assert days_of(fresh, "fresh_root") == new
    assert "stale" not in status_of(trained).split("enrich")[0]


@pytest.mark.kill
def test_a_killed_rerun_leaves_the_old_or_the_new_day(trained: Path) -> None:
    old = days_of(trained, ROOT)
    edit(trained / VIEW, "expr: ln(1 + follower_count)", "expr: ln(3 + follower_count)")
    landed = 0
    for _ in range(6):
        proc = subprocess.Popen(
            DAEDA + ["pipeline", "train", "dssm_ranking", "--skeleton-only"],
            cwd=trained,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        # A day job is writing when its hidden temp directory exists: kill the run then.
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.name.startswith(".dt=") and ".tmp-" in p.name for p in (trained / ROOT).iterdir()):
                os.killpg(proc.pid, signal.SIGKILL)
                landed += 1
                break
            time.sleep(0.005)
        proc.wait()
        for d in DAYS:
            assert (trained / ROOT / f"dt={d}").is_dir(), d
        if landed:
            break
        # The run finished before a kill could land: start again from the old definition's days.
        shutil.rmtree(trained / ROOT / ".daedalus" / "published")
    assert landed, "no kill landed while a day job was writing"
    train(trained, "--skeleton-only")
    new = days_of(trained, ROOT)
    after_kill_days = {k.split("/")[0] for k in new}
    assert after_kill_days == {f"dt={d}" for d in DAYS}
    assert all(new[k] != old[k] for k in old if k.endswith("part-0-0.parquet"))


def test_a_failed_enrich_rerun_keeps_the_old_enriched_days(trained: Path) -> None:
    import lance

    old_skeleton, old = days_of(trained, ROOT), days_of(trained, EROOT)
    store = trained / "data/demo/embeddings/artworks.lance"
    saved = trained.parent / "store-backup"
    shutil.copytree(store, saved)
    # A new version of the store (so every enrich day is due), whose data files then break.
    before = {p.name for p in (store / "data").iterdir()}
    lance.write_dataset(lance.dataset(str(store)).to_table(), str(store), mode="overwrite")
    for p in (store / "data").iterdir():
        if p.name not in before:
            p.write_bytes(b"broken" * 100)
    with Watcher(trained, (EROOT,)) as w:
        failed_train(trained, "--enrich-only")
    assert not w.gaps, w.gaps[:5]
    assert days_of(trained, EROOT) == old and days_of(trained, ROOT) == old_skeleton
    st = status_of(trained)
    assert "stale (interrupted run)" in st and "missing" not in st.split("skeleton:")[0], st
    shutil.rmtree(store)
    shutil.copytree(saved, store)
    train(trained, "--enrich-only")
    assert days_of(trained, EROOT) == old  # the store as it was: the same bytes again
    assert "interrupted" not in status_of(trained)
