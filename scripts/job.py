# What every rule runs: one day job, handed to daedalus.job (all logic lives there).
import sys

from daedalus.job import main

sys.exit(main())
