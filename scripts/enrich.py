# Snakemake script: hands the job to daedalus (all logic lives there).
from daedalus.workflow import enrich_job, run_job

run_job(enrich_job, snakemake)  # noqa: F821 (injected by Snakemake)
