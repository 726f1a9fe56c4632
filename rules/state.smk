# Per-source-day state (daedalus.skeleton.state): made once per source day and read by every
# day whose look-back holds it, instead of the raw partitions. One job per (kind, source day)
# makes every state of that kind of that day (each file's path carries its operator and
# digest, so an operator that did not change keeps its state); its output is the record
# listing them. Its inputs are exactly the partitions those files stand for
# (daedalus.workflow.state_inputs). A snapshot is made from the previous day's and one
# partition; the job makes the previous one first when it is not current, so any order of
# the jobs gives the same work.

rule state_partials:
    input:
        lambda wildcards: WF.state_inputs("partials", wildcards.day),
    output:
        # The job takes the output root from this path (daedalus.job.root_of_record).
        WF.layout.state_record("partials", "{day}"),
    params:
        plan=WF.plan_path,
        digest=WF.state_digest("partials"),  # the states these jobs make (params trigger)
        runtime=WF.config.runtime_config_path,
    log:
        f"{STATE}/logs/state/partials/dt={{day}}.log",
    conda:
        CONDA_ENV
    shell:
        "daedalus_job state --state-kind partials --day {wildcards.day} --plan {params.plan:q} "
        "--runtime {params.runtime:q} --record {output:q} --log {log:q}"


rule state_snapshot:
    input:
        lambda wildcards: WF.state_inputs("snapshot", wildcards.day),
    # One at a time, in day order (profiles/default sets the `snapshot_chain` limit): two
    # snapshot jobs at once would only wait for each other's chain lock.
    priority: lambda wildcards: WF.chain_priority(wildcards.day)
    resources:
        snapshot_chain=1,
    output:
        # The job takes the output root from this path (daedalus.job.root_of_record).
        WF.layout.state_record("snapshot", "{day}"),
    params:
        plan=WF.plan_path,
        digest=WF.state_digest("snapshot"),  # the states these jobs make (params trigger)
        runtime=WF.config.runtime_config_path,
    log:
        f"{STATE}/logs/state/snapshot/dt={{day}}.log",
    conda:
        CONDA_ENV
    shell:
        "daedalus_job state --state-kind snapshot --day {wildcards.day} --plan {params.plan:q} "
        "--runtime {params.runtime:q} --record {output:q} --log {log:q}"
