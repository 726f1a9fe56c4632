"""The Lance store's schema and version, kept between processes under a key of its manifests."""

from __future__ import annotations

from pathlib import Path

import lance
import pyarrow as pa
import pytest

from daedalus import checks


def _table(n: int, dim: int) -> pa.Table:
    vec = pa.FixedSizeListArray.from_arrays(pa.array([0.5] * (n * dim), pa.float32()), dim)
    return pa.table({"artwork_id": pa.array(range(n), pa.int64()), "embedding": vec})


def test_a_commit_to_the_store_is_seen_through_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = str(tmp_path / "store.lance")
    lance.write_dataset(_table(3, 4), uri)
    first = checks.store_schema(uri, Path("agg.yaml"))
    assert list((tmp_path / checks.STORE_SCHEMAS).iterdir()), "the schema was not kept"
    again = checks.store_schema(uri, Path("agg.yaml"))  # read back from the cache
    assert again == first and again[0].metadata == first[0].metadata

    lance.write_dataset(_table(2, 4), uri, mode="append")
    schema, version = checks.store_schema(uri, Path("agg.yaml"))
    assert version == first[1] + 1 and schema == first[0]

    lance.write_dataset(_table(2, 8), uri, mode="overwrite")
    schema, version = checks.store_schema(uri, Path("agg.yaml"))
    assert version == first[1] + 2
    assert schema.field("embedding").type == pa.list_(pa.float32(), 8)


def test_an_unreadable_cache_entry_opens_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = str(tmp_path / "store.lance")
    lance.write_dataset(_table(3, 4), uri)
    expected = checks.store_schema(uri, Path("agg.yaml"))
    for f in (tmp_path / checks.STORE_SCHEMAS).iterdir():
        f.write_bytes(b"not arrow")
    assert checks.store_schema(uri, Path("agg.yaml")) == expected
