# What every rule runs: one day job, handed to daedalus.job (all logic lives there).
import os
import sys

try:
    from daedalus.job import main
except ModuleNotFoundError as e:
    # An environment without Daedalus (`snakemake --use-conda`: envs/daedalus.yaml holds only
    # its dependencies): the `daedalus` of the checkout this script belongs to, after the
    # environment's own packages.
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if e.name != "daedalus" or not os.path.isfile(os.path.join(checkout, "daedalus", "job.py")):
        raise
    sys.path.append(checkout)
    from daedalus.job import main

sys.exit(main())
