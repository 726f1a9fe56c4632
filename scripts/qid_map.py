# Snakemake script: hands the job to daedalus (all logic lives there).
from daedalus.workflow import qid_map_job, run_job

run_job(qid_map_job, snakemake)  # noqa: F821 (injected by Snakemake)
