"""daedalus.dataset: trainers open an output root directly (docs/training.md).

One small demo output (6 days; parts of 120 rows, so a day has 13 skeleton parts and
`part-10-0` must come after `part-9-0`; enriched shards of 500 rows) is built once for the
module and only read; tests that change files work on a copy of the output roots.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from projects import REPO, make_project, train

from daedalus.dataset import file_slices, open_training_set, shard_range
from daedalus.errors import DaedalusError

DAYS = [f"2026-04-0{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    p = make_project(
        tmp_path_factory.mktemp("dataset") / "project",
        start=DAYS[0],
        end=DAYS[-1],
        users=300,
        artworks=400,
        events_per_day=1500,
        lookback_days=7,
    )
    rt = p / "config" / "training" / "runtime.yaml"
    text = re.sub(r"chunk_rows: \d+", "chunk_rows: 120", rt.read_text())
    rt.write_text(re.sub(r"shard_rows: \d+", "shard_rows: 500", text))
    train(p)
    return p


@pytest.fixture(scope="module")
def skel(project) -> Path:
    return project / "data" / "training_output"


@pytest.fixture(scope="module")
def enr(project) -> Path:
    return project / "data" / "training_output_enriched"


@pytest.fixture(scope="module")
def reference(skel) -> pa.Table:
    """The skeleton days read file by file, the contract's way: days in order, parts by N."""
    tables = []
    for day in DAYS:
        parts = sorted((skel / f"dt={day}").glob("part-*-0.parquet"), key=lambda p: int(p.name.split("-")[1]))
        t = pa.concat_tables([pq.read_table(p) for p in parts])
        tables.append(t.append_column("dt", pa.array([dt.date.fromisoformat(day)] * t.num_rows, pa.date32())))
    return pa.concat_tables(tables)


@pytest.fixture
def copied(project, tmp_path) -> Path:
    """A copy of both output roots (state folder included); returns the skeleton root."""
    for name in ("training_output", "training_output_enriched"):
        shutil.copytree(project / "data" / name, tmp_path / name)
    return tmp_path / "training_output"


def test_import_needs_only_pyarrow():
    code = "import sys, daedalus.dataset; print(sorted({'ray', 'torch', 'lightgbm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pyarrow_dataset_schema_partition_and_order(skel, reference):
    ts = open_training_set(skel)
    assert ts.stage == "skeleton" and list(ts.days) == DAYS
    assert len([f for f in ts.files if f.day == DAYS[0]]) >= 11  # part-10-0 exists
    assert ts.num_rows == reference.num_rows
    ds = ts.to_pyarrow()
    assert ds.schema.equals(reference.schema)  # the file columns, then dt: date32
    assert ds.schema.field("dt").type == pa.date32()
    assert ds.count_rows() == reference.num_rows
    assert ds.to_table().equals(reference)
    # day order, and event_timestamp order inside a day
    full = pa.Table.from_batches(list(ts.iter_batches(batch_size=1000)))
    assert full.equals(reference)
    days = reference["dt"].to_numpy()
    ts_us = reference["event_timestamp"].cast(pa.int64()).to_numpy()
    assert (np.diff(days.astype("datetime64[D]").astype(np.int64)) >= 0).all()
    same_day = days[1:] == days[:-1]
    assert (np.diff(ts_us)[same_day] >= 0).all()
    # filtering on the partition field
    import pyarrow.dataset as pads

    sub = ds.to_table(filter=pads.field("dt") >= dt.date(2026, 4, 5))
    assert sub.num_rows == int(pc.sum(pc.greater_equal(reference["dt"], pa.scalar(dt.date(2026, 4, 5)))).as_py())


def test_date_range_and_column_selection(skel, enr, reference):
    ts = open_training_set(skel, start="2026-04-02", end=dt.date(2026, 4, 4), columns=["qid", "dt", "clicked"])
    assert list(ts.days) == DAYS[1:4]
    assert ts.schema.names == ["qid", "dt", "clicked"]
    want = reference.filter(
        pc.and_(
            pc.greater_equal(reference["dt"], pa.scalar(dt.date(2026, 4, 2))),
            pc.less_equal(reference["dt"], pa.scalar(dt.date(2026, 4, 4))),
        )
    ).select(["qid", "dt", "clicked"])
    assert pa.Table.from_batches(list(ts.iter_batches(333))).equals(want)
    assert ts.to_pyarrow().to_table().equals(want)  # dt where it was selected
    no_dt = open_training_set(skel, start="2026-04-02", end="2026-04-04", columns=["clicked", "qid"])
    assert no_dt.to_pyarrow().schema.names == ["clicked", "qid"]  # dt only when selected
    assert no_dt.to_pyarrow().to_table().equals(want.select(["clicked", "qid"]))
    # YYYY-MM is the month's first / last day
    assert list(open_training_set(skel, start="2026-04", end="2026-04").days) == DAYS
    # the enriched root: same rows, the skeleton columns and the embeddings
    e = open_training_set(enr, start="2026-04-06")
    assert e.stage == "enrich" and list(e.days) == ["2026-04-06"]
    assert e.file_schema.names[: len(reference.schema) - 1] == reference.schema.names[:-1]
    assert e.file_schema.field("artwork_emb").type.list_size == 32
    assert len(e.files) == 4 and [Path(f.path).name for f in e.files] == sorted(Path(f.path).name for f in e.files)
    got = pa.Table.from_batches(list(e.iter_batches())).select(reference.schema.names)
    assert got.equals(reference.filter(pc.equal(reference["dt"], pa.scalar(dt.date(2026, 4, 6)))))


def test_only_published_days_and_no_hidden_entries(copied):
    enriched = copied.parent / "training_output_enriched"
    (copied / f"dt={DAYS[1]}.tmp-123-abcd").mkdir()  # a half-written day (not dt=D: ignored)
    (copied / ".dt=2026-04-07.tmp-1-ab").mkdir()
    (copied / "_SUCCESS").write_text("")
    (copied / f"dt={DAYS[2]}" / ".part-99-0.parquet.tmp-7-ab").write_bytes(b"partial")
    (copied / f"dt={DAYS[2]}" / "_common_metadata").write_bytes(b"x")
    (copied / "dt=2026-04-09").mkdir()  # no record: not published
    (copied / ".daedalus" / "published" / "skeleton" / f"dt={DAYS[3]}.json").unlink()
    with pytest.warns(UserWarning, match=r"skipping 2 day\(s\) that are not published: 2026-04-04, 2026-04-09"):
        ts = open_training_set(copied)
    assert list(ts.days) == [d for d in DAYS if d != DAYS[3]]
    assert list(ts.unpublished_days) == [DAYS[3], "2026-04-09"]
    assert all(Path(f.path).name.startswith("part-") for f in ts.files)
    ts.to_pyarrow().to_table()  # the hidden file is not read
    # a day edited by hand no longer matches its record
    first = enriched / f"dt={DAYS[0]}" / "part-00000.parquet"
    pq.write_table(pq.read_table(first).slice(0, 10), first)
    with pytest.warns(UserWarning, match="2026-04-01"):
        assert DAYS[0] not in open_training_set(enriched).days
    # without the state folder (a copy of the data): only with require_published=False
    shutil.rmtree(copied / ".daedalus")
    with pytest.raises(DaedalusError, match="no published records"):
        open_training_set(copied)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loose = open_training_set(copied, require_published=False)
    assert list(loose.days) == [*DAYS, "2026-04-09"]


def test_shard_range_covers_every_row_once():
    for n in [0, 1, 2, 5, 7, 100, 1001]:
        for world in [1, 2, 3]:
            for workers in [1, 2, 3, 4]:
                shards = [shard_range(n, r, world, w, workers) for r in range(world) for w in range(workers)]
                assert shards[0][0] == 0 and shards[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))  # contiguous, no overlap
                sizes = [b - a for a, b in shards]
                assert max(sizes) - min(sizes) <= 1
                even = [
                    shard_range(n, r, world, w, workers, drop_remainder=True)
                    for r in range(world)
                    for w in range(workers)
                ]
                assert {b - a for a, b in even} == {n // (world * workers)}
                assert all(a[1] == b[0] for a, b in zip(even, even[1:]))
    assert list(file_slices([3, 0, 4, 2], 2, 8)) == [(0, 2, 1), (2, 0, 4), (3, 0, 1)]
    for bad in [dict(rank=2, world_size=2), dict(rank=-1), dict(worker_id=3, num_workers=3), dict(world_size=0)]:
        with pytest.raises(DaedalusError):
            shard_range(10, **{"rank": 0, **bad})


def test_shards_of_ranks_and_workers_cover_every_row_once(skel, reference):
    ts = open_training_set(skel)
    world, workers = 2, 3
    parts = [
        pa.Table.from_batches(list(ts.iter_shard(r, world, w, workers, batch_size=97)), schema=ts.schema)
        for r in range(world)
        for w in range(workers)
    ]
    sizes = [p.num_rows for p in parts]
    assert sum(sizes) == reference.num_rows and max(sizes) - min(sizes) <= 1
    # in shard order they are the whole set in day order: every row once, none twice
    assert pa.concat_tables(parts).equals(reference)
    for p in parts:  # each shard is in day order itself
        assert (np.diff(p["event_timestamp"].cast(pa.int64()).to_numpy()) >= 0).all()
    even = [sum(b.num_rows for b in ts.iter_shard(r, 2, w, 3, drop_remainder=True)) for r in range(2) for w in range(3)]
    assert even == [reference.num_rows // 6] * 6
    assert [b.num_rows for b in ts.iter_batches(batch_size=1000)][:-1] == [1000] * (reference.num_rows // 1000)


def _groups_ok(batch):
    sizes = batch.group
    assert sizes.sum() == batch.num_rows == len(batch.qid) and (sizes > 0).all()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for s, n in zip(starts, sizes):
        assert (batch.qid[s : s + n] == batch.qid[s]).all()
    firsts = batch.qid[starts]
    assert len(set(firsts.tolist())) == len(firsts)  # each qid in one group
    return firsts


def test_qid_groups_whole_across_days(skel, reference):
    ts = open_training_set(skel)
    feats = ["dt", "event_timestamp", "artwork_id", "position"]
    whole = ts.ranking_data("clicked", features=feats)
    firsts = _groups_ok(whole)
    q = reference["qid"].to_numpy()
    assert reference["qid"].null_count == 0 and whole.num_rows == reference.num_rows
    assert len(firsts) == len(np.unique(q))
    # groups in the order of their first row, rows of a group in row order
    _, first_idx, inv = np.unique(q, return_index=True, return_inverse=True)
    order = np.argsort(first_idx[inv], kind="stable")
    want = reference.take(order)
    assert whole.features.equals(want.select(feats))
    assert (whole.qid == want["qid"].to_numpy()).all()
    assert (whole.labels == want["clicked"].cast(pa.int32()).to_numpy()).all()
    # sessions across midnight: one group with rows of two days
    days_per_group = [
        len(set(whole.features["dt"].slice(s, n).to_pylist()))
        for s, n in zip(np.concatenate([[0], np.cumsum(whole.group)[:-1]]), whole.group)
    ]
    assert sum(d > 1 for d in days_per_group) >= len(DAYS) - 1
    # batches: whole groups, at most max_rows rows unless one group is larger; together the same rows
    batches = list(ts.qid_batches("clicked", features=feats, max_rows=200))
    assert len(batches) > 10
    seen = []
    for b in batches:
        seen += _groups_ok(b).tolist()
        assert b.num_rows <= 200 or len(b.group) == 1
    assert seen == firsts.tolist()
    assert pa.concat_tables([b.features for b in batches]).equals(whole.features)
    assert (np.concatenate([b.labels for b in batches]) == whole.labels).all()
    # a range that starts after midnight keeps only the later rows of those sessions
    later = open_training_set(skel, start=DAYS[1]).ranking_data("clicked", features=["position"])
    _groups_ok(later)
    assert later.num_rows == int(pc.sum(pc.not_equal(reference["dt"], pa.scalar(dt.date(2026, 4, 1)))).as_py())
    m = later.feature_matrix()
    assert m.shape == (later.num_rows, 1) and m.dtype == np.float32


def test_ray_dataset_matches_pyarrow(skel, enr):
    import ray

    from daedalus.enrich.stage import ensure_ray

    how = ensure_ray(None, 2)
    try:
        for ts in (
            open_training_set(enr, columns=["qid", "dt", "clicked", "history_emb"]),
            open_training_set(skel, start=DAYS[-1]),  # every column, then dt
        ):
            rds = ts.to_ray(override_num_blocks=7).materialize()  # one execution for the checks
            want = ts.to_pyarrow().to_table()
            assert rds.count() == want.num_rows == ts.num_rows
            assert rds.schema().names == want.schema.names == list(ts.columns)
            got = pa.concat_tables(list(rds.iter_batches(batch_format="pyarrow", batch_size=None)))
            assert got.schema.equals(want.schema) and got.equals(want)  # same types, same order
    finally:
        if how == "started":
            ray.shutdown()


def test_errors_are_one_line(tmp_path, skel):
    cases = [
        (lambda: open_training_set(tmp_path / "nope"), str(tmp_path / "nope"), "no such output root"),
        (lambda: open_training_set(tmp_path), str(tmp_path), "no published records"),
        (lambda: open_training_set(skel, start="2026-4-1"), "start", "'2026-4-1'"),
        (lambda: open_training_set(skel, end="2026-13"), "end", "'2026-13'"),
        (lambda: open_training_set(skel, start="2026-04-05", end="2026-04-02"), "start", "2026-04-05 is after end"),
        (lambda: open_training_set(skel, start="2026-05-01"), str(skel), "no published day in 2026-05-01.."),
        (lambda: open_training_set(skel, columns=["qid", "clickd"]), "columns", "unknown column 'clickd'"),
        (lambda: open_training_set(skel, columns="qid"), "columns", "the string 'qid'"),
        (lambda: open_training_set(skel, columns=["qid", "qid"]), "columns", "'qid' listed twice"),
        (lambda: open_training_set(skel).ranking_data("clickd"), "label", "unknown column 'clickd'"),
        (lambda: open_training_set(skel).qid_batches("clicked", qid="user_session"), "qid", "'user_session'"),
        (lambda: open_training_set(skel).qid_batches("device"), "label", "'device' is string"),
        (lambda: open_training_set(skel).qid_batches("clicked", features=["qid"]), "features", "the qid column"),
        (lambda: open_training_set(skel).qid_batches("clicked", max_rows=0), "max_rows", "got 0"),
        (lambda: open_training_set(skel).iter_shard(2, 2), "rank", "0..1, got 2"),
        (
            lambda: open_training_set(skel, columns=["qid", "device"]).ranking_data("clicked").feature_matrix(),
            "features",
            "'device' is string",
        ),
    ]
    for call, where, problem in cases:
        with pytest.raises(DaedalusError) as e:
            call()
        assert e.value.where == where, (where, str(e.value))
        assert problem in e.value.problem and "\n" not in str(e.value), str(e.value)


def test_torch_dataloader_workers_and_ranks(skel, enr, reference):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    cols = ["event_timestamp", "artwork_id", "qid", "position", "clicked"]
    ts = open_training_set(skel, columns=cols)

    def rows(batches):
        out = []
        for b in batches:
            out += list(zip(*(b[c].tolist() for c in cols)))
        return out

    want = list(zip(*(reference[c].cast(pa.int64()).to_pylist() for c in cols)))
    got = []
    for rank in range(2):
        loader = DataLoader(ts.to_torch(batch_size=64, rank=rank, world_size=2), batch_size=None, num_workers=2)
        got += rows(loader)
    assert sorted(got) == sorted(want) and len(got) == len(want)  # every row once across ranks and workers
    # one row at a time, batched by the DataLoader; embeddings as 2-D float tensors
    e = open_training_set(enr, start=DAYS[-1], columns=["qid", "clicked", "artwork_emb", "dt"])
    n = 0
    for b in DataLoader(e.to_torch(), batch_size=32, num_workers=2):
        assert b["artwork_emb"].dtype == torch.float32 and b["artwork_emb"].shape[1] == 32
        assert b["qid"].dtype == torch.int64 and b["clicked"].dtype == torch.bool
        n += len(b["qid"])
    assert n == e.num_rows
    with pytest.raises(DaedalusError, match="world_size"):
        ts.to_torch(rank=0)


def test_ranker_example_beats_random(enr):
    """docs/training.md's example at a small size: the demo labels are learnable."""
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "docs" / "examples" / "train_ranker.py"),
            "--root",
            str(enr),
            "--test-days",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    assert figures["test_days"] == DAYS[-2:] and figures["test_queries_with_click"] > 100
    assert figures["ndcg10_ranker"] > figures["ndcg10_random"] + 0.1, res.stdout
