"""Shared numpy helpers of the pythonic engines: entity codes and source order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def entity_codes(columns_a: list[pa.ChunkedArray], columns_b: list[pa.ChunkedArray]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for key tuples, equal across the two tables exactly when the tuples are."""
    n_a = len(columns_a[0]) if columns_a else 0
    code: np.ndarray | None = None
    for ca, cb in zip(columns_a, columns_b):
        a, b = _comparable(ca.combine_chunks(), cb.combine_chunks())
        enc = pa.concat_arrays([a, b]).dictionary_encode()
        idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if code is None:
            code = idx
        else:
            _, inv = np.unique(np.stack([code, idx], axis=1), axis=0, return_inverse=True)
            code = inv.astype(np.int64).ravel()
    if code is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return code[:n_a], code[n_a:]


def _comparable(a: pa.Array, b: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Two key columns as one type that compares values as SQL does (an int8 spine id and an
    int64 view id are equal when their values are)."""
    if a.type == b.type:
        return a, b
    if pa.types.is_integer(a.type) and pa.types.is_integer(b.type):
        for t in (pa.int64(), pa.uint64()):
            try:
                return a.cast(t), b.cast(t)
            except (pa.ArrowInvalid, OverflowError):
                continue
        return a.cast(pa.string()), b.cast(pa.string())
    try:
        return a, b.cast(a.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return a.cast(pa.string()), b.cast(pa.string())


def micros(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy(zero_copy_only=False)


def source_order(files: pa.ChunkedArray, rows: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(file rank in lexical order, row in file): the contract's source order as two keys."""
    enc = files.combine_chunks().dictionary_encode()
    ranks = np.argsort(np.argsort(np.array(enc.dictionary.to_pylist(), dtype=object)))
    file_rank = ranks[enc.indices.to_numpy(zero_copy_only=False)].astype(np.int64)
    return file_rank, rows.combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64)
