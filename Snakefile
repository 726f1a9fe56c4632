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


# Cheap bookkeeping runs where Snakemake runs, not as cluster jobs.
localrules:
    all,
    skeleton_all,
    qid_map,
    enrich_all,



# --enrich-only leaves the skeleton rules out, so existing skeleton days are used as they are.
if WF.stage != "enrich":

    include: "rules/state.smk"
    include: "rules/skeleton.smk"


if WF.has_embeddings and WF.stage != "skeleton":

    include: "rules/enrich.smk"


rule all:
    default_target: True
    input:
        WF.skeleton_targets if WF.stage != "enrich" else [],
        WF.qid_map_targets if WF.stage != "enrich" else [],
        WF.enrich_targets if WF.stage != "skeleton" else [],
