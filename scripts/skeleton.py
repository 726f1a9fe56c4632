# Snakemake script: hands the job to daedalus (all logic lives there).
from daedalus.workflow import skeleton_job, run_job

run_job(skeleton_job, snakemake)  # noqa: F821 (injected by Snakemake)
