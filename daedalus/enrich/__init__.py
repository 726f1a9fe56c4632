"""The enrich stage: embeddings from a pinned Lance store, pooled onto the skeleton rows.

    from daedalus.enrich import run_enrich_stage, ensure_ray, start_local_head, stop_head

* `store`   – open/validate/pin a Lance store, load it into memory (`EmbeddingStore`);
* `pooling` – the numpy kernels (scalar id -> vector, list of ids -> mean) and their rules;
* `stage`   – the per-day Ray Data pipeline, the ordered shard writer, atomic publication,
              and the Ray lifecycle (`ensure_ray`);
* `cluster` – one local Ray head per run that the day jobs attach to (`RAY_ADDRESS`).

Importing this package does not import Ray.
"""

from daedalus.enrich.cluster import start_local_head, stop_head
from daedalus.enrich.pooling import EmbeddingSpec, enrich_table
from daedalus.enrich.stage import ensure_ray, run_enrich_stage
from daedalus.enrich.store import EmbeddingStore, StoreRef, pin_store

__all__ = [
    "EmbeddingSpec",
    "EmbeddingStore",
    "StoreRef",
    "enrich_table",
    "ensure_ray",
    "pin_store",
    "run_enrich_stage",
    "start_local_head",
    "stop_head",
]
