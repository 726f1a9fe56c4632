"""The enrich stage: embedding pooling, the Lance store, the Ray pipeline, atomic publication.

Every output cell is compared with a naive per-row reference (below) that follows the
documented rounding rule: found vectors summed in float32, in list order, starting from
zero, then divided once in float32 by the count. Compared with atol 1e-6 anyway.

Ray is started once for the module (`ensure_ray(None, 2)`); the test against a separate
head (`start_local_head`) runs last and stops only that head.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from daedalus.enrich import pooling, stage
from daedalus.enrich.pooling import EmbeddingSpec, enrich_table
from daedalus.enrich.store import EmbeddingStore, pin_store
from daedalus.errors import DaedalusError

DIM = 4
DAY = "dt=2026-04-02"
EMBEDDINGS = [("artwork_emb", "artwork_id"), ("history_emb", "recent")]


# -- synthetic inputs ---------------------------------------------------------------------


def store_rows(seed: int = 0):
    """Keys 0..59 minus every 5th id, plus a duplicate of id 3 (the later row wins)."""
    rng = np.random.default_rng(seed)
    keys = [k for k in range(60) if k % 5 != 4]
    vecs = (rng.standard_normal((len(keys), DIM)) * rng.choice([1e-3, 1.0, 1e3], size=(len(keys), 1))).astype(
        np.float32
    )
    dup = rng.standard_normal(DIM).astype(np.float32)
    keys.append(3)
    vecs = np.vstack([vecs, dup[None, :]])
    return np.array(keys, dtype=np.int64), vecs


def reference_dict(keys: np.ndarray, vecs: np.ndarray) -> dict[int, np.ndarray]:
    d = {}
    for k, v in zip(keys.tolist(), vecs):
        d[k] = v  # last row wins
    return d


def write_store(path: Path, keys, vecs, *, key_type=pa.int64(), vec_type=None) -> str:
    vec_type = vec_type or pa.list_(pa.float32(), DIM)
    if pa.types.is_fixed_size_list(vec_type):
        flat = pa.array(np.asarray(vecs).reshape(-1).astype(vec_type.value_type.to_pandas_dtype()), vec_type.value_type)
        col = pa.FixedSizeListArray.from_arrays(flat, vec_type.list_size)
    else:
        col = pa.array([list(map(float, v)) for v in vecs], vec_type)
    lance.write_dataset(pa.table({"artwork_id": pa.array(keys).cast(key_type), "embedding": col}), str(path))
    return str(path)


def skeleton_table(n: int, seed: int, t0: int = 0) -> pa.Table:
    """Edge cases: null/missing scalar ids, null/empty lists, duplicates, null elements."""
    rng = np.random.default_rng(seed)
    art, recent = [], []
    for _ in range(n):
        r = rng.random()
        art.append(None if r < 0.1 else int(rng.integers(0, 70)))  # 60..69 and x%5==4: missing
        kind = rng.random()
        if kind < 0.1:
            recent.append(None)
        elif kind < 0.2:
            recent.append([])
        else:
            lst = [int(x) for x in rng.integers(0, 70, rng.integers(1, 9))]
            if rng.random() < 0.3:
                lst.append(lst[0])  # an id listed twice counts twice
            if rng.random() < 0.1:
                lst.insert(1, None)  # a null element is skipped
            recent.append(lst)
    ts = pa.array((t0 + np.arange(n)) * 1_000_000, pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "event_timestamp": ts,
            "user_id": pa.array(rng.integers(0, 9, n), pa.int64()),
            "artwork_id": pa.array(art, pa.int64()),
            "country": pa.array([["fr", "de", None][i % 3] for i in range(n)], pa.string()),
            "clicked": pa.array(rng.random(n) < 0.3),
            "recent": pa.array(recent, pa.list_(pa.int64())),
        }
    )


def write_day(day_dir: Path, sizes: dict[int, int], seed: int = 0) -> pa.Table:
    """Parts part-N-0.parquet for the given {N: rows}; returns the day in N order."""
    day_dir.mkdir(parents=True, exist_ok=True)
    tables, t0 = [], 0
    for n in sorted(sizes):
        t = skeleton_table(sizes[n], seed + n, t0)
        t0 += sizes[n]
        pq.write_table(t, day_dir / f"part-{n}-0.parquet", compression="zstd")
        tables.append(t)
    return pa.concat_tables(tables)


# -- the naive reference ------------------------------------------------------------------


def ref_scalar(i, d):
    if i is None or i not in d:
        return np.zeros(DIM, np.float32), 0
    return d[i], 1


def ref_list(lst, d):
    acc, c = np.zeros(DIM, np.float32), 0
    for x in lst or []:
        if x is not None and x in d:
            acc = (acc + d[x]).astype(np.float32)
            c += 1
    return (acc / np.float32(c) if c else np.zeros(DIM, np.float32)), c


def check_against_reference(out: pa.Table, skel: pa.Table, d: dict, embeddings=EMBEDDINGS) -> None:
    assert out.num_rows == skel.num_rows
    # skeleton columns unchanged, in order, then <name>, <name>_count per embedding
    expected_names = skel.column_names + [c for name, _ in embeddings for c in (name, f"{name}_count")]
    assert out.column_names == expected_names
    for name in skel.column_names:
        assert out.schema.field(name).type == skel.schema.field(name).type
        assert out.column(name).to_pylist() == skel.column(name).to_pylist(), name
    for name, ids in embeddings:
        t = out.schema.field(name).type
        assert pa.types.is_fixed_size_list(t) and t.list_size == DIM and t.value_type == pa.float32()
        assert out.schema.field(f"{name}_count").type == pa.int32()
        got = out.column(name).combine_chunks()
        assert got.null_count == 0
        vecs = got.flatten().to_numpy().reshape(-1, DIM)
        counts = out.column(f"{name}_count").to_pylist()
        scalar = not pa.types.is_list(skel.schema.field(ids).type)
        for r, v in enumerate(skel.column(ids).to_pylist()):
            ev, ec = ref_scalar(v, d) if scalar else ref_list(v, d)
            assert counts[r] == ec, (name, r, v)
            np.testing.assert_allclose(vecs[r], ev, rtol=0, atol=1e-6, err_msg=f"{name} row {r} ids {v}")


def read_day(day_dir: Path) -> tuple[pa.Table, list[str]]:
    names = sorted(p.name for p in day_dir.iterdir())
    return pa.concat_tables([pq.read_table(day_dir / n) for n in names]), names


def file_bytes(day_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(day_dir.iterdir())}


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    import ray

    how = stage.ensure_ray(None, 2)
    assert how in ("started", "reused")
    yield
    if how == "started":  # leave a Ray that another fixture started alone
        ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store and a skeleton day with parts 0, 1 (empty), 2 and 10 (integer order!)."""
    root = tmp_path_factory.mktemp("enrich")
    keys, vecs = store_rows()
    uri = write_store(root / "artworks.lance", keys, vecs)
    skel_day = root / "skeleton" / DAY
    skel = write_day(skel_day, {0: 23, 1: 0, 2: 31, 10: 17})
    return {"root": root, "uri": uri, "skel_day": skel_day, "skel": skel, "d": reference_dict(keys, vecs)}


def run(world, out_day: Path, **kw):
    args = dict(store_uri=world["uri"], key="artwork_id", vector="embedding", embeddings=EMBEDDINGS, shard_rows=7)
    args.update(kw)
    return stage.run_enrich_stage(world["skel_day"], out_day, **args)


# -- pooling and store (no Ray) -----------------------------------------------------------


def _store(keys, vecs):
    return EmbeddingStore.from_arrays(
        pa.array(keys), pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), DIM)
    )


@pytest.mark.parametrize("sparse", [False, True], ids=["dense-index", "searchsorted"])
def test_pooling_matches_reference(sparse):
    keys, vecs = store_rows(1)
    if sparse:  # a huge id range: lookups go through np.searchsorted
        keys = keys * 10**12 - 5 * 10**12
    d = reference_dict(keys, vecs)
    st = _store(keys, vecs)
    assert (st._dense is None) == sparse
    skel = skeleton_table(400, 3)
    if sparse:
        skel = skel.set_column(2, "artwork_id", pc.multiply(pc.subtract(skel["artwork_id"], 5), 10**12))
        rec = [
            None if lst is None else [None if x is None else (x - 5) * 10**12 for x in lst]
            for lst in skel["recent"].to_pylist()
        ]
        skel = skel.set_column(5, "recent", pa.array(rec, pa.list_(pa.int64())))
    out = enrich_table(skel, st, [EmbeddingSpec(n, c) for n, c in EMBEDDINGS])
    check_against_reference(out, skel, d)
    # the same values whatever the chunking/slicing of the input (rows are independent)
    chunked = pa.concat_tables([skel.slice(0, 1), skel.slice(1, 150), skel.slice(151)])
    out2 = enrich_table(chunked, st, [EmbeddingSpec(n, c) for n, c in EMBEDDINGS])
    assert out2.combine_chunks().equals(out.combine_chunks())
    sliced = enrich_table(skel.slice(37, 100), st, [EmbeddingSpec(n, c) for n, c in EMBEDDINGS])
    assert sliced.equals(out.slice(37, 100).combine_chunks())


def test_pooling_other_id_types_and_long_lists(monkeypatch):
    keys, vecs = store_rows(2)
    d = reference_dict(keys, vecs)
    st = _store(keys, vecs)
    monkeypatch.setattr(pooling, "BLOCK_ROWS", 3)  # many blocks, lists longer than a block
    rng = np.random.default_rng(5)
    lists = [[int(x) for x in rng.integers(0, 70, rng.integers(0, 40))] for _ in range(50)]
    t = pa.table(
        {
            "a32": pa.array([None if i % 7 == 0 else i for i in range(50)], pa.int32()),
            "big": pa.array(lists, pa.large_list(pa.int64())),
            "small": pa.array(
                [[x % 60 for x in lst[:3]] + [0] * (3 - len(lst[:3])) for lst in lists], pa.list_(pa.int32(), 3)
            ),
        }
    )
    specs = [("e1", "a32"), ("e2", "big"), ("e3", "small")]
    out = enrich_table(t, st, [EmbeddingSpec(n, c) for n, c in specs])
    for name, col in specs:
        vec = out[name].combine_chunks().flatten().to_numpy().reshape(-1, DIM)
        cnt = out[f"{name}_count"].to_pylist()
        for r, v in enumerate(t[col].to_pylist()):
            ev, ec = ref_scalar(v, d) if name == "e1" else ref_list(v, d)
            assert cnt[r] == ec
            np.testing.assert_allclose(vec[r], ev, rtol=0, atol=1e-6)


def test_store_rules_duplicates_nulls_empty():
    keys = pa.array([5, 1, None, 5, 7, 9], pa.int64())
    flat = np.arange(6 * DIM, dtype=np.float32)
    # a null element inside the vector of id 9 makes that row unusable
    child = pa.array([None if i == 5 * DIM + 1 else float(x) for i, x in enumerate(flat)], pa.float32())
    fsl = pa.FixedSizeListArray.from_arrays(child, DIM, mask=pa.array([False, False, False, False, True, False]))
    st = EmbeddingStore.from_arrays(
        pa.chunked_array([keys.slice(0, 2), keys.slice(2)]), pa.chunked_array([fsl.slice(0, 3), fsl.slice(3)])
    )
    assert st.keys.tolist() == [1, 5]  # null key, null vector (7), null element (9) dropped
    vec = lambda i: st.matrix[st.rows(np.array([i]))[0]]  # noqa: E731
    np.testing.assert_array_equal(vec(5), flat[3 * DIM : 4 * DIM])  # id 5: the later row wins
    np.testing.assert_array_equal(vec(1), flat[1 * DIM : 2 * DIM])
    assert st.rows(np.array([7, 9, -3, 2**62])).tolist() == [st.missing_row] * 4
    np.testing.assert_array_equal(st.matrix[st.missing_row], np.zeros(DIM))
    empty = EmbeddingStore.from_arrays(
        pa.array([], pa.int64()), pa.FixedSizeListArray.from_arrays(pa.array([], pa.float32()), DIM)
    )
    vec, cnt = pooling.pool_column(pa.array([[1, 2], None, []], pa.list_(pa.int64())), empty)
    assert cnt.to_pylist() == [0, 0, 0] and vec.flatten().to_numpy().tolist() == [0.0] * 3 * DIM


@pytest.mark.parametrize(
    "key_type,vec_type,problem",
    [
        (pa.int64(), pa.list_(pa.float64()), "vector column 'embedding' must be fixed_size_list<float32>[dim]"),
        (pa.int64(), pa.list_(pa.float32()), "vector column 'embedding' must be fixed_size_list<float32>[dim]"),
        (pa.int64(), pa.list_(pa.float64(), DIM), "vector column 'embedding' must be fixed_size_list<float32>[dim]"),
        (pa.int32(), None, "key column 'artwork_id' must be int64, not int32"),
        (pa.string(), None, "key column 'artwork_id' must be int64, not string"),
    ],
)
def test_store_validation(tmp_path, key_type, vec_type, problem):
    keys, vecs = store_rows()
    uri = write_store(tmp_path / "bad.lance", keys, vecs, key_type=key_type, vec_type=vec_type)
    with pytest.raises(DaedalusError) as e:
        pin_store(uri, "artwork_id", "embedding")
    assert e.value.where == uri
    assert problem in e.value.problem and "\n" not in str(e.value)


def test_store_missing_and_pinned_version(tmp_path):
    with pytest.raises(DaedalusError, match="embedding store not found") as e:
        pin_store(str(tmp_path / "nope.lance"), "artwork_id", "embedding")
    assert "\n" not in str(e.value)
    keys, vecs = store_rows()
    uri = write_store(tmp_path / "s.lance", keys, vecs)
    with pytest.raises(DaedalusError, match="key column 'id' not found"):
        pin_store(uri, "id", "embedding")
    ref = pin_store(uri, "artwork_id", "embedding")
    assert ref.version == 1 and ref.dim == DIM
    # an append after pinning does not change what the pinned version loads
    lance.write_dataset(
        pa.table(
            {
                "artwork_id": pa.array([1000], pa.int64()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array([1.0] * DIM, pa.float32()), DIM),
            }
        ),
        uri,
        mode="append",
    )
    assert 1000 not in EmbeddingStore.load(ref).keys.tolist()
    assert 1000 in EmbeddingStore.load(pin_store(uri, "artwork_id", "embedding")).keys.tolist()
    with pytest.raises(DaedalusError, match="version 99"):
        pin_store(uri, "artwork_id", "embedding", version=99)


# -- the Ray stage ------------------------------------------------------------------------


def test_stage_matches_reference(ray_local, world, tmp_path):
    out_day = tmp_path / "out" / DAY
    res = run(world, out_day, batch_rows=5)
    assert res["rows"] == 71 and res["shards"] == 11 and res["store_version"] == 1 and res["ray"] == "reused"
    out, names = read_day(out_day)
    assert names == [f"part-{i:05d}.parquet" for i in range(11)]
    sizes = [pq.ParquetFile(out_day / n).metadata.num_rows for n in names]
    assert sizes == [7] * 10 + [1]
    for n in names:
        assert pq.ParquetFile(out_day / n).metadata.row_group(0).column(0).compression == "ZSTD"
    check_against_reference(out, world["skel"], world["d"])
    assert sorted(os.listdir(out_day.parent)) == [DAY]  # no temp leftovers


def test_rerun_is_byte_identical(ray_local, world, tmp_path):
    out_day = tmp_path / "out" / DAY
    run(world, out_day, batch_rows=5)
    first = file_bytes(out_day)
    run(world, out_day, batch_rows=5)  # replaces the existing day
    assert file_bytes(out_day) == first
    other = tmp_path / "other" / DAY
    run(world, other, batch_rows=1000)  # other batching: the same bytes
    assert file_bytes(other) == first
    assert sorted(os.listdir(out_day.parent)) == [DAY]


def test_small_day_path_gives_the_ray_paths_bytes(ray_local, world, tmp_path):
    """A day of at most `direct_max_rows` rows is pooled in-process without Ray Data: the same
    shards, byte for byte, whatever the batch size of either path."""
    ray_day, direct_day = tmp_path / "ray" / DAY, tmp_path / "direct" / DAY
    res_ray = run(world, ray_day, batch_rows=5)
    res_direct = run(world, direct_day, batch_rows=13, direct_max_rows=71)
    assert (res_ray["ray"], res_direct["ray"]) == ("reused", "direct")
    assert file_bytes(direct_day) == file_bytes(ray_day)
    check_against_reference(read_day(direct_day)[0], world["skel"], world["d"])
    assert run(world, tmp_path / "big" / DAY, direct_max_rows=70)["ray"] == "reused"  # one row over: Ray


def test_zero_row_day(ray_local, world, tmp_path):
    skel_day = tmp_path / "skeleton" / DAY
    empty = write_day(skel_day, {0: 0})
    out_day = tmp_path / "out" / DAY
    res = stage.run_enrich_stage(
        skel_day,
        out_day,
        store_uri=world["uri"],
        key="artwork_id",
        vector="embedding",
        embeddings=EMBEDDINGS,
        shard_rows=7,
    )
    assert res["rows"] == 0 and res["shards"] == 1
    assert sorted(os.listdir(out_day)) == ["part-00000.parquet"]
    t = pq.read_table(out_day / "part-00000.parquet")
    assert t.num_rows == 0
    assert t.column_names == empty.column_names + [
        "artwork_emb",
        "artwork_emb_count",
        "history_emb",
        "history_emb_count",
    ]
    assert t.schema.field("history_emb").type == pa.list_(pa.float32(), DIM)


def test_exact_multiple_of_shard_rows(ray_local, world, tmp_path):
    skel_day = tmp_path / "skeleton" / DAY
    skel = write_day(skel_day, {0: 8, 1: 6})
    out_day = tmp_path / "out" / DAY
    res = stage.run_enrich_stage(
        skel_day,
        out_day,
        store_uri=world["uri"],
        key="artwork_id",
        vector="embedding",
        embeddings=EMBEDDINGS[::-1],
        shard_rows=7,
        batch_rows=3,
    )
    assert res["shards"] == 2
    out, names = read_day(out_day)
    assert names == ["part-00000.parquet", "part-00001.parquet"]
    check_against_reference(out, skel, world["d"], EMBEDDINGS[::-1])


def test_interrupted_publish_leaves_no_partial_day(ray_local, world, tmp_path, monkeypatch):
    import ray

    out_root = tmp_path / "out"
    out_day = out_root / DAY
    calls = []
    real_write = stage.ShardWriter.write

    def failing_write(self, table, path):
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real_write(self, table, path)

    monkeypatch.setattr(stage.ShardWriter, "write", failing_write)
    with pytest.raises(OSError, match="simulated"):
        run(world, out_day, batch_rows=5)
    assert not out_day.exists()
    assert os.listdir(out_root) == []  # neither visible nor hidden leftovers
    # an existing complete day stays exactly as it was when a rerun fails
    monkeypatch.setattr(stage.ShardWriter, "write", real_write)
    run(world, out_day)
    before = file_bytes(out_day)
    calls.clear()
    monkeypatch.setattr(stage.ShardWriter, "write", failing_write)
    with pytest.raises(OSError, match="simulated"):
        run(world, out_day)
    assert file_bytes(out_day) == before
    assert os.listdir(out_root) == [DAY]
    # the failed pipeline released its actor's CPU
    import time

    deadline = time.time() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]


def test_invalid_inputs_touch_nothing(ray_local, world, tmp_path):
    out_day = tmp_path / "out" / DAY
    out_day.mkdir(parents=True)
    (out_day / "keep.parquet").write_bytes(b"old")
    bad = [
        (dict(embeddings=[("e", "nope")]), "ids column 'nope' not in the skeleton output"),
        (dict(embeddings=[("e", "country")]), "has type string"),
        (dict(embeddings=[("clicked", "artwork_id")]), "output column 'clicked' already exists"),
        (dict(store_uri=str(tmp_path / "missing.lance")), "embedding store not found"),
        (dict(vector="artwork_id"), "must be fixed_size_list<float32>[dim]"),
    ]
    for kw, problem in bad:
        with pytest.raises(DaedalusError) as e:
            run(world, out_day, **kw)
        assert problem in e.value.problem and "\n" not in str(e.value)
    with pytest.raises(DaedalusError, match="no skeleton parts"):
        stage.run_enrich_stage(
            tmp_path,
            out_day,
            store_uri=world["uri"],
            key="artwork_id",
            vector="embedding",
            embeddings=EMBEDDINGS,
            shard_rows=7,
        )
    assert os.listdir(out_day) == ["keep.parquet"] and os.listdir(out_day.parent) == [DAY]


JOB = """
import sys
from pathlib import Path
from daedalus.enrich.stage import run_enrich_stage
uri, skel, out, address = sys.argv[1:5]
res = run_enrich_stage(Path(skel), Path(out), store_uri=uri, key="artwork_id", vector="embedding",
                       embeddings=[("artwork_emb", "artwork_id"), ("history_emb", "recent")], shard_rows=7,
                       ray_address=address or None)
print(res["ray"])
"""


@pytest.mark.scale_out
def test_same_output_through_a_shared_head(ray_local, world, tmp_path):
    """In-process local Ray vs day jobs (separate processes, as Snakemake runs them) attached to
    a head started with start_local_head; then stop_head stops exactly that head."""
    import psutil

    from daedalus.enrich import cluster

    local = tmp_path / "local" / DAY
    run(world, local)
    address = cluster.start_local_head(2, None)
    head = cluster._HEADS[-1]
    try:
        assert address.startswith("127.0.0.1:") and head.pids
        # a fresh process, like a Snakemake job: no RAY_AUTH_MODE, the address in RAY_ADDRESS
        # (as `daeda pipeline train` passes it)
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        env["RAY_ADDRESS"] = address
        out = tmp_path / "job" / DAY
        job = subprocess.run(
            [sys.executable, "-c", JOB, world["uri"], str(world["skel_day"]), str(out), ""],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert job.returncode == 0, job.stderr[-3000:]
        assert job.stdout.strip() == "attached"
        assert job.stderr == ""  # nothing from Ray on the job's stderr
        assert file_bytes(out) == file_bytes(local)
    finally:
        assert cluster.stop_head() is True
    alive = [p for p in head.pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not head.temp_dir.exists()
    assert cluster.stop_head() is False
    import ray

    assert ray.is_initialized()  # the in-process Ray was not touched


def test_shards_of_map_columns_have_the_same_bytes_however_they_were_read(tmp_path: Path) -> None:
    """A map column read back from parquet names its entries after the column (the direct
    path), one from Ray Data `entries`: the shards are the same bytes either way."""
    mtype = pa.map_(pa.string(), pa.int64())
    table = pa.table({"m": pa.array([[("a", 1)], [], None, [("b", 2), ("c", 3)]], mtype)})
    pq.write_table(table, tmp_path / "in.parquet")
    reread = pq.read_table(tmp_path / "in.parquet")
    assert reread["m"].type.field(0).name != "entries"  # what the direct path hands the writer
    out = []
    for i, t in enumerate((table, reread)):
        (tmp_path / str(i)).mkdir()
        w = stage.ShardWriter(tmp_path / str(i), table.schema, shard_rows=3)
        w.add(t)
        w.close()
        out.append([p.read_bytes() for p in sorted((tmp_path / str(i)).iterdir())])
    assert out[0] == out[1] and len(out[0]) == 2
