# The interventions stage's input functions and params (its rules: ../interventions.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.

from specbasis.plan.suite import SWAP_FIGURES


def edited_model_dir(wildcards):
    """results/models/<model> of a model the interventions edit."""
    return R(f"models/{wildcards.edited}")


def edited_pretrained_svd(wildcards):
    """The SVD store of the pretrained model an edited model was finetuned from (the `pretrained` donor)."""
    return R(f"svd/{PLAN.pretrained_of(wildcards.edited)}.h5")


def edited_cross_svds(wildcards):
    """[] or the SVD store of an edited model's cross-task donor (interventions.cross)."""
    donor = PLAN.cross_donor(wildcards.edited)
    return [R(f"svd/{donor}.h5")] if donor else []


def edited_dataset_dir(wildcards):
    """resources/datasets/<dataset> an edited model is evaluated on (a finetune's test split, or evaluate_on)."""
    return f"resources/datasets/{PLAN.edited_dataset(wildcards.edited)}"


def swap_settings(wildcards):
    """Swap settings of one model: groups, sources, k grid, donors' names, random seed."""
    return PLAN.swap_settings(wildcards.edited)


def mask_settings(wildcards):
    """Mask settings of one model: groups, orders, fractions."""
    return PLAN.mask_settings(wildcards.edited)


def swap_tables():
    """results/swap/<model>.csv of every model the interventions edit."""
    return expand(R("swap/{model}.csv"), model=PLAN.edited)


def mask_tables():
    """results/mask/<model>.csv of every model the interventions edit."""
    return expand(R("mask/{model}.csv"), model=PLAN.edited)
