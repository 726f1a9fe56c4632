# Snakemake script: hands the job to daedalus (all logic lives there).
from daedalus.workflow import qid_assign_job

qid_assign_job(snakemake)  # noqa: F821 (injected by Snakemake)
