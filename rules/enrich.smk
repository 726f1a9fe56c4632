# The enrich stage: one Ray Data job per day over that day's skeleton output.


rule enrich_day:
    input:
        skeleton=WF.layout.record("skeleton", "{day}"),
    output:
        # The day's published record; the job swaps <root>_enriched/dt=<day>/ in place
        # (the job takes the output root from this path: daedalus.layout).
        WF.layout.record("enrich", "{day}"),
    params:
        plan=WF.plan_path,
        digest=WF.enrich_digest,  # embeddings, store and store version (params trigger)
        runtime=WF.config.runtime_config_path,
    threads: WF.job_threads
    resources:
        mem_mb=WF.enrich_mem_mb,
    log:
        f"{STATE}/logs/enrich/dt={{day}}.log",
    benchmark:
        f"{STATE}/benchmarks/enrich/dt={{day}}.tsv"
    conda:
        CONDA_ENV
    # daedalus_job (rules/common.smk) adds the run's settings (days, day workers, Ray).
    shell:
        "daedalus_job enrich --day {wildcards.day} --plan {params.plan:q} --runtime {params.runtime:q} "
        "--digest {params.digest} --record {output:q} --log {log:q} --threads {threads}"


rule enrich_all:
    input:
        WF.enrich_targets,
