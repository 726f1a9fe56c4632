"""The digests that decide what reruns: of the skeleton part of a plan, and of its enrich part."""

from __future__ import annotations

import hashlib
from pathlib import Path

from daedalus.checks import store_schema
from daedalus.plan import Plan


def digest_of(plan: Plan, udf_files: list[Path]) -> str:
    """Changes exactly when what a skeleton day computes changes (not with the enrich part)."""
    skeleton = plan.model_copy(update={"operators": plan.skeleton_operators})
    h = hashlib.sha256(skeleton.to_yaml().encode())
    for f in sorted(udf_files):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def enrich_digest_of(plan: Plan) -> str:
    """Changes when the embeddings, the store, or its latest version change."""
    h = hashlib.sha256()
    for op in plan.ops("embed"):
        h.update(op.model_dump_json().encode())
        p = op.params
        if Path(p.store_uri).exists():
            h.update(str(store_schema(p.store_uri, Path(p.store_uri))[1]).encode())
    return h.hexdigest()[:16]
