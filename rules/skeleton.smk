# The skeleton stage: one DuckDB job per day, and qid_map.parquet after them.


# qids are assigned inside the day jobs (the first job that meets an unknown session assigns
# every new session of the run's days at once, under a lock), so no file that changes with
# qids is an input of any day: a new qid never makes another day look stale.


if WF.has_sessions:

    # qid_map.parquet lists the sessions present in the day outputs, so it follows them.
    rule qid_map:
        input:
            WF.skeleton_targets,
        output:
            # The job takes the output root from this path (daedalus.layout).
            WF.layout.qid_map_record,
        params:
            session_field=WF.compiled.plan.spine.params.session_field,
        log:
            f"{STATE}/logs/qid_map.log",
        benchmark:
            f"{STATE}/benchmarks/qid_map.tsv"
        conda:
            CONDA_ENV
        shell:
            "daedalus_job qid_map --session-field {params.session_field:q} --record {output:q} --log {log:q}"


rule skeleton_day:
    input:
        # Per source, exactly the files of the day's look-back (daedalus.workflow).
        unpack(lambda wildcards: WF.skeleton_inputs(wildcards.day)),
    output:
        # The day's published record; the job swaps <root>/dt=<day>/ in place and takes the
        # output root from this path (daedalus.layout).
        WF.layout.record("skeleton", "{day}"),
    params:
        plan=WF.plan_path,
        digest=WF.compiled.digest,  # a definition change reruns the days (params trigger)
        runtime=WF.config.runtime_config_path,
    threads: WF.job_threads
    resources:
        mem_mb=WF.job_mem_mb,
    log:
        f"{STATE}/logs/skeleton/dt={{day}}.log",
    benchmark:
        f"{STATE}/benchmarks/skeleton/dt={{day}}.tsv"
    conda:
        CONDA_ENV
    # The run's days and day workers come from the config (daedalus_job in rules/common.smk
    # adds them), not from params: extending the range must not change the params (and so
    # rerun) of the days written.
    shell:
        "daedalus_job skeleton --day {wildcards.day} --plan {params.plan:q} --runtime {params.runtime:q} "
        "--digest {params.digest} --record {output:q} --log {log:q} --threads {threads}"


rule skeleton_all:
    input:
        WF.skeleton_targets,
        WF.qid_map_targets,
