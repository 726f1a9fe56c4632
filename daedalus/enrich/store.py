"""The embedding store: a Lance dataset pinned at one version, loaded into memory.

A store is a Lance dataset with an int64 key column and a `fixed_size_list<float32>[dim]`
vector column. Every reader of one enrich job uses the same version (`pin_store` resolves
it once on the driver; whoever loads it opens exactly that version), so a writer appending
to the store while a day is being enriched changes nothing in that day's output.

Lookups happen in memory: the pinned version is loaded once into

* `matrix`   – a C-contiguous float32 matrix: the store's vectors in the store's row order
  (one sequential copy), plus one extra all-zero row at the end (`missing_row`), so a
  gather of "not found" is a zero vector without any masking;
* `keys`     – the distinct usable keys, sorted ascending (int64), and `key_rows`, the
  matrix row of each;

and `rows(ids)` maps ids to matrix rows (`missing_row` when absent) through a dense
`id - min_key -> row` table when the key range is compact (at most 4 slots per key, or
2**20 slots), else through `np.searchsorted` on the sorted keys.

Rules for odd stores (documented in the project docs):

* duplicate keys: the LAST row in the pinned version's scan order wins (an append of a
  newer vector for an existing id acts as an update);
* a row whose key is null, whose vector is null, or whose vector holds a null element is
  ignored (the id counts as missing, unless another row gives it a valid vector);
* a store with zero usable rows is valid: every lookup misses.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from daedalus.errors import DaedalusError

# Dense id -> row table when the id range is at most this many slots per key (or this cap).
_DENSE_SLOTS_PER_KEY = 4
_DENSE_MIN_SLOTS = 1 << 20


@dataclass(frozen=True)
class StoreRef:
    """A store resolved on the driver: where, which version, which columns, what shape."""

    uri: str
    version: int
    key: str
    vector: str
    dim: int
    num_rows: int


def resolve_uri(uri: str) -> str:
    """Local paths become absolute (Ray workers may run in another directory)."""
    s = str(uri)
    if "://" in s:
        return s
    return os.path.abspath(s)


def _open(uri: str, version: int | None):
    import lance

    if "://" not in uri and not os.path.exists(uri):
        raise DaedalusError(uri, "embedding store not found (no such Lance dataset)")
    try:
        return lance.dataset(uri, version=version) if version is not None else lance.dataset(uri)
    except DaedalusError:
        raise
    except Exception as e:  # lance raises ValueError/OSError/... with multi-line text
        what = (
            f"version {version} of the embedding store cannot be opened"
            if version is not None
            else ("cannot open the embedding store as a Lance dataset")
        )
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DaedalusError(uri, f"{what}: {first[:200]}") from None


def check_schema(uri: str, schema: pa.Schema, key: str, vector: str) -> int:
    """Validate the store's columns; returns the vector dimension."""
    names = schema.names
    if key not in names:
        raise DaedalusError(uri, f"key column {key!r} not found (columns: {', '.join(names)})")
    if vector not in names:
        raise DaedalusError(uri, f"vector column {vector!r} not found (columns: {', '.join(names)})")
    kt = schema.field(key).type
    if kt != pa.int64():
        raise DaedalusError(uri, f"key column {key!r} must be int64, not {kt}")
    vt = schema.field(vector).type
    if not (pa.types.is_fixed_size_list(vt) and vt.value_type == pa.float32()):
        raise DaedalusError(uri, f"vector column {vector!r} must be fixed_size_list<float32>[dim], not {vt}")
    if vt.list_size <= 0:
        raise DaedalusError(uri, f"vector column {vector!r} has dimension {vt.list_size}")
    return int(vt.list_size)


def pin_store(uri: str, key: str, vector: str, version: int | None = None) -> StoreRef:
    """Open the store (latest version unless `version` is given), validate it, pin its version."""
    uri = resolve_uri(uri)
    ds = _open(uri, version)
    dim = check_schema(uri, ds.schema, key, vector)
    return StoreRef(uri=uri, version=int(ds.version), key=key, vector=vector, dim=dim, num_rows=int(ds.count_rows()))


class EmbeddingStore:
    """An in-memory copy of one pinned store version (see the module docstring).

    `keys`: the distinct usable keys, ascending; `key_rows[i]`: the matrix row of `keys[i]`;
    `matrix`: float32, C-contiguous, last row all zeros (`missing_row`). The matrix keeps
    the store's row order (a sequential copy, no sort of the vectors); rows of dropped or
    superseded duplicates stay in it, unreferenced.
    """

    def __init__(
        self,
        keys: np.ndarray,
        matrix: np.ndarray,
        key_rows: np.ndarray | None = None,
        *,
        version: int | None = None,
        uri: str = "",
    ) -> None:
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.dtype != np.float32:
            raise ValueError("matrix must be a 2-d float32 array ending with a zero row")
        if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ValueError("keys must be strictly increasing")
        self.missing_row = matrix.shape[0] - 1
        key_rows = np.arange(len(keys), dtype=np.int64) if key_rows is None else np.asarray(key_rows, dtype=np.int64)
        if len(key_rows) != len(keys) or (len(keys) and (key_rows.min() < 0 or key_rows.max() >= self.missing_row)):
            raise ValueError("key_rows must give one matrix row (before the zero row) per key")
        self.uri = uri
        self.version = version
        self.keys = keys
        self.key_rows = key_rows
        self.matrix = matrix
        self.dim = int(matrix.shape[1])
        self._dense: np.ndarray | None = None
        self._lo = 0
        if len(keys):
            lo, hi = int(keys[0]), int(keys[-1])
            span = hi - lo + 1
            if span <= max(_DENSE_SLOTS_PER_KEY * len(keys), _DENSE_MIN_SLOTS):
                dense = np.full(span + 1, self.missing_row, dtype=np.int32 if self.missing_row < 2**31 else np.int64)
                dense[keys - lo] = key_rows
                self._dense, self._lo = dense, lo

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, keys, vectors, *, version: int | None = None, uri: str = "") -> EmbeddingStore:
        """Build from a key array and a fixed_size_list<float32> array (pyarrow, any chunking).

        Applies the store rules: null keys / null vectors / vectors with null elements are
        dropped, and for duplicate keys the last row wins. The vectors are copied once,
        sequentially, chunk by chunk (peak memory: the Arrow data + the matrix).
        """
        if not pa.types.is_fixed_size_list(vectors.type):
            raise ValueError("vectors must be a fixed_size_list array")
        dim = vectors.type.list_size
        key_chunks = _chunks(keys)
        vec_chunks = _rechunk_like(_chunks(vectors), [len(c) for c in key_chunks])
        n = sum(len(c) for c in key_chunks)
        k = np.empty(n, dtype=np.int64)
        usable = np.ones(n, dtype=bool)
        matrix = np.empty((n + 1, dim), dtype=np.float32)
        matrix[n] = 0.0
        p = 0
        for kc, vc in zip(key_chunks, vec_chunks):
            m = len(kc)
            k[p : p + m] = _int64_values(kc)
            if kc.null_count:
                usable[p : p + m] &= kc.is_valid().to_numpy(zero_copy_only=False)
            _copy_vectors(vc, dim, matrix[p : p + m], usable[p : p + m])
            p += m
        idx = np.flatnonzero(usable)
        ku = k[idx]
        order = np.argsort(ku, kind="stable")
        ks = ku[order]
        last = np.ones(len(ks), dtype=bool)
        if len(ks) > 1:
            last[:-1] = ks[1:] != ks[:-1]  # the last of each run of equal keys wins
        return cls(ks[last], matrix, idx[order[last]], version=version, uri=uri)

    @classmethod
    def load(cls, ref: StoreRef) -> EmbeddingStore:
        """Load the pinned version `ref.version` of the store into memory."""
        ds = _open(ref.uri, ref.version)
        dim = check_schema(ref.uri, ds.schema, ref.key, ref.vector)
        if dim != ref.dim:
            raise DaedalusError(ref.uri, f"vector dimension changed from {ref.dim} to {dim}")
        table = ds.to_table(columns=[ref.key, ref.vector])
        store = cls.from_arrays(table.column(ref.key), table.column(ref.vector), version=ref.version, uri=ref.uri)
        del table
        return store

    # -- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Matrix rows of int64 `ids`; `missing_row` (the zero row) for ids not in the store."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.keys) == 0:
            return np.full(len(ids), self.missing_row, dtype=np.int64)
        if self._dense is not None:
            span = len(self._dense) - 1
            rel = (ids - self._lo).view(np.uint64)  # negatives become huge: out of range
            return self._dense[np.minimum(rel, np.uint64(span))]
        pos = np.searchsorted(self.keys, ids)
        np.minimum(pos, len(self.keys) - 1, out=pos)
        hit = self.keys[pos] == ids
        return np.where(hit, self.key_rows[pos], self.missing_row)


def _chunks(a) -> list[pa.Array]:
    if isinstance(a, pa.ChunkedArray):
        return [c for c in a.chunks if len(c)]
    return [a] if len(a) else []


def _rechunk_like(chunks: list[pa.Array], lengths: list[int]) -> list[pa.Array]:
    """The vector chunks cut at the key chunks' boundaries (they usually already match)."""
    if [len(c) for c in chunks] == lengths:
        return chunks
    whole = pa.chunked_array(chunks)
    out, p = [], 0
    for n in lengths:
        out.append(whole.slice(p, n).combine_chunks())
        p += n
    return out


def _int64_values(a: pa.Array) -> np.ndarray:
    if a.null_count:
        a = a.fill_null(0)
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.int64)


def _copy_vectors(a: pa.Array, dim: int, out: np.ndarray, usable: np.ndarray) -> None:
    """Copy one fixed_size_list<float32> chunk into `out` (n x dim); clear `usable` for null
    vectors and vectors with a null element."""
    n = len(a)
    child = a.values  # the whole child of a possibly sliced array
    start = a.offset * dim
    if a.null_count:
        usable &= a.is_valid().to_numpy(zero_copy_only=False)
    if child.null_count:
        cvalid = child.is_valid().to_numpy(zero_copy_only=False)[start : start + n * dim]
        usable &= cvalid.reshape(n, dim).all(axis=1)
        child = child.fill_null(0)
    flat = child.to_numpy(zero_copy_only=False)[start : start + n * dim]
    out[:] = flat.reshape(n, dim)


_LOADED: dict[StoreRef, EmbeddingStore] = {}
_LOADED_LOCK = threading.Lock()
_KEEP = 2  # pinned versions kept in memory by a long-lived process (the run's worker)


def load_cached(ref: StoreRef) -> EmbeddingStore:
    """`EmbeddingStore.load(ref)`, once per pinned version for the life of the process."""
    with _LOADED_LOCK:
        store = _LOADED.get(ref)
        if store is None:
            store = EmbeddingStore.load(ref)
            while len(_LOADED) >= _KEEP:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[ref] = store
        return store
