"""The enrich stage: a day's skeleton parts + the embedding store -> enriched Zstd shards.

A Ray Data streaming pipeline, one per day:

    read_parquet(the day's parts, in increasing N, preserve_order)
      -> map_batches(_Enricher, ActorPoolStrategy(size=1)): one actor holding the store at
         the version pinned on the driver appends `<name>`, `<name>_count` to each batch
      -> iter_batches() on the driver -> ShardWriter: exactly `shard_rows` rows per shard,
         `part-00000.parquet`, `part-00001.parquet`, ... (Zstd), into a hidden temp dir
      -> the temp dir is renamed into place (the day is complete or absent, never partial).

The store is loaded once, on the driver, in a thread while Ray Data plans the read, and
handed to the actor through the object store (zero-copy); a store bigger than
SHARE_STORE_FRACTION of the object store is loaded by the actor itself instead.

Ray's own `write_parquet` is not used: it may reorder rows inside files and names files
differently on every run. Writing from the driver, from an order-preserving stream, one
single-chunk table per shard, gives byte-identical files on every rerun.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from daedalus.atomic import publish_dir, remove_stale_temps, temp_sibling
from daedalus.enrich.pooling import EmbeddingSpec, enrich_table, ids_kind, output_fields
from daedalus.enrich.store import EmbeddingStore, StoreRef, load_cached, pin_store
from daedalus.errors import DaedalusError
from daedalus.quality import EnrichStats

log = logging.getLogger("daedalus.enrich")

_PART = re.compile(r"part-(\d+)-(\d+)\.parquet")
SHARD_DIGITS = 5  # part-00000.parquet; more digits only when a day has >= 100000 shards
# Share the loaded store through the object store when it takes at most this much of it.
SHARE_STORE_FRACTION = 0.4


# -- Ray lifecycle ------------------------------------------------------------------------


def _quiet_ray_env() -> None:
    # lance warns at every fork (ray.init starts its processes with fork+exec).
    warnings.filterwarnings("ignore", message=r"lance is not fork-safe")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ray 2.60 turns token auth on for local clusters and says so with a WARNING on every
    # init; keep the (default) auth, drop the line. (Setting RAY_AUTH_MODE here instead
    # would break a process that imported ray before: Ray caches the mode at import.)
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)


def _quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.execution_options.verbose_progress = False
    for name in ("ray", "ray.data", "ray._private"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # "Progress bars disabled ..." is a WARNING: we disabled them on purpose.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated")  # max_restarts=0 below


def default_object_store_memory() -> int:
    """min(2 GB, 20% of RAM): /dev/shm may be small and Ray's default (30%) is greedy."""
    try:
        import psutil

        total = psutil.virtual_memory().total
    except Exception:  # pragma: no cover
        total = 8 << 30
    return int(max(256 << 20, min(2 << 30, total // 5)))


def ensure_ray(address: str | None = None, num_cpus: int | None = None, object_store_memory: int | None = None) -> str:
    """Make sure this process is connected to Ray; returns how: "reused", "attached", "started".

    * already initialised (e.g. by the caller or a test fixture): reused as is;
    * `address` or env `RAY_ADDRESS` set: attach to that cluster (`ray.init(address=...)`);
    * otherwise: start a local Ray in this process with `num_cpus` logical CPUs (default:
      all cores), `object_store_memory` bytes (default min(2 GB, 20% RAM)), no dashboard,
      and quiet logs (`log_to_driver=False`, WARNING level, no Ray Data progress bars).

    `num_cpus` and `object_store_memory` only matter when a local Ray is started.
    """
    _quiet_ray_env()
    import ray

    if ray.is_initialized():
        _quiet_ray_data()
        return "reused"
    address = address or os.environ.get("RAY_ADDRESS") or None
    common: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        _token_auth_for_attach()
        ray.init(address=address, **common)
        how = "attached"
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            object_store_memory=object_store_memory or default_object_store_memory(),
            include_dashboard=False,
            **common,
        )
        how = "started"
    _quiet_ray_data()
    return how


def _token_auth_for_attach() -> None:
    """Use Ray's token auth to attach when the user did not choose a mode and a token exists.

    Ray 2.60 enables token auth on local clusters (and on `ray start --head` when a token
    exists, which `start_local_head` ensures), but a driver given an explicit address only
    uses it when RAY_AUTH_MODE=token. Ray applies this very rule itself for address="auto";
    we apply it to explicit addresses too. (A token sent to a cluster without auth is
    ignored.)
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: it has its own rules
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


# -- the actor ----------------------------------------------------------------------------


class _Enricher:
    """Ray Data actor: gets the store once (at the pinned version), then pools per batch.

    `store` is either an ObjectRef of an `EmbeddingStore` that the driver loaded and put in
    the object store (the actor maps it zero-copy: no load, no private copy), or a
    `StoreRef` dict, and the actor loads that version itself (used when the store is too
    big for the object store).
    """

    def __init__(self, store, specs: list[tuple[str, str]]) -> None:
        if isinstance(store, dict):
            self.store = EmbeddingStore.load(StoreRef(**store))
        else:
            import ray

            self.store = ray.get(store[0])  # a list: Ray does not resolve nested refs
        self.specs = [EmbeddingSpec(n, c) for n, c in specs]

    def __call__(self, batch: pa.Table) -> pa.Table:
        return enrich_table(batch, self.store, self.specs)


# -- the writer ---------------------------------------------------------------------------


class ShardWriter:
    """Cuts a stream of tables into shards of exactly `shard_rows` rows (the last: the rest).

    Each shard is written as one single-chunk table with one `write_table` call, so its bytes
    depend only on its rows, never on how the stream was batched.
    """

    def __init__(self, directory: Path, schema: pa.Schema, shard_rows: int, digits: int = SHARD_DIGITS) -> None:
        if shard_rows < 1:
            raise ValueError("shard_rows must be at least 1")
        self.directory = directory
        self.schema = schema
        self.shard_rows = shard_rows
        self.digits = digits
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.shards = 0
        self.rows = 0

    def _conform(self, t: pa.Table) -> pa.Table:
        if t.column_names != self.schema.names:
            t = t.select(self.schema.names)
        if not t.schema.equals(self.schema, check_metadata=False):
            t = t.cast(self.schema)
        for i, field in enumerate(self.schema):
            # Parquet readers name a map's entries after the column; Arrow's equality ignores
            # the name but the file stores it, so one name keeps the bytes path-independent.
            if pa.types.is_map(field.type) and t.schema.field(i).type.field(0).name != field.type.field(0).name:
                t = t.set_column(i, field, t.column(i).combine_chunks().view(field.type))
        return t.replace_schema_metadata(self.schema.metadata)

    def add(self, t: pa.Table | pa.RecordBatch) -> None:
        if isinstance(t, pa.RecordBatch):
            t = pa.Table.from_batches([t])
        if t.num_rows == 0:
            return
        t = self._conform(t)
        self.pending.append(t)
        self.pending_rows += t.num_rows
        while self.pending_rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def close(self) -> int:
        """Write the rest (or one zero-row shard when nothing was written); returns shards."""
        if self.pending_rows or self.shards == 0:
            self._flush(self.pending_rows)
        return self.shards

    def shard_name(self, i: int) -> str:
        return f"part-{i:0{self.digits}d}.parquet"

    def _flush(self, n: int) -> None:
        taken, rest, got = [], [], 0
        for t in self.pending:
            if got >= n:
                rest.append(t)
            elif got + t.num_rows <= n:
                taken.append(t)
                got += t.num_rows
            else:
                k = n - got
                taken.append(t.slice(0, k))
                rest.append(t.slice(k))
                got = n
        self.pending, self.pending_rows = rest, self.pending_rows - n
        table = pa.concat_tables(taken) if taken else self.schema.empty_table()
        table = table.combine_chunks()
        self.write(table, self.directory / self.shard_name(self.shards))
        self.shards += 1
        self.rows += n

    def write(self, table: pa.Table, path: Path) -> None:
        pq.write_table(table, path, compression="zstd")


# -- the stage ----------------------------------------------------------------------------


def skeleton_parts(day_dir: Path) -> list[Path]:
    """The day's skeleton parts `part-N-0.parquet`, ordered by the integer N."""
    if not day_dir.is_dir():
        raise DaedalusError(day_dir, "skeleton day directory not found")
    parts = []
    for p in day_dir.iterdir():
        m = _PART.fullmatch(p.name)
        if m:
            parts.append(((int(m.group(1)), int(m.group(2))), p))
    if not parts:
        raise DaedalusError(day_dir, "no skeleton parts (part-N-0.parquet) in the day directory")
    return [p for _, p in sorted(parts)]


def _skeleton_schema(parts: list[Path]) -> tuple[pa.Schema, int]:
    schema, rows = None, 0
    for p in parts:
        try:
            f = pq.ParquetFile(p)
        except Exception as e:
            raise DaedalusError(
                p, f"unreadable parquet: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            ) from None
        s = f.schema_arrow.remove_metadata()
        rows += f.metadata.num_rows
        if schema is None:
            schema = s
        elif not s.equals(schema):
            raise DaedalusError(p, f"schema differs from {parts[0].name}")
    return schema, rows


def plan_output_schema(skeleton_schema: pa.Schema, specs: list[EmbeddingSpec], dim: int, where: Path) -> pa.Schema:
    """Skeleton columns unchanged, then `<name>`, `<name>_count` per embedding in order."""
    seen = set(skeleton_schema.names)
    for s in specs:
        if s.ids not in skeleton_schema.names:
            raise DaedalusError(where, f"embedding {s.name!r}: ids column {s.ids!r} not in the skeleton output")
        t = skeleton_schema.field(s.ids).type
        if ids_kind(t) is None:
            raise DaedalusError(
                where,
                f"embedding {s.name!r}: ids column {s.ids!r} has type {t}, expected an integer or a list of integers",
            )
        for out in (s.name, f"{s.name}_count"):
            if out in seen:
                raise DaedalusError(where, f"embedding {s.name!r}: output column {out!r} already exists")
            seen.add(out)
    return pa.schema(list(skeleton_schema) + output_fields(specs, dim))


def run_enrich_stage(
    skeleton_day_dir: Path,
    out_day_dir: Path,
    *,
    store_uri: str,
    key: str,
    vector: str,
    embeddings: list[tuple[str, str]],
    shard_rows: int,
    batch_rows: int = 131072,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    store_version: int | None = None,
    actor_num_cpus: float = 1.0,
    object_store_memory: int | None = None,
    stats_path: Path | None = None,
    direct_max_rows: int = -1,
) -> dict:
    """Enrich one day; returns a summary dict.

    Summary keys: rows, shards, seconds, ray_init_seconds, store_uri, store_version, dim,
    ray (how `ensure_ray` connected: "started", "attached", "reused"; "skipped" for a
    zero-row day, which needs no Ray; "direct" for a day of at most `direct_max_rows` rows,
    pooled in this process without Ray Data: the same batches through the same pooling and
    the same shard writer, so the same bytes, without Ray's seconds of fixed cost).

    Validation errors (missing store, bad store types, missing/ill-typed ids column, no
    skeleton parts) raise `DaedalusError` before anything is written. A Ray started by this
    call (or a connection it opened) is shut down before returning; a Ray already initialised
    in the process is reused and left running (call `ensure_ray` first to keep one Ray
    across many days in one process).
    """
    t0 = time.perf_counter()
    skeleton_day_dir, out_day_dir = Path(skeleton_day_dir), Path(out_day_dir)
    specs = [EmbeddingSpec(n, c) for n, c in embeddings]
    if shard_rows < 1 or batch_rows < 1:
        raise DaedalusError("enrich", f"shard_rows and batch_rows must be >= 1 (got {shard_rows}, {batch_rows})")
    parts = skeleton_parts(skeleton_day_dir)
    skel_schema, total_rows = _skeleton_schema(parts)
    tp = time.perf_counter()
    ref = pin_store(store_uri, key, vector, version=store_version)
    pin_s = time.perf_counter() - tp
    schema = plan_output_schema(skel_schema, specs, ref.dim, skeleton_day_dir)
    digits = max(SHARD_DIGITS, len(str(max(0, -(-total_rows // shard_rows) - 1))))

    out_day_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_day_dir.parent, out_day_dir.name)
    tmp = temp_sibling(out_day_dir)
    tmp.mkdir()
    ray_mode, init_s, first_s = "skipped", 0.0, 0.0
    try:
        writer = ShardWriter(tmp, schema, shard_rows, digits)
        stats = EnrichStats([s.name for s in specs])
        if 0 < total_rows <= direct_max_rows:
            ray_mode = "direct"
            stream = _direct_stream(parts, ref, specs, batch_rows)
        elif total_rows > 0:
            ti = time.perf_counter()
            ray_mode = ensure_ray(ray_address, num_cpus, object_store_memory)
            init_s = time.perf_counter() - ti
            stream = _stream(parts, ref, specs, batch_rows, actor_num_cpus)
        if total_rows > 0:
            tf = time.perf_counter()
            try:
                for batch in stream:
                    if not first_s:  # planning, actor start and store load (Ray), or store load
                        first_s = time.perf_counter() - tf
                    writer.add(batch)
                    stats.add(batch)
            finally:
                stream.close()  # on an error: stops the Ray Data executor and its actor now
        tw = time.perf_counter()
        shards = writer.close()
        if writer.rows != total_rows:
            raise RuntimeError(f"enrich wrote {writer.rows} rows, the skeleton has {total_rows}")
        publish_dir(tmp, out_day_dir)
        if stats_path is not None:  # data-quality sidecar (daedalus.quality)
            stats.write(Path(stats_path), out_day_dir.name.removeprefix("dt="))
        write_s = time.perf_counter() - tw
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if ray_mode in ("started", "attached"):  # ours: shut down / disconnect
            import ray

            ray.shutdown()
    return {
        "rows": total_rows,
        "shards": shards,
        "seconds": round(time.perf_counter() - t0, 3),
        "ray_init_seconds": round(init_s, 3),
        "pin_seconds": round(pin_s, 3),
        "first_batch_seconds": round(first_s, 3),
        "close_publish_seconds": round(write_s, 3),
        "ray": ray_mode,
        "store_uri": ref.uri,
        "store_version": ref.version,
        "dim": ref.dim,
    }


def _direct_stream(parts: list[Path], ref: StoreRef, specs: list[EmbeddingSpec], batch_rows: int):
    """The skeleton rows in order, `batch_rows` at a time, pooled in this process."""
    store = load_cached(ref)
    for p in parts:
        for batch in pq.ParquetFile(p).iter_batches(batch_size=batch_rows):
            yield enrich_table(pa.Table.from_batches([batch]), store, specs)


def _store_bytes(ref: StoreRef) -> int:
    return (ref.num_rows + 1) * ref.dim * 4


def _stream(parts: list[Path], ref: StoreRef, specs: list[EmbeddingSpec], batch_rows: int, actor_num_cpus: float):
    """The Ray Data pipeline; yields enriched pyarrow tables in skeleton row order."""
    import ray
    import ray.data

    total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    actor_cpus = min(float(actor_num_cpus), max(total_cpus, 0.01))
    # The store goes through the object store when it fits comfortably: the driver loads it
    # in a thread while Ray Data plans the read (which mostly waits on remote tasks), so
    # the load is off the critical path, and the actor maps it zero-copy.
    plasma = float(ray.cluster_resources().get("object_store_memory", 0))
    shared = _store_bytes(ref) <= SHARE_STORE_FRACTION * plasma
    loaded: dict = {}

    def load() -> None:
        try:
            loaded["ref"] = ray.put(EmbeddingStore.load(ref))
        except BaseException as e:  # re-raised on the main thread
            loaded["error"] = e

    loader = threading.Thread(target=load, name="enrich-store-load", daemon=True)
    if shared:
        loader.start()
    # Datasets capture (a copy of) the current DataContext when they are created: build the
    # pipeline under a context of its own, leaving the process's context as it was.
    ctx = copy.deepcopy(ray.data.DataContext.get_current())
    ctx.execution_options.preserve_order = True
    # The V1 parquet reader: same rows and order, but without the V2 reader's ListFiles
    # task, which cost 3-10 s per dataset on a loaded 2-core machine (0.3-2 s for V1).
    ctx.use_datasource_v2 = False
    try:
        with ray.data.DataContext.current(ctx):
            ds = ray.data.read_parquet(
                [str(p.resolve()) for p in parts],  # explicit list, in increasing N
                partitioning=None,  # `dt=...` in the path must not become a column
                shuffle=None,
                # Reads take no CPU slot, so they never wait for CPUs held by actors (of this
                # or of concurrent day jobs on a shared head); one read task at a time is ample.
                num_cpus=0,
                concurrency=1,
            )
    finally:
        if shared:
            loader.join()
    if "error" in loaded:
        raise loaded["error"]
    store_arg = [loaded["ref"]] if shared else asdict(ref)
    with ray.data.DataContext.current(ctx):
        ds = ds.map_batches(
            _Enricher,
            fn_constructor_kwargs={"store": store_arg, "specs": [(s.name, s.ids) for s in specs]},
            batch_size=batch_rows,
            batch_format="pyarrow",
            zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=actor_cpus,
            udf_modifying_row_count=False,
            # Fail instead of restarting the actor forever (and no "constructor arguments in
            # the object store and max_restarts > 0" error line on every run).
            max_restarts=0,
        )
    assert ds.context.execution_options.preserve_order
    batches = ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1)
    try:
        yield from batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        loaded.clear()  # drop the driver's reference: the object store frees the store
