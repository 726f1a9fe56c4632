"""Embedding pooling: the enrich stage's hot path, pure numpy over Arrow buffers.

For an embedding `(name, ids)` and a batch of skeleton rows:

* scalar `ids` column (any integer type): `<name>` is the vector of that id; zeros when the
  id is null or not in the store. `<name>_count` is 1 when found, else 0.
* list `ids` column (`list`/`large_list`/`fixed_size_list` of integers): `<name>` is the
  element-wise mean of the vectors of the elements found in the store. Elements absent
  from the store (or null) are skipped; an id listed twice counts twice. A null or empty
  list, or a list with no element found, gives zeros. `<name>_count` = elements found.

Arithmetic (the documented rounding rule): the sum is accumulated in float32, adding the
found vectors in list order starting from +0.0 (`((0 + v0) + v1) + ...`), and then divided
once, in float32, by the count. A scalar id's vector is copied bit for bit. Each row's
value depends only on that row, never on how rows are batched, so outputs are
deterministic whatever the batch size.

Vectorised: ids are mapped to matrix rows in one call per column; list means are computed
"position-major" over blocks of rows sorted by list length, so each step is one gather of
contiguous-destination rows and one contiguous add (no per-row Python loop; the Python
loop runs over blocks x list positions). Missing ids gather the store's trailing zero row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from daedalus.enrich.store import EmbeddingStore

# Rows per block of the list kernel: keeps the accumulator (rows x dim float32) cache-sized.
BLOCK_ROWS = 4096


@dataclass(frozen=True)
class EmbeddingSpec:
    name: str  # output column `<name>` (and `<name>_count`)
    ids: str  # the skeleton column holding ids (scalar or list)


def ids_kind(t: pa.DataType) -> str | None:
    """'scalar' or 'list' for a usable ids column type, else None."""
    if pa.types.is_integer(t):
        return "scalar"
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and pa.types.is_integer(
        t.value_type
    ):
        return "list"
    return None


def output_fields(specs: list[EmbeddingSpec], dim: int) -> list[pa.Field]:
    fields = []
    for s in specs:
        fields.append(pa.field(s.name, pa.list_(pa.float32(), dim)))
        fields.append(pa.field(f"{s.name}_count", pa.int32()))
    return fields


# -- kernels ------------------------------------------------------------------------------


def _int_ids(a: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """(int64 ids with nulls as 0, validity mask or None)."""
    valid = a.is_valid().to_numpy(zero_copy_only=False) if a.null_count else None
    if a.null_count:
        a = a.fill_null(0)
    v = a.to_numpy(zero_copy_only=False)
    return (v if v.dtype == np.int64 else v.astype(np.int64)), valid


def pool_scalar_chunk(arr: pa.Array, store: EmbeddingStore, out: np.ndarray, counts: np.ndarray) -> None:
    ids, valid = _int_ids(arr)
    rows = store.rows(ids)
    if valid is not None:
        rows[~valid] = store.missing_row
    np.take(store.matrix, rows, axis=0, out=out, mode="clip")  # rows are valid; "clip" avoids buffering
    np.not_equal(rows, store.missing_row, out=counts, casting="unsafe")


def pool_list_chunk(arr: pa.Array, store: EmbeddingStore, out: np.ndarray, counts: np.ndarray) -> None:
    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        offsets = (np.arange(n + 1, dtype=np.int64) + arr.offset) * size
    else:
        offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    o0, o1 = int(offsets[0]), int(offsets[-1])
    starts = offsets[:-1] - o0
    lengths = np.diff(offsets)
    if arr.null_count:  # a null list contributes nothing, whatever its offsets span
        lengths = lengths.copy()
        lengths[~arr.is_valid().to_numpy(zero_copy_only=False)] = 0
    ids, valid = _int_ids(arr.values.slice(o0, o1 - o0))
    rows = store.rows(ids)
    if valid is not None:
        rows[~valid] = store.missing_row
    found = np.empty(len(rows) + 1, dtype=np.int64)  # prefix counts of found elements
    found[0] = 0
    np.cumsum(rows != store.missing_row, out=found[1:])
    counts[:] = found[starts + lengths] - found[starts]
    matrix = store.matrix
    dim = matrix.shape[1]
    for b0 in range(0, n, BLOCK_ROWS):
        b1 = min(n, b0 + BLOCK_ROWS)
        L = lengths[b0:b1]
        order = np.argsort(-L, kind="stable")  # longest lists first
        Ls = L[order]
        maxlen = int(Ls[0]) if len(Ls) else 0
        block = out[b0:b1]
        if maxlen == 0:
            block[:] = 0.0
            continue
        S = starts[b0:b1][order]
        # active[j] = number of rows whose list has more than j elements (a prefix of `order`)
        active = len(Ls) - np.cumsum(np.bincount(Ls, minlength=maxlen + 1))[:maxlen]
        acc = np.zeros((b1 - b0, dim), dtype=np.float32)
        for j in range(maxlen):
            k = int(active[j])
            acc[:k] += matrix.take(rows[S[:k] + j], axis=0)
        c = counts[b0:b1][order]
        np.divide(acc, np.maximum(c, 1).astype(np.float32)[:, None], out=acc)
        block[order] = acc


def pool_column(col: pa.Array | pa.ChunkedArray, store: EmbeddingStore) -> tuple[pa.Array, pa.Array]:
    """(`<name>` fixed_size_list<float32>[dim] array, `<name>_count` int32 array) for one ids column."""
    kind = ids_kind(col.type)
    if kind is None:
        raise TypeError(f"ids column type {col.type} is neither an integer nor a list of integers")
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    n = len(col)
    dim = store.dim
    out = np.empty((n, dim), dtype=np.float32)
    counts = np.empty(n, dtype=np.int32)
    kernel = pool_scalar_chunk if kind == "scalar" else pool_list_chunk
    p = 0
    for ch in chunks:
        m = len(ch)
        if m:
            kernel(ch, store, out[p : p + m], counts[p : p + m])
        p += m
    values = pa.array(out.reshape(-1), type=pa.float32())
    vec = pa.FixedSizeListArray.from_arrays(values, dim)
    return vec, pa.array(counts, type=pa.int32())


def enrich_table(batch: pa.Table | pa.RecordBatch, store: EmbeddingStore, specs: list[EmbeddingSpec]) -> pa.Table:
    """The batch's columns unchanged, then `<name>`, `<name>_count` per spec, in order."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    names = list(table.column_names)
    cols = list(table.columns)
    fields = list(table.schema)
    for s, (fv, fc) in zip(specs, _pairs(output_fields(specs, store.dim))):
        vec, cnt = pool_column(table.column(s.ids), store)
        cols += [vec, cnt]
        fields += [fv, fc]
        names += [fv.name, fc.name]
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def _pairs(fields: list[pa.Field]):
    return [(fields[i], fields[i + 1]) for i in range(0, len(fields), 2)]
