"""The `daeda` command line (contract section 8)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from daedalus.errors import DaedalusError

try:  # typer vendors its own click since 0.2x; its exceptions are not click's
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover
    from click import exceptions as click  # type: ignore[no-redef]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Daedalus: feature definitions in, per-day training parquet out.",
)
pipeline = typer.Typer(no_args_is_help=True, help="Compile and run a feature service's pipeline.")
app.add_typer(pipeline, name="pipeline")
console = Console(stderr=True)
out = Console()
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


FeatureViewsDir = Annotated[Path, typer.Option("--feature-views-dir", help="Feature view YAML files.")]
FeatureServicesDir = Annotated[Path, typer.Option("--feature-services-dir", help="Feature service YAML files.")]
RuntimePath = Annotated[Path, typer.Option("--runtime-config-path", help="Runtime config.")]
AggPath = Annotated[Path, typer.Option("--aggregation-config-path", help="Aggregations and embeddings config.")]
OutputRootOpt = Annotated[Path | None, typer.Option("--output-root", help="Overrides output_root.")]
TargetDateOpt = Annotated[str | None, typer.Option("--target-date", help="Only this day (YYYY-MM-DD).")]
Strict = Annotated[
    bool, typer.Option("--strict", help="Fail (exit 2) on leakage warnings instead of only printing them.")
]


def _paths(fv: Path, fs: Path, rt: Path, ag: Path):
    from daedalus.loading import DefinitionPaths

    return DefinitionPaths(fv, fs, rt, ag)


def _parse_day(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise DaedalusError(option, f"invalid date {text!r}: expected YYYY-MM-DD") from None


def _lint(compiled, strict: bool) -> None:
    from daedalus.session import lint

    lint(compiled, strict)


@pipeline.command("compile")
def compile_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name (feature_services/<name>.yaml).")],
    feature_views_dir: FeatureViewsDir = Path("feature_views"),
    feature_services_dir: FeatureServicesDir = Path("feature_services"),
    runtime_config_path: RuntimePath = Path("config/training/runtime.yaml"),
    aggregation_config_path: AggPath = Path("config/training/aggregations.yaml"),
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where <service>.generated.yaml goes.")] = Path(
        "config/pipelines"
    ),
    no_write: Annotated[bool, typer.Option("--no-write", help="Only print the plan.")] = False,
    strict: Strict = False,
) -> None:
    """Validate the definitions and write the operator DAG (config/pipelines/<service>.generated.yaml)."""
    from daedalus.compile import compile_service

    paths = _paths(feature_views_dir, feature_services_dir, runtime_config_path, aggregation_config_path)
    compiled = compile_service(service, paths, output_dir=None if no_write else output_dir)
    _lint(compiled, strict)
    sys.stdout.write(compiled.generated_yaml)


@pipeline.command("train")
def train_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    feature_views_dir: FeatureViewsDir = Path("feature_views"),
    feature_services_dir: FeatureServicesDir = Path("feature_services"),
    runtime_config_path: RuntimePath = Path("config/training/runtime.yaml"),
    aggregation_config_path: AggPath = Path("config/training/aggregations.yaml"),
    output_root: OutputRootOpt = None,
    target_date: TargetDateOpt = None,
    day_workers: Annotated[int | None, typer.Option("--day-workers", help="Days computed at once.")] = None,
    skeleton_only: Annotated[bool, typer.Option("--skeleton-only", help="Only the skeleton stage.")] = False,
    enrich_only: Annotated[
        bool, typer.Option("--enrich-only", help="Only the enrich stage (needs the skeleton).")
    ] = False,
    ray_num_cpus: Annotated[int | None, typer.Option("--ray-num-cpus", help="Logical CPUs of the local Ray.")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Snakemake profile: a directory, or a shipped one by name (slurm).")
    ] = None,
    cores: Annotated[
        int | None, typer.Option("--cores", help="Cores Snakemake may use (default: DuckDB threads).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Snakemake's (and Ray's) own output.")] = False,
    snakemake_args: Annotated[
        list[str] | None, typer.Option("--snakemake-arg", help="Extra argument passed to snakemake (repeatable).")
    ] = None,
    strict: Strict = False,
) -> None:
    """Run the skeleton (and enrich) stage over the configured days through Snakemake."""
    from daedalus.session import TrainOptions, TrainSession

    if skeleton_only and enrich_only:
        raise DaedalusError("--skeleton-only", "cannot be combined with --enrich-only")
    for flag, value in (("--day-workers", day_workers), ("--ray-num-cpus", ray_num_cpus), ("--cores", cores)):
        if value is not None and value < 1:
            raise DaedalusError(flag, f"must be at least 1, got {value}")
    options = TrainOptions(
        output_root=str(output_root) if output_root else None,
        target_date=_parse_day(target_date, "--target-date"),
        day_workers=day_workers,
        stage="skeleton" if skeleton_only else "enrich" if enrich_only else "all",
        ray_num_cpus=ray_num_cpus,
        profile=profile,
        cores=cores,
        verbose=verbose,
        snakemake_args=list(snakemake_args or []),
        strict=strict,
        root_option="--output-root" if output_root else str(runtime_config_path),
    )
    paths = _paths(feature_views_dir, feature_services_dir, runtime_config_path, aggregation_config_path)
    TrainSession(service, paths, options, console).run()


@pipeline.command("status")
def status_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    feature_views_dir: FeatureViewsDir = Path("feature_views"),
    feature_services_dir: FeatureServicesDir = Path("feature_services"),
    runtime_config_path: RuntimePath = Path("config/training/runtime.yaml"),
    aggregation_config_path: AggPath = Path("config/training/aggregations.yaml"),
    output_root: OutputRootOpt = None,
    target_date: TargetDateOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show which days are done, stale (and why) or missing, per stage.

    The answer is Snakemake's: a dry run of the workflow `train` would run, each planned job
    with its reason. Reasons: source changed (a file the day reads changed, or the set of
    files did), definition changed (the compiled plan's digest), code changed (the rule's
    command changed since the day was written), skeleton changed (an enrich day whose skeleton day is or
    will be rewritten), interrupted run. A day whose label windows reach past the data is
    `waiting` (not written until that data arrives). Exit status: 0 when every day is done
    or waiting, 3 otherwise, 2 on invalid input.
    """
    from daedalus.compile import compile_service
    from daedalus.runner import SnakemakeRun, workflow_config
    from daedalus.status import pipeline_status, render

    day = _parse_day(target_date, "--target-date")
    paths = _paths(feature_views_dir, feature_services_dir, runtime_config_path, aggregation_config_path)
    compiled = compile_service(service, paths, output_root=str(output_root) if output_root else None, target_date=day)
    root = str(output_root) if output_root else compiled.definitions.runtime.output_root
    config = workflow_config(service, paths, root, target_date=day.isoformat() if day else None)
    run = SnakemakeRun(config=config, targets=["all"], cores=1)
    status = pipeline_status(
        run,
        service=service,
        root=root,
        days=[d.isoformat() for d in compiled.days],
        has_embeddings=bool(compiled.plan.ops("embed")),
        has_qid_map=bool(compiled.plan.spine.params.session_field),
        plan=compiled.plan if compiled.definitions.runtime.skeleton.incremental else None,
        waiting={d.isoformat(): why for d, why in compiled.waiting.items()},
    )
    if as_json:
        sys.stdout.write(status.to_json() + "\n")
    else:
        render(status, out)
    sys.stdout.flush()
    raise SystemExit(status.exit_code)


@pipeline.command("dag")
def dag_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    feature_views_dir: FeatureViewsDir = Path("feature_views"),
    feature_services_dir: FeatureServicesDir = Path("feature_services"),
    runtime_config_path: RuntimePath = Path("config/training/runtime.yaml"),
    aggregation_config_path: AggPath = Path("config/training/aggregations.yaml"),
    fmt: Annotated[str, typer.Option("--format", help="svg, png or dot.")] = "svg",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Draw the compiled operator DAG (the hand-edited plan when present), engines coloured.

    Sources (path, look-back), operators (name, kind, engine, output columns) and output
    files. SVG and PNG come from Graphviz's `dot` when it is installed, else from Daedalus's
    own layered layout (SVG written directly, PNG drawn with Pillow); `dot` prints the
    Graphviz source.
    """
    from daedalus.compile import compile_service
    from daedalus.dagviz import FORMATS, plan_graph, render

    if fmt not in FORMATS:
        raise DaedalusError("--format", f"unknown format {fmt!r} (choose one of: {', '.join(FORMATS)})")
    paths = _paths(feature_views_dir, feature_services_dir, runtime_config_path, aggregation_config_path)
    compiled = compile_service(service, paths)
    data = render(plan_graph(compiled.plan, compiled.definitions.runtime.output_root), fmt)
    if output is None:
        if fmt == "png" and sys.stdout.isatty():
            raise DaedalusError("--output", "a PNG is binary: give --output FILE (or redirect stdout)")
        sys.stdout.buffer.write(data)
        return
    _write_bytes(output, data)
    console.print(f"wrote {output}")


def _write_bytes(path: Path, data: bytes) -> None:
    from daedalus.atomic import write_bytes

    write_bytes(path, data)


@pipeline.command("report")
def report_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    feature_views_dir: FeatureViewsDir = Path("feature_views"),
    feature_services_dir: FeatureServicesDir = Path("feature_services"),
    runtime_config_path: RuntimePath = Path("config/training/runtime.yaml"),
    aggregation_config_path: AggPath = Path("config/training/aggregations.yaml"),
    output_root: Annotated[Path | None, typer.Option("--output-root", help="Overrides output_root.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The HTML file (default: <output_root>/.daedalus/report.html)."),
    ] = None,
) -> None:
    """Write the data-quality report: one self-contained HTML page with plots over the days.

    Drawn from the statistics every day job writes (<output_root>/.daedalus/stats/): rows
    per day, label rates, point-in-time hit rate per view, window coverage, embedding hit
    rates, and null rates per feature and day. Inline SVG only: no script, no network.
    """
    from daedalus.compile import compile_service
    from daedalus.report import default_report_path, load_report_data, render_html

    paths = _paths(feature_views_dir, feature_services_dir, runtime_config_path, aggregation_config_path)
    compiled = compile_service(service, paths, output_root=str(output_root) if output_root else None)
    root = str(output_root) if output_root else compiled.definitions.runtime.output_root
    data = load_report_data(service, root, [d.isoformat() for d in compiled.days])
    if not data.skeleton:
        raise DaedalusError(root, "no data-quality statistics yet (.daedalus/stats/): run `daeda pipeline train` first")
    path = output or default_report_path(root)
    _write_bytes(path, render_html(data).encode())
    console.print(f"wrote {path}")


@app.command("init")
def init_cmd(
    directory: Annotated[Path, typer.Argument(help="The project folder (created if missing).")] = Path("."),
) -> None:
    """Start a project: example definitions over `daeda demo` data, and a .gitignore.

    Writes feature_views/ (two views and their Python UDFs), feature_services/dssm_ranking.yaml,
    config/training/ (runtime and aggregations) and .gitignore (data/, .snakemake/,
    .daedalus_tmp/, compiled plans). Refuses, writing nothing, when any of those files exists.
    Then, in that folder: `daeda demo` and `daeda pipeline train dssm_ranking`.
    """
    from daedalus.project import init_project

    written = init_project(directory)
    for path in written:
        console.print(f"wrote {path}")
    cd = "" if directory.resolve() == Path.cwd() else f"cd {directory} && "
    console.print(f"next: {cd}daeda demo && daeda pipeline train dssm_ranking")


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the demo data goes.")] = Path("data/demo"),
    start: Annotated[str, typer.Option("--start", help="First feed day (YYYY-MM or YYYY-MM-DD).")] = "2026-04",
    end: Annotated[str, typer.Option("--end", help="Last feed day (YYYY-MM or YYYY-MM-DD).")] = "2026-05",
    lookback_days: Annotated[int, typer.Option("--lookback-days", help="Days of history before --start.")] = 31,
    users: Annotated[int, typer.Option("--users")] = 2000,
    artworks: Annotated[int, typer.Option("--artworks")] = 5000,
    events_per_day: Annotated[int, typer.Option("--events-per-day")] = 3000,
    scale: Annotated[
        float,
        typer.Option("--scale", help="Multiplies users, artworks and events (e.g. 500 for ~20M events over 14 days)."),
    ] = 1.0,
    embedding_dim: Annotated[int, typer.Option("--embedding-dim")] = 32,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write the deterministic synthetic art-feed dataset (sources + Lance embedding store)."""
    from daedalus.demo import generate_demo
    from daedalus.timeutil import parse_month_or_day

    try:
        first = parse_month_or_day(start, end=False)
    except ValueError as e:
        raise DaedalusError("--start", str(e)) from None
    try:
        last = parse_month_or_day(end, end=True)
    except ValueError as e:
        raise DaedalusError("--end", str(e)) from None
    if last < first:
        raise DaedalusError("--end", f"{last} is before --start {first}")
    if scale <= 0:
        raise DaedalusError("--scale", f"must be positive, got {scale}")
    n_users, n_artworks, n_events = (max(1, round(n * scale)) for n in (users, artworks, events_per_day))
    params = {
        "start": first.isoformat(),
        "end": last.isoformat(),
        "lookback_days": lookback_days,
        "users": n_users,
        "artworks": n_artworks,
        "events_per_day": n_events,
        "embedding_dim": embedding_dim,
        "seed": seed,
    }
    manifest = out_dir / ".daeda-demo.json"
    expected = [out_dir / "sources" / s for s in ("feed", "user_profile", "artwork_stats", "likes")]
    expected.append(out_dir / "embeddings" / "artworks.lance")
    # Same parameters, same bytes: leave the files (and their mtimes) alone.
    if manifest.exists() and all(p.exists() for p in expected):
        try:
            if json.loads(manifest.read_text()) == params:
                console.print(f"demo data in {out_dir} is up to date")
                return
        except ValueError:
            pass
    manifest.unlink(missing_ok=True)
    summary = generate_demo(
        out_dir,
        start=first,
        end=last,
        lookback_days=lookback_days,
        users=n_users,
        artworks=n_artworks,
        events_per_day=n_events,
        embedding_dim=embedding_dim,
        seed=seed,
    )
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(params, sort_keys=True))
    os.replace(tmp, manifest)
    rows = summary["rows"]
    console.print(
        f"demo data in {out_dir}: {summary['first_day']}..{summary['last_day']}, "
        f"{rows['feed']:,} feed rows, {rows['likes']:,} likes, {summary['embeddings']:,} vectors"
    )


def _click_error(e: click.ClickException) -> str:
    where = "daeda"
    if isinstance(e, click.BadParameter) and (e.param_hint or e.param):
        hint = e.param_hint or (e.param.opts[0] if e.param and e.param.opts else e.param.name if e.param else "")
        where = hint if isinstance(hint, str) else "/".join(hint)
        where = where.strip("'\"")
    elif isinstance(e, click.NoSuchOption):
        where = e.option_name
    elif isinstance(e, click.MissingParameter) and e.param is not None:
        where = e.param.opts[0] if e.param.opts else e.param.name or where
    msg = e.format_message() if not isinstance(e, click.NoSuchOption) else "no such option"
    msg = re.sub(r"^Invalid value for [^:]*: ", "", " ".join(msg.split()))
    return f"{where}: {msg}"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="daeda", standalone_mode=False)
    except DaedalusError as e:
        if debug:
            traceback.print_exc()
        print(f"daeda: error: {e.where}: {e.problem}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("daeda: error: interrupted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as e:
        if not e.format_message().strip():  # a group called without a command: help was shown
            sys.exit(2)
        if debug:
            traceback.print_exc()
        print(f"daeda: error: {_click_error(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("daeda: error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # an unexpected bug: one line unless --debug
        if debug:
            traceback.print_exc()
        else:
            print(
                f"daeda: error: internal: {type(e).__name__}: {' '.join(str(e).split())} (rerun with --debug for the traceback)",
                file=sys.stderr,
            )
        sys.exit(1)
