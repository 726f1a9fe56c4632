"""The README's quickstart path at a small size: demo data, then both stages end to end."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from projects import SNAKEMAKE, data_files, run, train

pytestmark = pytest.mark.e2e

DAYS = ["2026-04-01", "2026-04-02", "2026-04-03"]


def test_quickstart_both_stages_and_plain_snakemake_agree(trained_template, demo_template, tmp_path):
    # `daeda pipeline train` ran once on the shared template; copies keep mtimes and metadata.
    project, other = tmp_path / "train", tmp_path / "plain"
    shutil.copytree(trained_template, project, symlinks=True)
    shutil.copytree(demo_template, other, symlinks=True)
    assert "done" in (trained_template.parent / "train.stderr").read_text()
    skel, enr = project / "data/training_output", project / "data/training_output_enriched"
    for d in DAYS:
        t = pq.read_table(skel / f"dt={d}" / "part-0-0.parquet")
        shards = sorted((enr / f"dt={d}").glob("*.parquet"))
        assert shards, d
        e = pa.concat_tables([pq.read_table(s) for s in shards])
        assert e.num_rows == t.num_rows
        assert e.column_names[: t.num_columns] == t.column_names
        assert e.column_names[t.num_columns :] == [
            "artwork_emb",
            "artwork_emb_count",
            "history_emb",
            "history_emb_count",
        ]
        assert e.schema.field("artwork_emb").type == pa.list_(pa.float32(), 32)
        assert e.schema.field("history_emb_count").type == pa.int32()
        assert e.slice(0, 0).select(t.column_names).schema == t.schema
    # The same workflow run by plain snakemake gives byte-identical skeleton and enriched files.
    run(SNAKEMAKE + ["--cores", "2"], other)
    for sub in ("data/training_output", "data/training_output_enriched"):
        assert data_files(project / sub) == data_files(other / sub)
    # A second run does nothing.
    res = train(project)
    assert "nothing to do" in res.stderr

    # Rebuilding one skeleton day reruns that day's enrich job and no other.
    def mtimes():
        return {d: max(p.stat().st_mtime_ns for p in (enr / f"dt={d}").glob("*.parquet")) for d in DAYS}

    before = mtimes()
    feed = project / "data/demo/sources/feed/dt=2026-04-03/part-0.parquet"
    t = pq.read_table(feed)
    pq.write_table(t.slice(0, t.num_rows - 1), feed, compression="zstd")
    train(project)
    after = mtimes()
    assert {d for d in DAYS if before[d] != after[d]} == {"2026-04-03"}
