# specbasis: how finetuning changes the spectral structure of pretrained weight matrices.
# Data flows one way:
#   resources/ (fetched) -> results/models -> results/weights -> results/svd -> results/<analysis> -> results/figN
#   results/models + results/svd -> results/swap, results/mask (interventions: edit, re-evaluate) -> results/figN
#   results/models (peft grid runs) -> results/table1, table5, results/peft -> results/fig5
#   resources/datasets -> results/dynamics (an MAE pretrained per data scale, then post-trained) -> results/fig4, 9, 21
from snakemake.utils import min_version

min_version("9.0")


# The default suite, unless --configfile names another suite: suites replace, never merge.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/svd.smk"
include: "workflow/rules/analyses.smk"
include: "workflow/rules/interventions.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/peft.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        PLAN.all_targets(),
    default_target: True
