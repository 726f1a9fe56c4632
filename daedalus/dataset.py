"""Trainers open an output root directly: pyarrow, Ray Data, PyTorch and learning-to-rank views.

    ts = open_training_set("data/training_output_enriched", start="2026-05-01", end="2026-05-07",
                           columns=["qid", "clicked", "artwork_stats__like_rate", "artwork_emb"])
    ts.to_pyarrow()                  # a pyarrow.dataset.Dataset (hive partition field `dt`)
    ts.to_ray()                      # a ray.data.Dataset over the same files, in the same order
    ts.to_torch(batch_size=256)      # a torch IterableDataset: day order, every row once per epoch
    ts.qid_batches("clicked")        # RankingBatch(features, labels, group, qid), qids never split
    ts.ranking_data("clicked")       # all of it as one RankingBatch (LightGBM / XGBoost rankers)

What a reader sees (docs/training.md says it for users):

* A root is a skeleton root (`<root>/dt=D/part-N-0.parquet`) or an enriched one
  (`<root>_enriched/dt=D/*.parquet`); both keep their published records under the skeleton
  root's `.daedalus/published/{skeleton,enrich}/`. Only *published* days are read: a `dt=D`
  directory whose record is there and matches it. Hidden and `_` entries, `qid_map.parquet`
  and the `.daedalus/` folder are never data.
* Row order is the contract's: days in increasing order; inside a day the skeleton's parts
  in increasing N (`part-10-0` after `part-9-0`) or the enriched shards in name order, rows
  in file order (event_timestamp, ties in source order).
* The split of `iter_shard` / `to_torch`: the range's rows, in that order, are numbered
  0..n-1 and cut into `world_size * num_workers` contiguous ranges of sizes that differ by
  at most one (`shard_range`); DDP rank r, DataLoader worker w reads range
  `r * num_workers + w`. Every row is read exactly once per epoch, whatever the files' sizes.
* qid groups: a feed session crossing midnight has one qid with rows in two days, so
  `qid_batches` groups by qid over the whole range, not per day: a group is emitted once the
  last day holding its qid (found by a first pass over the qid column only) has been read,
  groups in the order of their first row, rows inside a group in row order. Rows with a null
  qid belong to no query and are left out.

Only pyarrow (and numpy, which it needs) is imported here; ray, torch and lightgbm are
imported by the functions that use them.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from daedalus.errors import DaedalusError
from daedalus.layout import Layout
from daedalus.timeutil import parse_month_or_day

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "DayFile",
    "RankingBatch",
    "TrainingSet",
    "file_slices",
    "open_training_set",
    "shard_range",
    "to_tensors",
]

DT = "dt"
DT_TYPE = pa.date32()
ENRICHED_SUFFIX = "_enriched"
DEFAULT_BATCH_ROWS = 65_536
_DAY_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
_PART = re.compile(r"^part-(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True)
class DayFile:
    """One data file of a published day."""

    day: str  # YYYY-MM-DD
    path: str  # as the root was given (relative paths stay relative to the working directory)
    num_rows: int


# -- opening -------------------------------------------------------------------------------


def open_training_set(
    root: str | Path,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    columns: Sequence[str] | None = None,
    *,
    require_published: bool = True,
) -> TrainingSet:
    """Open a skeleton or enriched output root for training.

    `start`/`end` (inclusive; `YYYY-MM-DD`, `YYYY-MM` = the month's first/last day, or a date)
    narrow the days; `columns` selects columns (file columns, or `dt`), in the order given;
    None means every file column, then `dt`. Only published days are read (`require_published=False` reads
    every `dt=D` directory, for a copy of the data without its `.daedalus/` folder).

    Raises DaedalusError (one line: the path or argument, and the value) for a root that does
    not exist or is no output root, a bad date, a range with no published day, an unknown
    column, or days whose files are unreadable or disagree on the schema.
    """
    root_s = str(root).rstrip("/") or "."
    root_p = Path(root_s)
    if not root_p.is_dir():
        raise DaedalusError(root_s, "no such output root (expected a directory of dt=YYYY-MM-DD/ days)")
    stage, layout = _stage_of(root_s)
    if layout is None and require_published:
        raise DaedalusError(
            root_s,
            f"no published records ({root_s}/.daedalus/published/, or for an enriched root "
            f"<root>/.daedalus/ beside it): not a Daedalus output root? "
            f"(require_published=False reads every dt= directory)",
        )
    lo = _parse_day("start", start, end=False)
    hi = _parse_day("end", end, end=True)
    if lo is not None and hi is not None and lo > hi:
        raise DaedalusError("start", f"{lo.isoformat()} is after end {hi.isoformat()}")

    present = sorted(m.group(1) for p in root_p.iterdir() if p.is_dir() and (m := _DAY_DIR.match(p.name)))
    in_range = [d for d in present if (lo is None or d >= lo.isoformat()) and (hi is None or d <= hi.isoformat())]
    days, unpublished = [], []
    for d in in_range:
        if layout is None or layout.published(stage, d):
            days.append(d)
        else:
            unpublished.append(d)
    rng = f"{lo.isoformat() if lo else '...'}..{hi.isoformat() if hi else '...'}"
    if not days:
        extra = f" ({len(unpublished)} day directories there are not published)" if unpublished else ""
        raise DaedalusError(root_s, f"no published day in {rng}{extra}")
    if unpublished:
        shown = ", ".join(unpublished[:5]) + (" ..." if len(unpublished) > 5 else "")
        warnings.warn(
            f"{root_s}: skipping {len(unpublished)} day(s) that are not published: {shown} "
            "(a run in progress or interrupted, or a day edited by hand)",
            stacklevel=2,
        )

    files: list[DayFile] = []
    schema: pa.Schema | None = None
    first = ""
    for d in days:
        day_dir = root_p / f"dt={d}"
        names = [n.name for n in day_dir.iterdir() if n.name.endswith(".parquet") and n.name[0] not in "._"]
        for name in sorted(names, key=_part_key if stage == "skeleton" else str):
            path = f"{root_s}/dt={d}/{name}"
            try:
                meta = pq.read_metadata(path)
                file_schema = meta.schema.to_arrow_schema().remove_metadata()
            except (OSError, pa.ArrowException) as e:
                raise DaedalusError(path, f"unreadable parquet: {e}") from None
            if schema is None:
                schema, first = file_schema, path
            elif not file_schema.equals(schema):
                raise DaedalusError(path, f"schema differs from {first}: {_schema_diff(schema, file_schema)}")
            files.append(DayFile(d, path, meta.num_rows))
    if schema is None:
        raise DaedalusError(root_s, f"the published days of {rng} hold no parquet file")
    if DT in schema.names:
        raise DaedalusError(files[0].path, "has a column named dt, which is the partition field")

    if columns is None:
        selected = [*schema.names, DT]
    else:
        if isinstance(columns, str):
            raise DaedalusError("columns", f"expected a list of column names, got the string {columns!r}")
        selected = list(columns)
        known = set(schema.names) | {DT}
        for c in selected:
            if c not in known:
                raise DaedalusError("columns", f"unknown column {c!r} in {root_s} ({_names_hint(schema.names)})")
        dup = sorted({c for c in selected if selected.count(c) > 1})
        if dup:
            raise DaedalusError("columns", f"column {dup[0]!r} listed twice")
    return TrainingSet(root_s, stage, tuple(days), tuple(unpublished), tuple(files), schema, tuple(selected))


def _stage_of(root: str) -> tuple[str, Layout | None]:
    """(stage, layout holding its published records) of a root; layout None without records."""
    if Path(root, ".daedalus").is_dir():
        return "skeleton", Layout.of(root)
    name = Path(root).name
    if name.endswith(ENRICHED_SUFFIX) and len(name) > len(ENRICHED_SUFFIX):
        base = root[: -len(ENRICHED_SUFFIX)]
        if Path(base, ".daedalus").is_dir():
            return "enrich", Layout.of(base)
        return "enrich", None
    return "skeleton", None


def _parse_day(arg: str, value: str | dt.date | None, *, end: bool) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return parse_month_or_day(str(value), end=end)
    except ValueError as e:
        raise DaedalusError(arg, str(e)) from None


def _part_key(name: str) -> tuple[int, int, int, str]:
    m = _PART.match(name)
    return (0, int(m.group(1)), int(m.group(2)), name) if m else (1, 0, 0, name)


def _schema_diff(a: pa.Schema, b: pa.Schema) -> str:
    for fa, fb in zip(a, b):
        if fa.name != fb.name or not fa.type.equals(fb.type):
            return f"column {fb.name!r} {fb.type} where it has {fa.name!r} {fa.type}"
    if len(a) != len(b):
        return f"{len(b)} columns where it has {len(a)}"
    return "field metadata or nullability"


def _names_hint(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return f"columns: {shown}{', ...' if len(names) > limit else ''}, dt"


# -- the split -------------------------------------------------------------------------------


def shard_range(
    num_rows: int,
    rank: int = 0,
    world_size: int = 1,
    worker_id: int = 0,
    num_workers: int = 1,
    *,
    drop_remainder: bool = False,
) -> tuple[int, int]:
    """The rows [start, stop) of DDP rank `rank` (of `world_size`), DataLoader worker `worker_id`
    (of `num_workers`), out of `num_rows` rows numbered in day order.

    The rows are cut into S = world_size * num_workers contiguous ranges, shard
    s = rank * num_workers + worker_id getting [floor(s*n/S), floor((s+1)*n/S)): together they
    cover every row exactly once, sizes differ by at most one, and a rank's rows are one
    contiguous run in day order. `drop_remainder=True` gives every shard exactly floor(n/S)
    rows (the last n mod S rows of the range are not read), so that every DDP rank takes the
    same number of steps.
    """
    for name, v in (("world_size", world_size), ("num_workers", num_workers)):
        if not isinstance(v, int) or v < 1:
            raise DaedalusError(name, f"must be a positive integer, got {v!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise DaedalusError("rank", f"must be in 0..{world_size - 1}, got {rank!r}")
    if not isinstance(worker_id, int) or not 0 <= worker_id < num_workers:
        raise DaedalusError("worker_id", f"must be in 0..{num_workers - 1}, got {worker_id!r}")
    shards = world_size * num_workers
    s = rank * num_workers + worker_id
    if drop_remainder:
        q = num_rows // shards
        return s * q, (s + 1) * q
    return s * num_rows // shards, (s + 1) * num_rows // shards


def file_slices(file_rows: Sequence[int], start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """(file index, offset in the file, rows) of the rows [start, stop) of files laid end to end."""
    base = 0
    for i, n in enumerate(file_rows):
        lo, hi = max(start, base), min(stop, base + n)
        if lo < hi:
            yield i, lo - base, hi - lo
        base += n
        if base >= stop:
            return


def _rebatch(tables: Iterable[pa.Table], batch_size: int, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly batch_size rows (the last one smaller) from consecutive tables."""
    buf: list[pa.Table] = []
    n = 0
    for t in tables:
        if t.num_rows == 0:
            continue
        buf.append(t)
        n += t.num_rows
        while n >= batch_size:
            whole = pa.concat_tables(buf)
            yield _one_batch(whole.slice(0, batch_size), schema)
            rest = whole.slice(batch_size)
            buf, n = ([rest] if rest.num_rows else []), rest.num_rows
    if n:
        yield _one_batch(pa.concat_tables(buf), schema)


def _one_batch(t: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    batches = t.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)


# -- the training set ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSet:
    """The published days of one output root in a date range, and a column selection."""

    root: str
    stage: str  # "skeleton" or "enrich"
    days: tuple[str, ...]  # the published days read, increasing
    unpublished_days: tuple[str, ...]  # day directories in range that were skipped
    files: tuple[DayFile, ...]  # in row order
    file_schema: pa.Schema  # every column of the files (without dt)
    columns: tuple[str, ...]  # the selection, in order; may hold "dt"

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)

    @property
    def schema(self) -> pa.Schema:
        """The selected columns' schema (`dt` as date32 where selected)."""
        return pa.schema([self._field(c) for c in self.columns])

    def _field(self, name: str) -> pa.Field:
        return pa.field(DT, DT_TYPE) if name == DT else self.file_schema.field(name)

    def numeric_columns(self) -> list[str]:
        """The selected integer, float and bool columns (what `RankingBatch.feature_matrix` takes)."""
        return [c for c in self.columns if _is_numeric(self._field(c).type)]

    def __repr__(self) -> str:
        span = f"{self.days[0]}..{self.days[-1]}"
        return f"TrainingSet({self.root!r}, {len(self.days)} days {span}, {self.num_rows} rows, {len(self.columns)} columns)"

    # pyarrow / Ray

    def to_pyarrow(self) -> pads.FileSystemDataset:
        """A pyarrow dataset over the files with the selected columns; `dt` (date32) is the hive
        partition field (the last column when no selection was given). Filter days with
        `ds.field("dt") >= datetime.date(...)`; `to_table()` keeps the row order."""
        part = pads.partitioning(pa.schema([pa.field(DT, DT_TYPE)]), flavor="hive")
        return pads.dataset(
            [f.path for f in self.files],
            format="parquet",
            partitioning=part,
            partition_base_dir=self.root,
            schema=self.schema,
        )

    def to_ray(self, *, override_num_blocks: int | None = None) -> ray.data.Dataset:
        """A Ray Dataset (for Ray Train's `datasets=`) over the same files, with the same columns
        and types as `to_pyarrow()` (`dt` date32), in the same row order (the dataset's
        `preserve_order` is on). Ray is started by Ray Data on first use if it is not already."""
        import ray.data
        from ray.data.datasource.partitioning import Partitioning, PartitionStyle

        target = self.schema
        # Absolute paths: Ray's workers (on other nodes too) need not share our working directory.
        ds = ray.data.read_parquet(
            [str(Path(f.path).resolve()) for f in self.files],
            partitioning=Partitioning(
                PartitionStyle.HIVE, base_dir=str(Path(self.root).resolve()), field_types={DT: str}
            ),
            shuffle=None,
            override_num_blocks=override_num_blocks,
        )
        if target.names != self.file_schema.names + [DT]:
            ds = ds.select_columns(target.names)
        ds = ds.map_batches(_RayConform(target), batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
        ds.context.execution_options.preserve_order = True
        return ds

    # streaming

    def iter_batches(self, batch_size: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Every row of the set, in day order, as record batches of the selected columns."""
        return self.iter_shard(0, 1, 0, 1, batch_size=batch_size)

    def iter_shard(
        self,
        rank: int,
        world_size: int,
        worker_id: int = 0,
        num_workers: int = 1,
        *,
        batch_size: int = DEFAULT_BATCH_ROWS,
        drop_remainder: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """The rows of one shard (see `shard_range`), in day order, as record batches of
        `batch_size` rows (the last one smaller; batches may span days)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DaedalusError("batch_size", f"must be a positive integer, got {batch_size!r}")
        start, stop = shard_range(
            self.num_rows, rank, world_size, worker_id, num_workers, drop_remainder=drop_remainder
        )
        return _rebatch(self._read_range(start, stop), batch_size, self.schema)

    def _read_range(self, start: int, stop: int, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        cols = list(self.columns if columns is None else columns)
        for i, offset, length in file_slices([f.num_rows for f in self.files], start, stop):
            yield self._read_file(self.files[i], cols, offset, length)

    def _read_file(self, f: DayFile, cols: list[str], offset: int = 0, length: int | None = None) -> pa.Table:
        file_cols = [c for c in cols if c != DT]
        if length is None:
            length = f.num_rows - offset
        pf = pq.ParquetFile(f.path)
        pieces = []
        base = 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            lo, hi = max(offset, base), min(offset + length, base + n)
            if lo < hi:
                t = pf.read_row_group(g, columns=file_cols)
                pieces.append(t.slice(lo - base, hi - lo))
            base += n
        schema = pa.schema([self.file_schema.field(c) for c in file_cols])
        t = pa.concat_tables(pieces).select(file_cols) if pieces else schema.empty_table()
        if DT in cols:
            day = pa.array([dt.date.fromisoformat(f.day)] * t.num_rows, DT_TYPE)
            t = t.add_column(cols.index(DT), pa.field(DT, DT_TYPE), day)
        return t

    def to_torch(
        self,
        batch_size: int | None = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        drop_remainder: bool = False,
        transform: Callable[[pa.RecordBatch], Any] | None = None,
    ) -> Any:
        """A `torch.utils.data.IterableDataset` over the set (needs the `torch` extra).

        Each iterator reads its shard (`shard_range`): the DDP rank and world size are
        `rank`/`world_size` when given, else torch.distributed's when it is initialised, else
        0 of 1; the DataLoader worker comes from `torch.utils.data.get_worker_info()`. Rows come
        in day order. With `batch_size` it yields one batch per `batch_size` rows (use
        `DataLoader(ds, batch_size=None)`): `transform(record_batch)` or by default
        `to_tensors(record_batch)`. Without it, it yields one row at a time, a dict of the
        default conversion's values, for DataLoader's own batching.
        """
        import torch.utils.data  # noqa: F401  (fails early, with torch's message, without the extra)

        if (rank is None) != (world_size is None):
            raise DaedalusError("rank" if rank is None else "world_size", "give both rank and world_size, or neither")
        if rank is not None and world_size is not None:
            shard_range(0, rank, world_size)  # checks them
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise DaedalusError("batch_size", f"must be a positive integer or None, got {batch_size!r}")
        return _make_torch_dataset(_TorchSpec(self, batch_size, rank, world_size, drop_remainder, transform))

    # learning to rank

    def qid_batches(
        self,
        label: str,
        *,
        features: Sequence[str] | None = None,
        max_rows: int = DEFAULT_BATCH_ROWS,
        qid: str = "qid",
    ) -> Iterator[RankingBatch]:
        """Batches of whole query groups for learning to rank.

        Each batch holds whole qids only, each qid's rows contiguous and in row order, groups
        in the order of their first row; `group` gives their sizes (the `group=` of LightGBM's
        and XGBoost's rankers). A batch has at most `max_rows` rows unless one group alone is
        larger (then it is a batch of its own). A qid with rows in several days (a session
        across midnight) is one group. Rows whose qid is null are left out. `features` default
        to the selected columns other than `qid` and `label`.
        """
        feats = self._ranking_columns(label, features, qid)
        if not isinstance(max_rows, int) or max_rows < 1:
            raise DaedalusError("max_rows", f"must be a positive integer, got {max_rows!r}")
        return _batch_groups(self._qid_groups(label, feats, qid), feats, label, qid, max_rows)

    def ranking_data(self, label: str, *, features: Sequence[str] | None = None, qid: str = "qid") -> RankingBatch:
        """The whole set as one RankingBatch (what `LGBMRanker.fit(X, y, group=...)` takes)."""
        feats = self._ranking_columns(label, features, qid)
        batches = list(_batch_groups(self._qid_groups(label, feats, qid), feats, label, qid, sys.maxsize))
        if batches:
            return batches[0]
        return _ranking_batch(self._empty(feats, label, qid), np.zeros(0, np.int64), feats, label, qid)

    def _empty(self, feats: list[str], label: str, qid: str) -> pa.Table:
        return pa.schema([self._field(c) for c in _unique([*feats, label, qid])]).empty_table()

    def _ranking_columns(self, label: str, features: Sequence[str] | None, qid: str) -> list[str]:
        known = set(self.file_schema.names)
        for arg, name in (("qid", qid), ("label", label)):
            if name not in known:
                raise DaedalusError(
                    arg, f"unknown column {name!r} in {self.root} ({_names_hint(self.file_schema.names)})"
                )
        if not pa.types.is_integer(self._field(qid).type):
            raise DaedalusError("qid", f"column {qid!r} is {self._field(qid).type}, not an integer")
        if not _is_numeric(self._field(label).type):
            raise DaedalusError("label", f"column {label!r} is {self._field(label).type}, not a number or bool")
        if features is None:
            return [c for c in self.columns if c not in (qid, label)]
        if isinstance(features, str):
            raise DaedalusError("features", f"expected a list of column names, got the string {features!r}")
        feats = list(features)
        for c in feats:
            if c not in known and c != DT:
                raise DaedalusError(
                    "features", f"unknown column {c!r} in {self.root} ({_names_hint(self.file_schema.names)})"
                )
            if c in (qid, label):
                raise DaedalusError("features", f"{c!r} is the {'qid' if c == qid else 'label'} column")
        return feats

    def _qid_groups(self, label: str, feats: list[str], qid: str) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(rows, group sizes) of the groups that are complete after each file, in order."""
        # First pass, the qid column only: the last file holding each qid.
        per_file = [self._read_file(f, [qid])[qid] for f in self.files]
        allq = np.concatenate([c.drop_null().to_numpy() for c in per_file]) if per_file else np.zeros(0, np.int64)
        allf = np.concatenate([np.full(len(c) - c.null_count, i, np.int64) for i, c in enumerate(per_file)])
        uq, inv = np.unique(allq, return_inverse=True)
        last = np.full(len(uq), -1, np.int64)
        np.maximum.at(last, inv, allf)
        del per_file, allq, allf, inv

        cols = _unique([*feats, label, qid])
        held: pa.Table = self._empty(feats, label, qid).select(cols)
        for i, f in enumerate(self.files):
            t = self._read_file(f, cols)
            if t[label].null_count:
                raise DaedalusError(f.path, f"label column {label!r} has {t[label].null_count} null values")
            t = t.filter(pc.is_valid(t[qid]))
            t = pa.concat_tables([held, t]) if held.num_rows else t
            if t.num_rows == 0:
                continue
            q = t[qid].to_numpy()
            done = last[np.searchsorted(uq, q)] <= i
            _, first_idx, ginv = np.unique(q, return_index=True, return_inverse=True)
            row_first = first_idx[ginv]
            barrier = row_first[~done].min() if not done.all() else t.num_rows
            emit = done & (row_first < barrier)
            idx = np.nonzero(emit)[0]
            if len(idx):
                order = idx[np.argsort(row_first[idx], kind="stable")]
                sizes = np.unique(row_first[order], return_counts=True)[1].astype(np.int64)
                yield t.take(order), sizes
            held = t.take(np.nonzero(~emit)[0])
        assert held.num_rows == 0, "every qid's last file was read"


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


class _RayConform:
    """Ray reads `dt` as a string partition column: make each block match to_pyarrow()'s schema."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def __call__(self, batch: pa.Table) -> pa.Table:
        cols = []
        for field in self.schema:
            col = batch[field.name]
            cols.append(col.cast(field.type) if not col.type.equals(field.type) else col)
        return pa.Table.from_arrays(cols, schema=self.schema)


# -- ranking batches ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankingBatch:
    """Whole query groups: `features` (a table), `labels`, `group` (sizes, in row order), `qid`
    (one per row). Rows of a group are contiguous; `group.sum() == len(labels)`."""

    features: pa.Table
    labels: np.ndarray  # the label column as numpy (bool as int32 0/1)
    group: np.ndarray  # int64 group sizes
    qid: np.ndarray  # int64, one per row

    @property
    def num_rows(self) -> int:
        return len(self.labels)

    def feature_matrix(self, columns: Sequence[str] | None = None, dtype: Any = np.float32) -> np.ndarray:
        """The feature columns (all, or `columns` in that order) as a (rows, columns) float
        matrix, nulls as NaN, bool as 0/1; each must be an integer, float or bool column."""
        names = list(self.features.column_names if columns is None else columns)
        out = np.empty((self.features.num_rows, len(names)), dtype=dtype)
        for j, name in enumerate(names):
            if name not in self.features.column_names:
                raise DaedalusError("columns", f"{name!r} is not a feature of this batch")
            col = self.features[name]
            if not _is_numeric(col.type):
                raise DaedalusError("features", f"column {name!r} is {col.type}, not a number or bool")
            out[:, j] = col.cast(pa.float64()).to_numpy()
        return out


def _ranking_batch(t: pa.Table, sizes: np.ndarray, feats: list[str], label: str, qid: str) -> RankingBatch:
    lab = t[label]
    if pa.types.is_boolean(lab.type):
        lab = lab.cast(pa.int32())
    return RankingBatch(t.select(feats), lab.to_numpy(), sizes, t[qid].to_numpy().astype(np.int64, copy=False))


def _batch_groups(
    chunks: Iterable[tuple[pa.Table, np.ndarray]], feats: list[str], label: str, qid: str, max_rows: int
) -> Iterator[RankingBatch]:
    cur: list[pa.Table] = []
    cur_sizes: list[np.ndarray] = []
    cur_rows = 0

    def flush() -> RankingBatch:
        nonlocal cur, cur_sizes, cur_rows
        b = _ranking_batch(pa.concat_tables(cur), np.concatenate(cur_sizes), feats, label, qid)
        cur, cur_sizes, cur_rows = [], [], 0
        return b

    for t, sizes in chunks:
        ends = np.cumsum(sizes)
        g, row = 0, 0  # next group of this chunk and its first row
        while g < len(sizes):
            # as many whole groups as fit beside what the batch already holds
            fit = int(np.searchsorted(ends, row + max_rows - cur_rows, side="right")) - g
            if fit <= 0:
                if cur_rows:
                    yield flush()
                    continue
                fit = 1  # one group larger than max_rows: a batch of its own
            stop = int(ends[g + fit - 1])
            cur.append(t.slice(row, stop - row))
            cur_sizes.append(sizes[g : g + fit])
            cur_rows += stop - row
            g, row = g + fit, stop
            if cur_rows >= max_rows:
                yield flush()
    if cur_rows:
        yield flush()


# -- torch ------------------------------------------------------------------------------------------


def to_tensors(batch: pa.RecordBatch | pa.Table) -> dict[str, Any]:
    """The default conversion of a record batch for torch: column name -> value.

    bool -> torch.bool (null: False); integers -> torch.int64 (null: 0); float32/float64 ->
    the same float type (null: NaN); timestamps -> int64 microseconds since the epoch (UTC);
    dates (`dt`) -> int64 days since the epoch; fixed-size lists of numbers (embeddings) ->
    a 2-D float tensor; everything else (strings, variable-length lists) -> a Python list.
    Nulls are filled as said; pass `transform=` to `to_torch` to treat them otherwise.
    """
    import torch

    out: dict[str, Any] = {}
    for name, col in zip(batch.schema.names, batch.columns):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        t = arr.type
        if pa.types.is_boolean(t):
            out[name] = torch.from_numpy(_np(arr.fill_null(False)))
        elif pa.types.is_integer(t):
            out[name] = torch.from_numpy(_np(arr.fill_null(0).cast(pa.int64())))
        elif pa.types.is_floating(t):
            arr = arr.cast(pa.float32()) if pa.types.is_float16(t) else arr
            out[name] = torch.from_numpy(_np(arr))
        elif pa.types.is_timestamp(t):
            out[name] = torch.from_numpy(_np(arr.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64()).fill_null(0)))
        elif pa.types.is_date(t):
            out[name] = torch.from_numpy(_np(arr.cast(pa.date32()).cast(pa.int32()).cast(pa.int64()).fill_null(0)))
        elif pa.types.is_fixed_size_list(t) and _is_numeric(t.value_type):
            width = t.list_size
            values = arr.values.slice(arr.offset * width, len(arr) * width)
            mat = _np(values.cast(pa.float32()) if not pa.types.is_floating(t.value_type) else values)
            mat = mat.reshape(len(arr), width)
            if arr.null_count:
                mat = mat.astype(mat.dtype, copy=True)
                mat[_np(arr.is_null())] = np.nan
            out[name] = torch.from_numpy(mat)
        else:
            out[name] = arr.to_pylist()
    return out


def _np(arr: pa.Array) -> np.ndarray:
    a = arr.to_numpy(zero_copy_only=False)
    return a if a.flags.writeable else a.copy()


@dataclass(frozen=True)
class _TorchSpec:
    ts: TrainingSet
    batch_size: int | None
    rank: int | None
    world_size: int | None
    drop_remainder: bool
    transform: Callable[[pa.RecordBatch], Any] | None

    def iterate(self) -> Iterator[Any]:
        import torch.utils.data

        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            import torch.distributed as tdist

            if tdist.is_available() and tdist.is_initialized():
                rank, world = tdist.get_rank(), tdist.get_world_size()
            else:
                rank, world = 0, 1
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        convert = self.transform or to_tensors
        shard = self.ts.iter_shard(
            rank, world, wid, nw, batch_size=self.batch_size or 4096, drop_remainder=self.drop_remainder
        )
        for b in shard:
            x = convert(b)
            if self.batch_size is not None:
                yield x
            else:
                for i in range(b.num_rows):
                    yield {k: v[i] for k, v in x.items()}


_torch_class: Any = None


def _make_torch_dataset(spec: _TorchSpec) -> Any:
    """The IterableDataset; made on first use, so that torch is imported only then. It pickles
    as a call of this function (DataLoader workers started with spawn unpickle it)."""
    global _torch_class
    if _torch_class is None:
        from torch.utils.data import IterableDataset

        class TorchTrainingSet(IterableDataset):
            """A daedalus TrainingSet as a torch IterableDataset (see TrainingSet.to_torch)."""

            def __init__(self, spec: _TorchSpec) -> None:
                super().__init__()
                self.spec = spec

            def __iter__(self) -> Iterator[Any]:
                return self.spec.iterate()

            def __reduce__(self) -> tuple[Any, ...]:
                return (_make_torch_dataset, (self.spec,))

            def __repr__(self) -> str:
                return f"TorchTrainingSet({self.spec.ts!r}, batch_size={self.spec.batch_size})"

        _torch_class = TorchTrainingSet
    return _torch_class(spec)
