# The skeleton stage: one DuckDB job per day, and qid_map.parquet after them.


# qids are assigned inside the day jobs (the first job that meets an unknown session assigns
# every new session of the run's days at once, under a lock), so no file that changes with
# qids is an input of any day: a new qid never makes another day look stale.


def skeleton_inputs(wildcards):
    return WF.skeleton_inputs(wildcards.day)


if WF.has_sessions:

    # qid_map.parquet lists the sessions present in the day outputs, so it follows them.
    rule qid_map:
        input:
            WF.skeleton_targets,
        output:
            WF.layout.qid_map_record,
        params:
            root=ROOT,
            session_field=WF.compiled.plan.spine.params.session_field,
        log:
            f"{STATE}/logs/qid_map.log",
        benchmark:
            f"{STATE}/benchmarks/qid_map.tsv"
        shell:
            "{JOB} qid_map --root {params.root:q} --session-field {params.session_field:q} --record {output:q} "
            "--log {log:q}"


rule skeleton_day:
    input:
        unpack(skeleton_inputs),
    output:
        # The day's published record; the job swaps <root>/dt=<day>/ in place (daedalus.layout).
        WF.layout.record("skeleton", "{day}"),
    params:
        plan=WF.plan_path,
        digest=WF.compiled.digest,  # a definition change reruns the days (params trigger)
        runtime=WF.config.runtime_config_path,
        root=ROOT,
    threads: WF.job_threads
    resources:
        mem_mb=WF.job_mem_mb,
    log:
        f"{STATE}/logs/skeleton/dt={{day}}.log",
    benchmark:
        f"{STATE}/benchmarks/skeleton/dt={{day}}.tsv"
    # The run's days and day workers come from the config (WF.job_options), not from params:
    # extending the range must not change the params (and so rerun) of the days written.
    shell:
        "{JOB} skeleton --day {wildcards.day} --plan {params.plan:q} --runtime {params.runtime:q} "
        "--root {params.root:q} --digest {params.digest} --record {output:q} --log {log:q} "
        "--threads {threads} {WF.job_options}"


rule skeleton_all:
    input:
        WF.skeleton_targets,
        WF.qid_map_targets,
