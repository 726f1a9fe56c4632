"""Train a small learning-to-rank model on the demo output and compare it with a random ranking.

    make train                                  # the demo output (or any daeda pipeline train)
    pip install -e '.[ranker]'                  # lightgbm
    python docs/examples/train_ranker.py        # data/training_output_enriched, last 7 days as test

It opens the enriched output root with daedalus.dataset, takes one query group per qid (a
feed session), trains LightGBM's lambdarank on the earlier days with `clicked` as the label,
and reports NDCG@10 on the later days for the model, for a random ranking (fixed seed) and,
for reference, for the order the feed showed (by `position`). docs/training.md explains it.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from daedalus.dataset import RankingBatch, TrainingSet, open_training_set

LABEL = "clicked"
# Not features: ids, the query id, the labels (`liked` implies `clicked`), and the position
# the feed showed the item at (the ranker's own output when it serves).
NOT_FEATURES = {"user_id", "artwork_id", "qid", "clicked", "liked", "position"}
# The two embeddings of the enriched output; their dot product (how close the artwork is to
# what the user engaged with lately) is one derived feature.
EMBEDDINGS = ("history_emb", "artwork_emb")


def feature_columns(ts: TrainingSet) -> tuple[list[str], list[str]]:
    """(numeric feature columns, embedding columns present) of a training set."""
    numeric = [c for c in ts.numeric_columns() if c not in NOT_FEATURES]
    return numeric, [c for c in EMBEDDINGS if c in ts.columns]


def matrix(batch: RankingBatch, numeric: list[str], embeddings: list[str]) -> np.ndarray:
    x = batch.feature_matrix(numeric)
    if len(embeddings) == 2:
        a, b = (batch.features[c].combine_chunks().flatten().to_numpy().reshape(batch.num_rows, -1) for c in embeddings)
        x = np.column_stack([x, np.einsum("ij,ij->i", a, b)])
    return x


def ndcg_at(k: int, scores: np.ndarray, labels: np.ndarray, group: np.ndarray) -> tuple[float, int]:
    """Mean NDCG@k over the groups with at least one positive label, and how many those are.

    Gain 2^label - 1, discount 1/log2(rank + 1); a group's items are ranked by decreasing
    score (ties: row order)."""
    total, n, start = 0.0, 0, 0
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    for size in group:
        s, y = scores[start : start + size], labels[start : start + size].astype(np.float64)
        start += size
        if y.max(initial=0) <= 0:
            continue
        gains = 2.0**y - 1.0
        top = np.argsort(-s, kind="stable")[:k]
        ideal = np.sort(gains)[::-1][:k]
        total += float(gains[top] @ discount[: len(top)]) / float(ideal @ discount[: len(ideal)])
        n += 1
    return (total / n if n else float("nan")), n


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="data/training_output_enriched", help="a skeleton or enriched output root")
    ap.add_argument("--test-days", type=int, default=7, help="the last N published days are the test set")
    ap.add_argument("--seed", type=int, default=0, help="seed of LightGBM and of the random ranking")
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args(argv)

    import lightgbm as lgb  # the `ranker` extra

    days = open_training_set(args.root, columns=[]).days
    if len(days) <= args.test_days:
        sys.exit(
            f"train_ranker: {args.root} has {len(days)} published days; need more than --test-days {args.test_days}"
        )
    split = days[-args.test_days]
    train_ts = open_training_set(args.root, end=days[-args.test_days - 1])
    test_ts = open_training_set(args.root, start=split)
    numeric, embeddings = feature_columns(train_ts)
    feats = numeric + embeddings + ["position"]
    train = train_ts.ranking_data(LABEL, features=feats)
    test = test_ts.ranking_data(LABEL, features=feats)

    # LightGBM's own API (its scikit-learn wrapper, LGBMRanker, needs scikit-learn).
    params = {
        "objective": "lambdarank",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 10,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.8,
        "seed": args.seed,
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    data = lgb.Dataset(matrix(train, numeric, embeddings), label=train.labels, group=train.group)
    model = lgb.train(params, data, num_boost_round=args.trees)
    scores = model.predict(matrix(test, numeric, embeddings))

    ranker, queries = ndcg_at(10, scores, test.labels, test.group)
    random, _ = ndcg_at(10, np.random.default_rng(args.seed).random(test.num_rows), test.labels, test.group)
    shown, _ = ndcg_at(10, -test.features["position"].to_numpy().astype(np.float64), test.labels, test.group)
    result = {
        "root": args.root,
        "train_days": [train_ts.days[0], train_ts.days[-1]],
        "test_days": [test_ts.days[0], test_ts.days[-1]],
        "train_rows": train.num_rows,
        "train_queries": len(train.group),
        "test_rows": test.num_rows,
        "test_queries": len(test.group),
        "test_queries_with_click": queries,
        "features": len(numeric) + (len(embeddings) == 2),
        "ndcg10_ranker": round(ranker, 4),
        "ndcg10_random": round(random, 4),
        "ndcg10_feed_order": round(shown, 4),
    }
    print(
        f"train {result['train_days'][0]}..{result['train_days'][1]}: {train.num_rows} rows, "
        f"{len(train.group)} queries; test {result['test_days'][0]}..{result['test_days'][1]}: "
        f"{test.num_rows} rows, {len(test.group)} queries ({queries} with a click); {result['features']} features"
    )
    print(f"NDCG@10  LightGBM lambdarank        {ranker:.4f}")
    print(f"NDCG@10  random ranking (seed {args.seed})    {random:.4f}")
    print(f"NDCG@10  the feed's order (position) {shown:.4f}")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
