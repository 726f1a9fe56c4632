# Compiles the service once per Snakemake invocation; all logic lives in daedalus.workflow.
from daedalus.workflow import load_workflow

WF = load_workflow(config)
ROOT = WF.root
EROOT = WF.enriched_root
STATE = WF.state_dir
# What every day job runs: scripts/job.py (daedalus.job), with this Snakemake's Python.
JOB = WF.job_command(workflow.basedir)


wildcard_constraints:
    day=r"\d{4}-\d{2}-\d{2}",
