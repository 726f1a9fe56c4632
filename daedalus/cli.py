"""The `daeda` command line (contract section 8)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from daedalus.errors import DaedalusError

try:  # typer vendors its own click since 0.2x; its exceptions are not click's
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover
    from click import exceptions as click  # type: ignore[no-redef]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Daedalus: feature definitions in, per-day training parquet out.")
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
OutputRootOpt = Annotated[Optional[Path], typer.Option("--output-root", help="Overrides output_root.")]
TargetDateOpt = Annotated[Optional[str], typer.Option("--target-date", help="Only this day (YYYY-MM-DD).")]
Strict = Annotated[bool, typer.Option("--strict", help="Fail (exit 2) on leakage warnings instead of only printing them.")]


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
    from daedalus.lint import lint, report

    for line in compiled.warnings:  # about the input files, not leakage: --strict does not count them
        print(f"daeda: warning: {line}", file=sys.stderr)
    report(lint(compiled), strict=strict)


@pipeline.command("compile")
def compile_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name (feature_services/<name>.yaml).")],
    feature_views_dir: FeatureViewsDir = Path("feature_views"),
    feature_services_dir: FeatureServicesDir = Path("feature_services"),
    runtime_config_path: RuntimePath = Path("config/training/runtime.yaml"),
    aggregation_config_path: AggPath = Path("config/training/aggregations.yaml"),
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where <service>.generated.yaml goes.")] = Path("config/pipelines"),
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
    day_workers: Annotated[Optional[int], typer.Option("--day-workers", help="Days computed at once.")] = None,
    skeleton_only: Annotated[bool, typer.Option("--skeleton-only", help="Only the skeleton stage.")] = False,
    enrich_only: Annotated[bool, typer.Option("--enrich-only", help="Only the enrich stage (needs the skeleton).")] = False,
    ray_num_cpus: Annotated[Optional[int], typer.Option("--ray-num-cpus", help="Logical CPUs of the local Ray.")] = None,
    profile: Annotated[Optional[str], typer.Option("--profile", help="Snakemake profile: a directory, or a shipped one by name (slurm).")] = None,
    cores: Annotated[Optional[int], typer.Option("--cores", help="Cores Snakemake may use (default: DuckDB threads).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Snakemake's (and Ray's) own output.")] = False,
    snakemake_args: Annotated[Optional[list[str]], typer.Option("--snakemake-arg", help="Extra argument passed to snakemake (repeatable).")] = None,
    strict: Strict = False,
) -> None:
    """Run the skeleton (and enrich) stage over the configured days through Snakemake."""
    from daedalus.compile import compile_service
    from daedalus.runner import SnakemakeRun, resolve_profile, workflow_config

    if skeleton_only and enrich_only:
        raise DaedalusError("--skeleton-only", "cannot be combined with --enrich-only")
    if day_workers is not None and day_workers < 1:
        raise DaedalusError("--day-workers", f"must be at least 1, got {day_workers}")
    if ray_num_cpus is not None and ray_num_cpus < 1:
        raise DaedalusError("--ray-num-cpus", f"must be at least 1, got {ray_num_cpus}")
    if cores is not None and cores < 1:
        raise DaedalusError("--cores", f"must be at least 1, got {cores}")
    day = _parse_day(target_date, "--target-date")
    prof = resolve_profile(profile) if profile else None
    paths = _paths(feature_views_dir, feature_services_dir, runtime_config_path, aggregation_config_path)
    # Everything compile checks, before Snakemake starts or any output is touched.
    # (No plan files written here: the Snakefile writes them, and only once the lock below
    # is held and the output root is known to be writable.)
    compiled = compile_service(service, paths, output_dir=None, output_root=str(output_root) if output_root else None,
                               target_date=day)
    runtime = compiled.definitions.runtime
    root = str(output_root) if output_root else runtime.output_root
    workers = day_workers or runtime.day_workers
    stage = "skeleton" if skeleton_only else "enrich" if enrich_only else "all"
    has_embeddings = bool(compiled.plan.ops("embed"))
    from daedalus.layout import Layout

    layout = Layout.of(root)
    if enrich_only:
        if not has_embeddings:
            raise DaedalusError("--enrich-only", f"service {service!r} has no embeddings to enrich")
        missing = [d for d in compiled.days if not layout.published("skeleton", d.isoformat())]
        if missing:
            raise DaedalusError("--enrich-only", f"no finished skeleton output for {len(missing)} day(s) (first: "
                                f"{layout.day_dir('skeleton', missing[0].isoformat())}); run the skeleton stage first")
    config = workflow_config(service, paths, root, target_date=day.isoformat() if day else None, stage=stage,
                             day_workers=workers, ray_num_cpus=ray_num_cpus)
    if strict:  # a --strict failure comes before the lock, so it creates nothing
        _lint(compiled, strict)
    # One train per root (released by the kernel even on SIGKILL), so Snakemake's own lock,
    # which a kill leaves behind, is not needed: --nolock.
    from daedalus.enrich.cluster import stop_recorded_head
    from daedalus.runlock import acquire_train_lock

    lock = acquire_train_lock(root, "--output-root" if output_root else str(runtime_config_path))
    head_record = layout.ray_head_record
    stop_recorded_head(head_record)  # a head left running by a killed run on this root
    from daedalus.atomic import remove_stale_temps

    for r in (Path(layout.root), Path(layout.enriched_root)):
        remove_stale_temps(r, "")  # hidden half-written days of a killed run: no run can own them now
    if not strict:  # warnings after every check of the input and the lock: a refused run prints one line
        _lint(compiled, strict)
    n_cores = cores or max(workers, runtime.duckdb.threads)
    console.print(f"[bold]{service}[/bold]: {len(compiled.days)} day(s) "
                  f"{compiled.days[0]}..{compiled.days[-1]} -> {root} ({stage}, "
                  + (f"executor {prof.executor} ({prof.path.name} profile))" if prof and prof.remote
                     else f"{workers} day worker(s), {n_cores} cores)"))
    extra = ["--nolock", *(["--profile", str(prof.path)] if prof else []), *(snakemake_args or [])]
    run = SnakemakeRun(config=config, targets=["all"], cores=n_cores, verbose=verbose, extra_args=extra)
    # Nothing changed since Snakemake last found nothing to do: skip it (daedalus/uptodate.py).
    from daedalus import uptodate
    from daedalus.runner import workflow_dir
    from daedalus.workflow import Workflow, WorkflowConfig

    wf = Workflow(WorkflowConfig.from_mapping(config), compiled, runtime)
    command, wf_dir = run.command(), workflow_dir()
    fp = uptodate.fingerprint(wf, command, wf_dir)
    if uptodate.matches(root, fp):
        lock.release()
        console.print("[dim]nothing to do: every output is up to date (nothing changed since "
                      "Snakemake last checked)[/dim]")
        console.print(f"[green]done[/green]: {root}")
        return
    uptodate.clear(root)
    head = None
    worker = None
    try:
        if not (prof and prof.remote):
            # One warm process per day worker for the run's small days (daedalus.worker): they
            # warm up while Snakemake starts, and every small day job after that is cheap.
            from daedalus import worker as warm

            worker = warm.start(workers, layout.log("worker"))
            run.env.update(worker.env)
        attach = os.environ.get("RAY_ADDRESS") or runtime.ray.address
        if prof and prof.remote and stage != "skeleton" and has_embeddings and not attach:
            console.print(f"[dim]executor {prof.executor}: each enrich job starts a Ray on its node "
                          "(set ray.address in runtime.yaml to use a Ray cluster)[/dim]")
        elif stage != "skeleton" and has_embeddings and not attach and _has_big_day(compiled, runtime):
            # One local Ray head for the whole run: each big day's job attaches instead of paying
            # Ray's start-up (seconds) per day. Only when some enrich job will run; small days
            # are enriched without Ray.
            if run.jobs_to_run().get("enrich_day"):
                from daedalus.enrich.cluster import start_local_head

                # This head is ours alone and listens on loopback: no token auth, and Ray must
                # not swap 127.0.0.1 for the machine's external address when jobs attach.
                local = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
                os.environ.update(local)
                head = start_local_head(ray_num_cpus or runtime.ray.num_cpus, None, record=head_record,
                                        object_store_memory=runtime.ray.object_store_bytes)
                run.env.update(local)
                run.env["RAY_ADDRESS"] = head
                console.print(f"[dim]ray head for this run: {head}[/dim]")
        rc = run.run(console)
        if rc == 0 and run.nothing_to_do and fp is not None and uptodate.fingerprint(wf, command, wf_dir) == fp:
            uptodate.record(root, fp)  # Snakemake found nothing to do in exactly this state
    finally:
        if head is not None:
            from daedalus.enrich.cluster import stop_head

            stop_head()
        if worker is not None:
            worker.stop()
        lock.release()
    if rc != 0:
        raise DaedalusError("train", f"snakemake failed (exit {rc}); its log: {run.log_path or '.snakemake/log/'}; "
                            f"job logs: {root}/.daedalus/logs/")
    console.print(f"[green]done[/green]: {root}")


def _has_big_day(compiled, runtime) -> bool:
    """Whether some day of the run has more spine rows than `small_day_rows` (from the spine's
    parquet footers; an unpartitioned spine counts as one day)."""
    import pyarrow.parquet as pq

    sf = compiled.sources.get("spine")
    if sf is None:
        return True
    limit = runtime.small_day_rows
    files = compiled.run_files("spine")
    if not sf.partitioned:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files) > limit
    per_day: dict = {}
    for f, d in zip(sf.files, sf.days):
        if d in compiled.days:
            per_day[d] = per_day.get(d, 0) + pq.ParquetFile(f).metadata.num_rows
    return any(n > limit for n in per_day.values())


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
    will be rewritten), interrupted run. Exit status: 0 when every day is done, 3 otherwise,
    2 on invalid input.
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
    status = pipeline_status(run, service=service, root=root, days=[d.isoformat() for d in compiled.days],
                             has_embeddings=bool(compiled.plan.ops("embed")),
                             has_qid_map=bool(compiled.plan.spine.params.session_field))
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
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
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
    from daedalus.atomic import temp_sibling

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@pipeline.command("report")
def report_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    feature_views_dir: FeatureViewsDir = Path("feature_views"),
    feature_services_dir: FeatureServicesDir = Path("feature_services"),
    runtime_config_path: RuntimePath = Path("config/training/runtime.yaml"),
    aggregation_config_path: AggPath = Path("config/training/aggregations.yaml"),
    output_root: Annotated[Optional[Path], typer.Option("--output-root", help="Overrides output_root.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file (default: <output_root>/.daedalus/report.html).")] = None,
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


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the demo data goes.")] = Path("data/demo"),
    start: Annotated[str, typer.Option("--start", help="First feed day (YYYY-MM or YYYY-MM-DD).")] = "2026-04",
    end: Annotated[str, typer.Option("--end", help="Last feed day (YYYY-MM or YYYY-MM-DD).")] = "2026-05",
    lookback_days: Annotated[int, typer.Option("--lookback-days", help="Days of history before --start.")] = 31,
    users: Annotated[int, typer.Option("--users")] = 2000,
    artworks: Annotated[int, typer.Option("--artworks")] = 5000,
    events_per_day: Annotated[int, typer.Option("--events-per-day")] = 3000,
    scale: Annotated[float, typer.Option("--scale", help="Multiplies users, artworks and events (e.g. 500 for ~20M events over 14 days).")] = 1.0,
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
    params = {"start": first.isoformat(), "end": last.isoformat(), "lookback_days": lookback_days,
              "users": max(1, round(users * scale)), "artworks": max(1, round(artworks * scale)),
              "events_per_day": max(1, round(events_per_day * scale)), "embedding_dim": embedding_dim, "seed": seed}
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
    summary = generate_demo(out_dir, start=first, end=last, lookback_days=lookback_days,
                            users=params["users"], artworks=params["artworks"],
                            events_per_day=params["events_per_day"], embedding_dim=embedding_dim, seed=seed)
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(params, sort_keys=True))
    os.replace(tmp, manifest)
    rows = summary["rows"]
    console.print(f"demo data in {out_dir}: {summary['first_day']}..{summary['last_day']}, "
                  f"{rows['feed']:,} feed rows, {rows['likes']:,} likes, {summary['embeddings']:,} vectors")


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
            print(f"daeda: error: internal: {type(e).__name__}: {' '.join(str(e).split())} (rerun with --debug for the traceback)",
                  file=sys.stderr)
        sys.exit(1)
