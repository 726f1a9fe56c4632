"""Every invalid input is one clean error line and leaves existing outputs alone (CONTRACT.md section 8).

For each case a fresh copy of a prepared working directory (feature definitions, small demo
data and a good skeleton output root produced by one successful `daeda pipeline train
--skeleton-only`) is mutated, the CLI is run in it, and we check:

- a non-zero exit status;
- stderr is exactly one line `daeda: error: <file or option>: <problem>`, whose `<file or option>`
  names the right file or option;
- no traceback: neither "Traceback" nor `File "...", line N` frames in stdout or stderr;
- every file under the output root (hidden ones included) is byte-for-byte what it was.

A second, separate check verifies that the compiled plan files under `config/pipelines/` were not
rewritten either ("before any output is touched").

The cases run concurrently in a module-scoped fixture (each one is an independent directory); each
test then only inspects its recorded result. The module needs about 100 s of CPU in all (setup ~20 s,
~1 s per case), i.e. well under 90 s of wall time on two otherwise idle cores.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
_DAEDA = Path(sys.executable).with_name("daeda")
DAEDA = str(_DAEDA) if _DAEDA.exists() else (shutil.which("daeda") or "daeda")

OUTPUT_ROOT = "data/training_output"
TIMEOUT = 300  # generous: the machine running the suite may be shared
TRAIN = ["pipeline", "train", "dssm_ranking", "--skeleton-only"]
COMPILE = ["pipeline", "compile", "dssm_ranking"]
ERROR_PREFIX = "daeda: error: "
TRACEBACK_FRAME_RE = re.compile(r'^\s*File ".*", line \d+', re.M)
LINE_RE = re.compile(r"^daeda: error: (?P<where>\S(?:.*?\S)?): (?P<problem>\S.*)$")

UP = "feature_views/user_profile.yaml"
AS = "feature_views/artwork_stats.yaml"
SVC = "feature_services/dssm_ranking.yaml"
AGG = "config/training/aggregations.yaml"
RT = "config/training/runtime.yaml"
HAND_PLAN = "config/pipelines/dssm_ranking.yaml"
BAD_STORE = "data/demo/embeddings/bad.lance"
UNDER_A_FILE = "config/config.yaml/output"  # fails for root too, unlike chmod


# --------------------------------------------------------------------------------------------------
# helpers


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env.pop("RAY_ADDRESS", None)
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DAEDA, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)


def tree_hashes(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root, hidden files included."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() and not p.exists():
                out[rel] = "broken-symlink:" + os.readlink(p)
                continue
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def dump_yaml(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def edit_yaml(rel: str, fn: Callable) -> Callable[[Path], None]:
    """Load rel, let fn edit the data in place (its return value is ignored), write it back."""

    def mutate(d: Path) -> None:
        data = load_yaml(d / rel)
        fn(data)
        dump_yaml(d / rel, data)

    return mutate


def write_text(rel: str, text: str) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        (d / rel).write_text(text)

    return mutate


def set_runtime(**values: str) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        p = d / RT
        text = p.read_text()
        for key, value in values.items():
            text, n = re.subn(rf"(?m)^{key}:.*$", f"{key}: {value}", text)
            assert n == 1, key
        p.write_text(text)

    return mutate


def feature(view: dict, name: str) -> dict:
    return next(f for f in view["features"] if f["name"] == name)


def aggregation(cfg: dict, name: str) -> dict:
    return next(a for a in cfg["aggregations"] if a["name"] == name)


def embedding(cfg: dict, name: str) -> dict:
    return next(e for e in cfg["embeddings"] if e["name"] == name)


def garbage_parquet(pick: Callable[[list[Path]], Path]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        files = sorted((d / "data/demo/sources").rglob("*.parquet"))
        target = pick(files)
        target.write_bytes(b"this is not a parquet file\x00\x01\x02" * 64)

    return mutate


def file_of(source: str, day: str) -> Callable[[list[Path]], Path]:
    def pick(files: list[Path]) -> Path:
        own = sorted(f for f in files if f"/sources/{source}/dt={day}/" in f.as_posix())
        assert own, (source, day)
        return own[0]

    return pick


def truncate_parquet(pick: Callable[[list[Path]], Path]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        target = pick(sorted((d / "data/demo/sources").rglob("*.parquet")))
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])

    return mutate


def _corrupt_pages(target: Path) -> None:
    """Garbage between the magic bytes and the footer: the footer (and so compile) reads fine."""
    data = bytearray(target.read_bytes())
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    data[4:footer_start] = b"\xab" * (footer_start - 4)
    target.write_bytes(bytes(data))


def retype_column(pick: Callable[[list[Path]], Path], column: str, to: pa.DataType) -> Callable[[Path], None]:
    """Rewrite one partition with `column` of another type (a producer that changed its schema)."""

    def mutate(d: Path) -> None:
        target = pick(sorted((d / "data/demo/sources").rglob("*.parquet")))
        t = pq.read_table(target)
        i = t.schema.get_field_index(column)
        pq.write_table(t.set_column(i, column, t[column].cast(to)), target)

    return mutate


def bad_store(keys: pa.Array, vectors: pa.Array) -> Callable[[Path], None]:
    """A Lance store with these columns, and the aggregation config pointing at it."""

    def mutate(d: Path) -> None:
        import lance

        lance.write_dataset(pa.table({"artwork_id": keys, "embedding": vectors}), str(d / BAD_STORE))
        edit_yaml(AGG, lambda c: c["embedding_store"].update(uri=BAD_STORE))(d)

    return mutate


def hand_plan(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    """Write config/pipelines/dssm_ranking.yaml = the compiled plan, edited by fn."""

    def mutate(d: Path) -> None:
        plan = yaml.safe_load((d / "compiled_plan.yaml").read_text())
        fn(plan)
        dump_yaml(d / HAND_PLAN, plan)

    return mutate


def operator(plan: dict, name: str) -> dict:
    return next(op for op in plan["operators"] if op["name"] == name)


def nothing(_d: Path) -> None:
    return None


# --------------------------------------------------------------------------------------------------
# cases


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Path], None]
    where: tuple[str, ...]  # the <file or option> part must contain one of these
    args: tuple[str, ...] = tuple(TRAIN)
    contains: tuple[str, ...] = ()  # the whole line must contain each of these


def _append_feature(rel_view: str, feat: dict) -> Callable[[Path], None]:
    return edit_yaml(rel_view, lambda v: v["features"].append(feat))


CASES: list[Case] = [
    # ---- YAML shape -------------------------------------------------------------------------
    Case(
        "view_yaml_syntax_error",
        write_text(UP, "name: user_profile\nentities: [user_id\nsource: {path: x\n"),
        ("user_profile.yaml",),
    ),
    Case(
        "view_top_level_is_list",
        write_text(UP, "- name: user_profile\n- entities: [user_id]\n"),
        ("user_profile.yaml",),
    ),
    Case(
        "view_unknown_key",
        edit_yaml(UP, lambda v: v.update(ttl_days=3)),
        ("user_profile.yaml",),
        contains=("ttl_days",),
    ),
    Case(
        "view_unknown_feature_key",
        edit_yaml(UP, lambda v: feature(v, "bio_length").update(dtpye="int32")),
        ("user_profile.yaml",),
        contains=("dtpye",),
    ),
    Case("aggregations_yaml_syntax_error", write_text(AGG, "aggregations:\n  - {name: x\n"), ("aggregations.yaml",)),
    # ---- names -------------------------------------------------------------------------------
    Case(
        "service_unknown_feature_view",
        edit_yaml(SVC, lambda s: s["features"].append("no_such_view")),
        ("dssm_ranking.yaml",),
        contains=("no_such_view",),
    ),
    Case(
        "view_name_differs_from_file_stem",
        edit_yaml(UP, lambda v: v.update(name="user_profiles")),
        ("user_profile.yaml",),
    ),
    Case(
        "view_duplicate_feature_name",
        _append_feature(UP, {"name": "follower_count", "dtype": "int64"}),
        ("user_profile.yaml",),
        contains=("follower_count",),
    ),
    Case(
        "service_duplicate_view",
        edit_yaml(SVC, lambda s: s["features"].append("user_profile")),
        ("dssm_ranking.yaml",),
        contains=("user_profile",),
    ),
    Case(
        "view_bad_feature_identifier",
        _append_feature(UP, {"name": "Name-1", "dtype": "int64", "column": "follower_count"}),
        ("user_profile.yaml",),
        contains=("Name-1",),
    ),
    Case(
        "aggregation_bad_identifier",
        edit_yaml(AGG, lambda c: aggregation(c, "user_likes").update(name="User-Likes")),
        ("aggregations.yaml",),
        contains=("User-Likes",),
    ),
    Case(
        "service_unknown_aggregation",
        edit_yaml(SVC, lambda s: s["aggregations"].append("no_such_agg")),
        ("dssm_ranking.yaml",),
        contains=("no_such_agg",),
    ),
    Case(
        "service_unknown_embedding",
        edit_yaml(SVC, lambda s: s["embeddings"].append("no_such_emb")),
        ("dssm_ranking.yaml",),
        contains=("no_such_emb",),
    ),
    # ---- durations, dtypes, functions ---------------------------------------------------------
    Case("view_ttl_bad_unit_7x", edit_yaml(UP, lambda v: v.update(ttl="7x")), ("user_profile.yaml",), contains=("7x",)),
    Case("view_ttl_zero_0d", edit_yaml(UP, lambda v: v.update(ttl="0d")), ("user_profile.yaml",), contains=("0d",)),
    Case(
        "aggregation_window_negative",
        edit_yaml(AGG, lambda c: aggregation(c, "user_engagement").update(windows=["-1h", "1d", "7d"])),
        ("aggregations.yaml",),
        contains=("-1h",),
    ),
    Case(
        "view_bad_dtype",
        edit_yaml(UP, lambda v: feature(v, "follower_count").update(dtype="flot64")),
        ("user_profile.yaml",),
        contains=("dtype",),
    ),
    Case(
        "aggregation_bad_function",
        edit_yaml(AGG, lambda c: aggregation(c, "user_engagement")["features"][2].update(function="medain")),
        ("aggregations.yaml",),
        contains=("function",),
    ),
    Case(
        "aggregation_last_k_without_k",
        edit_yaml(
            AGG,
            lambda c: next(
                f for f in aggregation(c, "user_engagement")["features"] if f["name"] == "recent_artworks"
            ).pop("k"),
        ),
        ("aggregations.yaml",),
        contains=("recent_artworks",),
    ),
    Case(
        "aggregation_sum_over_string",
        edit_yaml(
            AGG,
            lambda c: aggregation(c, "user_engagement")["features"].append(
                {"name": "device_sum", "column": "device", "function": "sum"}
            ),
        ),
        ("aggregations.yaml",),
    ),
    Case(
        "aggregation_unknown_column",
        edit_yaml(
            AGG,
            lambda c: aggregation(c, "user_engagement")["features"].append(
                {"name": "nope_sum", "column": "no_such_col", "function": "sum"}
            ),
        ),
        ("aggregations.yaml",),
        contains=("no_such_col",),
    ),
    # ---- dates ---------------------------------------------------------------------------------
    Case("runtime_bad_feed_start", set_runtime(feed_start="2026-13"), ("runtime.yaml",), contains=("feed_start",)),
    Case(
        "runtime_feed_end_before_start", set_runtime(feed_start="2026-04-02", feed_end="2026-04-01"), ("runtime.yaml",)
    ),
    # ---- columns -------------------------------------------------------------------------------
    Case(
        "view_feature_column_not_in_source",
        _append_feature(UP, {"name": "nope_col", "dtype": "int64"}),
        ("user_profile.yaml",),
        contains=("nope_col",),
    ),
    Case(
        "view_entity_not_in_source",
        edit_yaml(UP, lambda v: v.update(entities=["user_id", "artwork_id"])),
        ("user_profile.yaml",),
        contains=("artwork_id",),
    ),
    Case(
        "view_entity_not_in_spine",
        edit_yaml(UP, lambda v: v.update(entities=["user_id", "bio_length"])),
        ("user_profile.yaml",),
        contains=("bio_length",),
    ),
    Case(
        "spine_label_missing",
        edit_yaml(SVC, lambda s: s["spine"]["labels"].append("shared")),
        ("dssm_ranking.yaml",),
        contains=("shared",),
    ),
    Case(
        "view_timestamp_field_not_timestamp",
        edit_yaml(UP, lambda v: v["source"].update(timestamp_field="follower_count")),
        ("user_profile.yaml",),
        contains=("follower_count",),
    ),
    # ---- sources and stores ------------------------------------------------------------------
    Case(
        "view_source_path_missing",
        edit_yaml(UP, lambda v: v["source"].update(path="data/demo/sources/no_such_source")),
        ("user_profile.yaml", "no_such_source"),
    ),
    # The oldest partition the run reads: the spine's look-back (its longest `source: spine`
    # window, 30d) reaches 2026-03-02 from 2026-04-01. Older ones are not read at all
    # (tests/test_partitions.py).
    Case(
        "unreadable_parquet_oldest_needed_partition_of_feed",
        garbage_parquet(file_of("feed", "2026-03-02")),
        ("feed/dt=2026-03-02",),
        contains=("unreadable parquet",),
    ),
    Case(
        "unreadable_parquet_in_range_user_profile",
        garbage_parquet(file_of("user_profile", "2026-04-01")),
        ("user_profile/dt=2026-04-01", "user_profile.yaml"),
    ),
    Case(
        "embedding_store_missing",
        edit_yaml(AGG, lambda c: c["embedding_store"].update(uri="data/demo/embeddings/missing.lance")),
        ("aggregations.yaml", "missing.lance"),
    ),
    Case(
        "embedding_ids_not_an_output_column",
        edit_yaml(AGG, lambda c: embedding(c, "history_emb").update(ids="no_such_column")),
        ("aggregations.yaml",),
        contains=("no_such_column",),
    ),
    Case(
        "truncated_parquet_in_range_user_profile",
        truncate_parquet(file_of("user_profile", "2026-04-01")),
        ("user_profile/dt=2026-04-01",),
        contains=("unreadable parquet",),
    ),
    Case(
        "truncated_parquet_of_the_spine",
        truncate_parquet(file_of("feed", "2026-04-02")),
        ("feed/dt=2026-04-02",),
        contains=("unreadable parquet",),
    ),
    Case(
        "source_partition_column_changes_type",
        retype_column(file_of("user_profile", "2026-04-02"), "follower_count", pa.string()),
        ("user_profile/dt=2026-04-02",),
        contains=("follower_count", "string"),
    ),
    Case(
        "spine_partition_label_changes_type",
        retype_column(file_of("feed", "2026-04-01"), "clicked", pa.string()),
        ("feed/dt=2026-04-01",),
        contains=("clicked",),
    ),
    Case(
        "store_key_wrong_type",
        bad_store(pa.array(["1", "2"]), pa.FixedSizeListArray.from_arrays(pa.array([0.5] * 64, pa.float32()), 32)),
        ("aggregations.yaml", "bad.lance"),
        contains=("artwork_id", "int64"),
    ),
    Case(
        "store_vectors_without_a_fixed_dimension",
        bad_store(pa.array([1, 2], pa.int64()), pa.array([[0.5] * 32, [0.5] * 16], pa.list_(pa.float32()))),
        ("aggregations.yaml", "bad.lance"),
        contains=("embedding", "fixed_size_list"),
    ),
    Case(
        "store_vectors_float64",
        bad_store(
            pa.array([1, 2], pa.int64()), pa.FixedSizeListArray.from_arrays(pa.array([0.5] * 64, pa.float64()), 32)
        ),
        ("aggregations.yaml", "bad.lance"),
        contains=("embedding",),
    ),
    # ---- wrong shape, unknown keys -------------------------------------------------------
    Case(
        "runtime_unknown_key_did_you_mean",
        lambda d: (d / RT).write_text((d / RT).read_text() + "day_worker: 2\n"),
        ("runtime.yaml",),
        contains=("day_worker", "did you mean", "day_workers"),
    ),
    Case("runtime_is_a_list", write_text(RT, "- feed_start: 2026-04-01\n- feed_end: 2026-04-02\n"), ("runtime.yaml",)),
    Case(
        "view_features_is_a_mapping",
        edit_yaml(UP, lambda v: v.update(features={"follower_count": "int64"})),
        ("user_profile.yaml",),
        contains=("features",),
    ),
    Case(
        "service_features_is_a_string",
        edit_yaml(SVC, lambda s: s.update(features="user_profile")),
        ("dssm_ranking.yaml",),
        contains=("features",),
    ),
    Case(
        "aggregation_windows_is_a_number",
        edit_yaml(AGG, lambda c: aggregation(c, "user_engagement").update(windows=7)),
        ("aggregations.yaml",),
        contains=("windows",),
    ),
    # ---- output root -----------------------------------------------------------------------
    Case(
        "opt_output_root_not_writable",
        nothing,
        ("--output-root",),
        args=(*TRAIN, "--output-root", UNDER_A_FILE),
        contains=("not writable",),
    ),
    Case(
        "runtime_output_root_not_writable",
        set_runtime(output_root=UNDER_A_FILE),
        ("runtime.yaml",),
        contains=("output_root", "not writable"),
    ),
    Case(
        "opt_target_date_before_range",
        nothing,
        ("--target-date",),
        args=(*TRAIN, "--target-date", "2026-03-31"),
        contains=("outside",),
    ),
    # ---- expressions and UDFs ------------------------------------------------------------------
    Case(
        "expr_with_semicolon",
        edit_yaml(UP, lambda v: feature(v, "log_followers").update(expr="ln(1 + follower_count); select 1")),
        ("user_profile.yaml",),
        contains=("log_followers",),
    ),
    Case(
        "expr_with_subquery",
        edit_yaml(
            UP, lambda v: feature(v, "log_followers").update(expr="(select max(follower_count) from user_profile)")
        ),
        ("user_profile.yaml",),
        contains=("log_followers",),
    ),
    Case(
        "expr_unknown_column",
        edit_yaml(UP, lambda v: feature(v, "log_followers").update(expr="ln(1 + no_such_col)")),
        ("user_profile.yaml",),
        contains=("log_followers",),
    ),
    Case(
        "udf_module_not_importable",
        edit_yaml(AS, lambda v: feature(v, "price_band").update(udf="feature_views.no_such_module:price_band")),
        ("artwork_stats.yaml",),
    ),
    # ---- options -------------------------------------------------------------------------------
    Case("opt_day_workers_zero", nothing, ("--day-workers",), args=(*TRAIN, "--day-workers", "0")),
    Case("opt_day_workers_not_int", nothing, ("--day-workers",), args=(*TRAIN, "--day-workers", "abc")),
    Case("opt_target_date_invalid", nothing, ("--target-date",), args=(*TRAIN, "--target-date", "2026-02-30")),
    Case("opt_target_date_outside_range", nothing, ("--target-date",), args=(*TRAIN, "--target-date", "2026-04-05")),
    Case(
        "opt_skeleton_only_and_enrich_only",
        nothing,
        ("--skeleton-only", "--enrich-only"),
        args=(*TRAIN, "--enrich-only"),
    ),
    Case("opt_unknown_option", nothing, ("--no-such-option",), args=(*TRAIN, "--no-such-option")),
    Case(
        "opt_unknown_service",
        nothing,
        ("no_such_service", "SERVICE", "service"),
        args=("pipeline", "train", "no_such_service", "--skeleton-only"),
    ),
    Case(
        "opt_runtime_config_path_missing",
        nothing,
        ("--runtime-config-path", "missing_runtime.yaml"),
        args=(*TRAIN, "--runtime-config-path", "config/training/missing_runtime.yaml"),
    ),
    Case(
        "opt_feature_views_dir_not_a_directory",
        nothing,
        ("--feature-views-dir", "config.yaml"),
        args=(*TRAIN, "--feature-views-dir", "config/config.yaml"),
    ),
    # ---- hand-edited plan ------------------------------------------------------------------------
    Case(
        "hand_plan_engine_unsupported_by_operator",
        hand_plan(lambda p: operator(p, "derive.user_profile").update(engine="pythonic")),
        ("pipelines/dssm_ranking.yaml",),
        contains=("derive.user_profile", "pythonic"),
    ),
    Case(
        "hand_plan_engine_unknown",
        hand_plan(lambda p: operator(p, "window_agg.user_engagement").update(engine="spark")),
        ("pipelines/dssm_ranking.yaml",),
        contains=("engine",),
    ),
    # ---- errors name the value given and the choices (issue 12) ---------------------------------
    Case(
        "view_dtype_int128_names_value_and_choices",
        edit_yaml(UP, lambda v: feature(v, "follower_count").update(dtype="int128")),
        ("user_profile.yaml",),
        contains=("dtype", "'int128'", "int64", "timestamp", "did you mean"),
    ),
    Case(
        "aggregation_function_median_did_you_mean",
        edit_yaml(AGG, lambda c: aggregation(c, "user_engagement")["features"][2].update(function="median")),
        ("aggregations.yaml",),
        contains=("function", "'median'", "count_distinct", "did you mean 'mean'"),
    ),
    Case(
        "runtime_unquoted_date_month_13",
        write_text(RT, "feed_start: 2026-13-01\nfeed_end: 2026-04-02\n"),
        ("runtime.yaml",),
        contains=("feed_start", "2026-13-01", "month"),
    ),
    Case(
        "runtime_unquoted_date_day_out_of_range",
        write_text(RT, "feed_start: 2026-04-01\nfeed_end: 2026-04-31\n"),
        ("runtime.yaml",),
        contains=("feed_end", "2026-04-31"),
    ),
    Case(
        "runtime_day_workers_a_word",
        set_runtime(day_workers="two"),
        ("runtime.yaml",),
        contains=("day_workers", "integer", "'two'"),
    ),
    Case(
        "runtime_chunk_rows_zero",
        lambda d: (d / RT).write_text((d / RT).read_text() + "skeleton: {chunk_rows: 0}\n"),
        ("runtime.yaml",),
        contains=("skeleton.chunk_rows", "got 0"),
    ),
    Case(
        "view_ttl_a_number",
        edit_yaml(UP, lambda v: v.update(ttl=7)),
        ("user_profile.yaml",),
        contains=("ttl", "string", "got 7"),
    ),
    Case(
        "aggregation_source_typo_did_you_mean",
        edit_yaml(AGG, lambda c: aggregation(c, "user_engagement").update(source="spin")),
        ("aggregations.yaml",),
        contains=("source", "'spin'", "did you mean 'spine'"),
    ),
    Case(
        "aggregation_source_mapping_missing_key",
        edit_yaml(AGG, lambda c: aggregation(c, "artwork_likes")["source"].pop("timestamp_field")),
        ("aggregations.yaml",),
        contains=("source.timestamp_field", "missing"),
    ),
    Case(
        "aggregation_windows_a_string",
        edit_yaml(AGG, lambda c: aggregation(c, "user_engagement").update(windows="7d")),
        ("aggregations.yaml",),
        contains=("windows", "list", "'7d'"),
    ),
    Case(
        "view_column_typo_did_you_mean",
        edit_yaml(UP, lambda v: feature(v, "follower_count").update(column="folower_count")),
        ("user_profile.yaml",),
        contains=("folower_count", "did you mean 'follower_count'"),
    ),
    Case(
        "view_string_column_declared_int64",
        edit_yaml(UP, lambda v: feature(v, "country").update(dtype="int64")),
        ("user_profile.yaml",),
        contains=("country", "Country", "string", "int64"),
    ),
    Case(
        "empty_parquet_file_in_range",
        lambda d: file_of("user_profile", "2026-04-02")(
            sorted((d / "data/demo/sources").rglob("*.parquet"))
        ).write_bytes(b""),
        ("user_profile/dt=2026-04-02",),
        contains=("empty", "0 bytes"),
    ),
    Case(
        "corrupt_pages_behind_a_good_footer",  # found by the lint's read of the timestamps
        lambda d: _corrupt_pages(
            file_of("user_profile", "2026-04-02")(sorted((d / "data/demo/sources").rglob("*.parquet")))
        ),
        ("user_profile/dt=2026-04-02",),
        contains=("unreadable parquet data",),
    ),
    Case(
        "hand_plan_engine_typo",
        hand_plan(lambda p: operator(p, "window_agg.user_engagement").update(engine="sqll")),
        ("pipelines/dssm_ranking.yaml",),
        contains=("engine", "'sqll'", "pythonic", "did you mean 'sql'"),
    ),
    Case(
        "hand_plan_derive_dtype_int128",
        hand_plan(lambda p: operator(p, "derive.user_profile")["params"]["features"][0].update(dtype="int128")),
        ("pipelines/dssm_ranking.yaml",),
        contains=("derive.user_profile", "dtype", "'int128'"),
    ),
    Case(
        "hand_plan_output_type_int7",
        hand_plan(lambda p: operator(p, "derive.user_profile")["outputs"][0].update(type="int7")),
        ("pipelines/dssm_ranking.yaml",),
        contains=("'int7'",),
    ),
    Case(
        "hand_plan_source_column_changed_kind",
        hand_plan(lambda p: p["sources"]["view.user_profile"]["columns"].update(follower_count="string")),
        ("pipelines/dssm_ranking.yaml",),
        contains=("view.user_profile", "follower_count", "string", "int64"),
    ),
    Case(
        "hand_plan_old_format",
        hand_plan(lambda p: p.update(format=1)),
        ("pipelines/dssm_ranking.yaml",),
        contains=("format", "recompile"),
    ),
    # ---- compile -------------------------------------------------------------------------------
    Case(
        "compile_view_bad_dtype",
        edit_yaml(UP, lambda v: feature(v, "follower_count").update(dtype="flot64")),
        ("user_profile.yaml",),
        args=tuple(COMPILE),
        contains=("dtype",),
    ),
    Case(
        "compile_expr_with_semicolon",
        edit_yaml(UP, lambda v: feature(v, "log_followers").update(expr="ln(1 + follower_count); select 1")),
        ("user_profile.yaml",),
        args=tuple(COMPILE),
        contains=("log_followers",),
    ),
    Case(
        "compile_service_unknown_aggregation",
        edit_yaml(SVC, lambda s: s["aggregations"].append("no_such_agg")),
        ("dssm_ranking.yaml",),
        args=tuple(COMPILE),
        contains=("no_such_agg",),
    ),
    Case(
        "compile_aggregation_config_path_missing",
        nothing,
        ("--aggregation-config-path", "missing_aggs.yaml"),
        args=(*COMPILE, "--aggregation-config-path", "config/training/missing_aggs.yaml"),
    ),
]

assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    """A private temporary directory for this module.

    Not pytest's tmp_path_factory: its basetemp keeps only the 3 latest sessions, so concurrent pytest
    runs by other people on this machine can delete a running module's directories.
    Set DAEDA_KEEP_INVALID_TMP=1 to keep it for inspection.
    """
    d = Path(tempfile.mkdtemp(prefix="daeda_invalid_inputs_"))
    yield d
    if not os.environ.get("DAEDA_KEEP_INVALID_TMP"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def prepared(workspace: Path) -> Path:
    """A working directory with definitions, small demo data and a good skeleton output root."""
    d = workspace / "prepared"
    d.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "feature_views", d / "feature_views", ignore=ignore)
    shutil.copytree(REPO / "feature_services", d / "feature_services", ignore=ignore)
    (d / "config").mkdir()
    shutil.copytree(REPO / "config/training", d / "config/training", ignore=ignore)
    shutil.copy2(REPO / "config/config.yaml", d / "config/config.yaml")

    r = _run(
        [
            "demo",
            "--out",
            "data/demo",
            "--start",
            "2026-04-01",
            # Two days past the run: the label window (1d) waits for the likes of D + 2.
            "--end",
            "2026-04-04",
            "--lookback-days",
            "31",
            "--users",
            "40",
            "--artworks",
            "60",
            "--events-per-day",
            "150",
        ],
        d,
    )
    assert r.returncode == 0, r.stderr
    set_runtime(feed_start="2026-04-01", feed_end="2026-04-02")(d)

    r = _run(TRAIN, d)
    assert r.returncode == 0, f"preparing the good output root failed:\n{r.stdout}\n{r.stderr}"
    assert any((d / OUTPUT_ROOT).rglob("part-*.parquet")), "no skeleton output was written"

    # The compiled plan, to hand-edit into config/pipelines/dssm_ranking.yaml in some cases.
    r = _run([*COMPILE, "--no-write"], d)
    assert r.returncode == 0, r.stderr
    assert "operators:" in r.stdout
    (d / "compiled_plan.yaml").write_text(r.stdout)
    return d


@dataclasses.dataclass
class Result:
    case: Case
    cmd: str
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    output_before: dict[str, str] = dataclasses.field(default_factory=dict)
    output_after: dict[str, str] = dataclasses.field(default_factory=dict)
    plans_before: dict[str, str] = dataclasses.field(default_factory=dict)
    plans_after: dict[str, str] = dataclasses.field(default_factory=dict)
    error: BaseException | None = None


def _run_case(case: Case, prepared: Path, base: Path) -> Result:
    res = Result(case, "daeda " + " ".join(case.args))
    try:
        d = base / case.id
        shutil.copytree(prepared, d, symlinks=True)
        case.mutate(d)
        res.output_before = tree_hashes(d / OUTPUT_ROOT)
        res.plans_before = tree_hashes(d / "config/pipelines")
        r = _run(list(case.args), d)
        res.returncode, res.stdout, res.stderr = r.returncode, r.stdout, r.stderr
        res.output_after = tree_hashes(d / OUTPUT_ROOT)
        res.plans_after = tree_hashes(d / "config/pipelines")
    except BaseException as e:  # recorded, re-raised by the case's own test
        res.error = e
    return res


# Not an invalid input: the harness itself. An unmodified copy must be up to date (the copy keeps
# mtimes and .snakemake), so a failure elsewhere is not an artefact of copying.
CONTROL = Case("control_unmodified_copy", nothing, ())


@pytest.fixture(scope="module")
def results(prepared: Path, workspace: Path) -> dict[str, Result]:
    base = workspace / "cases"
    base.mkdir()
    workers = max(2, min(4, (os.cpu_count() or 2) + 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        # the slowest (a real, if no-op, Snakemake run) first
        futures = {c.id: pool.submit(_run_case, c, prepared, base) for c in [CONTROL, *CASES]}
        return {cid: f.result() for cid, f in futures.items()}


# --------------------------------------------------------------------------------------------------
# tests


def _describe(res: Result) -> str:
    return (
        f"case {res.case.id}: `{res.cmd}` exited {res.returncode}\n"
        f"--- stderr ---\n{res.stderr}--- stdout ---\n{res.stdout[-2000:]}"
    )


def _diff(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"added={added} removed={removed} changed={changed}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_input_is_one_clean_error(case: Case, results: dict[str, Result]) -> None:
    res = results[case.id]
    if res.error is not None:
        raise res.error
    assert res.output_before, f"case {case.id}: the output root should exist before the run"

    # Collect every violation, so one failure report shows all that is wrong with a case.
    problems: list[str] = []
    if res.returncode in (0, None):
        problems.append(f"exit status {res.returncode}, expected non-zero")
    if "Traceback" in res.stderr or "Traceback" in res.stdout or TRACEBACK_FRAME_RE.search(res.stderr + res.stdout):
        problems.append("a traceback (or traceback frames) was printed")
    lines = res.stderr.splitlines()
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, expected exactly one")
    error_lines = [ln for ln in lines if ln.startswith(ERROR_PREFIX)]
    line = error_lines[-1] if error_lines else (lines[0] if lines else "")
    m = LINE_RE.match(line)
    if not m:
        problems.append(f"no `daeda: error: <file or option>: <problem>` line (got {line!r})")
    else:
        where = m.group("where")
        if where.startswith("internal"):
            problems.append("an internal error, not a validation error")
        if not any(w in where for w in case.where):
            problems.append(f"the error names {where!r}, expected one of {case.where}")
        problems += [f"the error does not mention {text!r}" for text in case.contains if text not in line]
    if res.output_after != res.output_before:
        problems.append(f"the output root changed: {_diff(res.output_before, res.output_after)}")

    assert not problems, "\n".join(["", *problems, _describe(res)])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_input_leaves_compiled_plans_alone(case: Case, results: dict[str, Result]) -> None:
    """ "before any output is touched": config/pipelines/* (generated plan, targets) are not rewritten."""
    res = results[case.id]
    if res.error is not None:
        raise res.error
    assert res.plans_after == res.plans_before, (
        f"config/pipelines changed: {_diff(res.plans_before, res.plans_after)}\n{_describe(res)}"
    )


def test_control_unmodified_copy_is_up_to_date(results: dict[str, Result]) -> None:
    """The harness: an unmodified copy re-runs cleanly and rewrites no data file in the output root.

    (Run logs under `.daedalus/logs/` are left out of this control only; the invalid-input cases above
    compare every file, logs included.)
    """
    res = results[CONTROL.id]
    if res.error is not None:
        raise res.error
    assert res.returncode == 0, _describe(res)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, _describe(res)

    def data(h: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in h.items() if not k.startswith(".daedalus/logs/")}

    assert data(res.output_after) == data(res.output_before), _diff(data(res.output_before), data(res.output_after))
