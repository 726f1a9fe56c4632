"""The compiled service kept between processes (daedalus.plancache): reused while every input
compile read is unchanged, recompiled as soon as one changes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import lance
import pyarrow.parquet as pq
import pytest
import yaml

from daedalus import plancache
from daedalus.compile import compile_service
from daedalus.errors import DaedalusError
from daedalus.loading import DefinitionPaths

SERVICE = "dssm_ranking"


def _compile(**kw):  # type: ignore[no-untyped-def]
    return compile_service(SERVICE, DefinitionPaths(), cached=True, **kw)


def _cached():  # type: ignore[no-untyped-def]
    return plancache.load(SERVICE, DefinitionPaths(), output_dir=Path("config/pipelines"), target_date=None)


@pytest.fixture
def here(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


def test_a_second_compile_is_the_first_one(here: Path) -> None:
    first = _compile()
    hit = _cached()
    assert hit is not None
    assert hit.digest == first.digest and hit.plan == first.plan and hit.days == first.days
    assert hit.sources == first.sources and hit.warnings == first.warnings and hit.waiting == first.waiting
    # a project copied elsewhere does not take this directory's entry
    other = here.parent / "copy"
    shutil.copytree(here, other, symlinks=True)
    os.chdir(other)
    assert _cached() is None


def _edit_view(p: Path) -> None:
    f = p / "feature_views/user_profile.yaml"
    doc = yaml.safe_load(f.read_text())
    doc["ttl"] = "20d" if doc.get("ttl") != "20d" else "21d"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))


def _new_partition(p: Path) -> None:
    src = sorted((p / "data/demo/sources/likes").glob("dt=*"))[-1]
    dst = src.with_name("dt=2026-05-30")
    shutil.copytree(src, dst)


def _rewrite_partition(p: Path) -> None:
    f = next(iter(sorted((p / "data/demo/sources/feed").rglob("*.parquet"))))
    t = pq.read_table(f)
    tmp = f.with_suffix(".tmp")
    pq.write_table(t.slice(0, max(1, t.num_rows // 2)), tmp)
    os.replace(tmp, f)


def _remove_partition(p: Path) -> None:
    shutil.rmtree(sorted((p / "data/demo/sources/artwork_stats").glob("dt=*"))[0])


def _store_commit(p: Path) -> None:
    uri = p / "data/demo/embeddings/artworks.lance"
    ds = lance.dataset(str(uri))
    lance.write_dataset(ds.to_table(limit=1), str(uri), mode="append")


def _udf_edit(p: Path) -> None:
    f = p / "feature_views/udfs.py"
    f.write_text(f.read_text() + "\n# edited\n")


def _hand_plan(p: Path) -> None:
    gen = p / "config/pipelines/dssm_ranking.generated.yaml"
    shutil.copy(gen, p / "config/pipelines/dssm_ranking.yaml")


def _runtime_edit(p: Path) -> None:
    f = p / "config/training/runtime.yaml"
    f.write_text(f.read_text().replace("feed_end: 2026-04-03", "feed_end: 2026-04-02"))


CHANGES: dict[str, Callable[[Path], None]] = {
    "view_definition": _edit_view,
    "new_source_partition": _new_partition,
    "rewritten_source_file": _rewrite_partition,
    "removed_source_partition": _remove_partition,
    "store_commit": _store_commit,
    "udf_module": _udf_edit,
    "hand_edited_plan": _hand_plan,
    "runtime_config": _runtime_edit,
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_any_changed_input_is_compiled_again(here: Path, change: str) -> None:
    _compile()
    assert _cached() is not None
    CHANGES[change](here)
    assert _cached() is None, f"a stale compile was reused after: {change}"
    fresh = compile_service(SERVICE, DefinitionPaths(), output_dir=None)
    again = _compile()
    assert again.digest == fresh.digest and again.plan == fresh.plan and again.days == fresh.days
    assert again.sources == fresh.sources
    assert _cached() is not None


def test_a_failed_compile_is_never_kept(here: Path) -> None:
    _compile()
    f = here / "feature_views/user_profile.yaml"
    f.write_text(f.read_text() + "\n  - {name: broken\n")
    for _ in range(2):
        with pytest.raises(DaedalusError):
            _compile()
    assert _cached() is None


def test_an_input_changed_while_compiling_is_not_kept(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A source file written after the compile started: its result may be of the old file.
    real = plancache.save

    def late_write(*args, **kw):  # type: ignore[no-untyped-def]
        _rewrite_partition(here)
        real(*args, **kw)

    monkeypatch.setattr(plancache, "save", late_write)
    _compile()
    assert _cached() is None


def test_an_unreadable_entry_is_compiled_again(here: Path) -> None:
    first = _compile()
    for e in (here / plancache.CACHE).iterdir():
        e.write_bytes(b"\x80\x05not a pickle")
    assert _cached() is None
    assert _compile().digest == first.digest
