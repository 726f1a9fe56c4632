# Daedalus: per-day training data for ranking models.
#
#   snakemake --cores 2                 # the default service (config/config.yaml)
#   daeda pipeline train dssm_ranking   # the same rules, with validation and a progress view
#
# Paths in the config and in the definitions are relative to the working directory.
import os

if os.path.exists("config/config.yaml"):

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/skeleton.smk"


rule all:
    default_target: True
    input:
        rules.skeleton_all.input,
