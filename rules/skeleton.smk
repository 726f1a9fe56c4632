# The skeleton stage: one DuckDB job per day, plus the qid bookkeeping around them.


def skeleton_inputs(wildcards):
    inputs = WF.skeleton_inputs(wildcards.day)
    if WF.has_sessions:
        # ancient: a new qid for one day must not make every other day look stale.
        inputs["qids"] = ancient(f"{STATE}/qid/assigned.json")
    return inputs


if WF.has_sessions:

    rule qid_assign:
        input:
            spine=WF.qid_inputs(),
        output:
            f"{STATE}/qid/assigned.json",
        params:
            plan=WF.plan_path,
            root=ROOT,
            days=WF.days,
        log:
            f"{STATE}/logs/qid_assign.log",
        benchmark:
            f"{STATE}/benchmarks/qid_assign.tsv"
        script:
            "../scripts/qid_assign.py"

    rule qid_map:
        input:
            WF.skeleton_targets,
        output:
            f"{ROOT}/qid_map.parquet",
        params:
            root=ROOT,
            session_field=WF.compiled.plan.op("spine").typed_params().session_field,
        log:
            f"{STATE}/logs/qid_map.log",
        benchmark:
            f"{STATE}/benchmarks/qid_map.tsv"
        script:
            "../scripts/qid_map.py"


rule skeleton_day:
    input:
        unpack(skeleton_inputs),
    output:
        directory(f"{ROOT}/dt={{day}}"),
    params:
        plan=WF.plan_path,
        digest=WF.compiled.digest,  # a definition change reruns the days (params trigger)
        runtime=WF.config.runtime_config_path,
        root=ROOT,
        source_keys=WF.source_keys(),
    threads: WF.job_threads
    resources:
        mem_mb=WF.job_mem_mb,
    log:
        f"{STATE}/logs/skeleton/dt={{day}}.log",
    benchmark:
        f"{STATE}/benchmarks/skeleton/dt={{day}}.tsv"
    script:
        "../scripts/skeleton.py"


rule skeleton_all:
    input:
        WF.skeleton_targets,
        [f"{ROOT}/qid_map.parquet"] if WF.has_sessions else [],
