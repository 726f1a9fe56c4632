# Compiles the service once per Snakemake invocation; all logic lives in daedalus.workflow.
from daedalus.workflow import conda_env_file, load_workflow, uses_conda

WF = load_workflow(config)
STATE = WF.state_dir
# The `conda:` of the rules that run jobs (envs/daedalus.yaml; used with --use-conda).
CONDA_ENV = conda_env_file(workflow.basedir)
# Every rule's command is `daedalus_job KIND ...`, a shell function this prefix defines: this
# Snakemake's Python (the conda env's under --use-conda) running scripts/job.py (daedalus.job)
# with the run's settings (daedalus.workflow.Workflow.job_shell_prefix).
shell.prefix(
    WF.job_shell_prefix(
        workflow.basedir,
        shell_executable=shell.get_executable(),
        use_conda=CONDA_ENV is not None and uses_conda(workflow),
    )
)


wildcard_constraints:
    day=r"\d{4}-\d{2}-\d{2}",
