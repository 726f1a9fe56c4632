# Per-source-day state (daedalus.skeleton.state): made once per source day and read by every
# day whose look-back holds it, instead of the raw partitions. One job per (kind, source,
# source day) makes every state of that kind over that source (each file's path carries its
# operator and digest, so an operator that did not change keeps its state); its output is the
# record listing them. Its inputs are exactly the partitions those files stand for
# (daedalus.workflow.state_inputs).


rule state_partials:
    input:
        lambda wildcards: WF.state_inputs("partials", wildcards.source, wildcards.day),
    output:
        # The job takes the output root from this path (daedalus.job.root_of_record).
        WF.layout.state_record("partials", "{source}", "{day}"),
    params:
        plan=WF.plan_path,
        # the states this job makes (params trigger)
        digest=lambda wildcards: WF.state_digest("partials", wildcards.source),
        runtime=WF.config.runtime_config_path,
    log:
        f"{STATE}/logs/state/partials/{{source}}/dt={{day}}.log",
    conda:
        CONDA_ENV
    shell:
        "daedalus_job state --state-kind partials --state-source {wildcards.source} --day {wildcards.day} "
        "--plan {params.plan:q} --runtime {params.runtime:q} --record {output:q} --log {log:q}"


# Made from the previous day's snapshot and one partition; the job makes the previous one
# first when it is not current (so any order of the jobs gives the same work).
rule state_snapshot:
    input:
        lambda wildcards: WF.state_inputs("snapshot", wildcards.source, wildcards.day),
    output:
        WF.layout.state_record("snapshot", "{source}", "{day}"),
    params:
        plan=WF.plan_path,
        # the states this job makes (params trigger)
        digest=lambda wildcards: WF.state_digest("snapshot", wildcards.source),
        runtime=WF.config.runtime_config_path,
    log:
        f"{STATE}/logs/state/snapshot/{{source}}/dt={{day}}.log",
    conda:
        CONDA_ENV
    shell:
        "daedalus_job state --state-kind snapshot --state-source {wildcards.source} --day {wildcards.day} "
        "--plan {params.plan:q} --runtime {params.runtime:q} --record {output:q} --log {log:q}"
