# The analyses stage's input functions and params (its rules: ../analyses.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.


def pair_svds(wildcards):
    """The SVD stores of a pair's pretrained and finetuned models."""
    pair = PLAN.pairs[wildcards.pair]
    return {role: R(f"svd/{pair[role]}.h5") for role in ("pretrained", "finetuned")}


def pair_weights(wildcards):
    """The weights stores of a pair's pretrained and finetuned models."""
    pair = PLAN.pairs[wildcards.pair]
    return {role: R(f"weights/{pair[role]}.h5") for role in ("pretrained", "finetuned")}


def pretrained_svd(wildcards):
    """The SVD store of a pair's pretrained model."""
    return R(f"svd/{PLAN.pairs[wildcards.pair]['pretrained']}.h5")
