# Compiles the service once per Snakemake invocation; all logic lives in daedalus.workflow.
from daedalus.workflow import load_workflow

WF = load_workflow(config)
ROOT = WF.root
EROOT = WF.enriched_root
STATE = WF.state_dir


wildcard_constraints:
    day=r"\d{4}-\d{2}-\d{2}",
