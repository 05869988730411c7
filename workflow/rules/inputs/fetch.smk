# The fetch stage's input functions and params (its rules: ../fetch.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.


def model_fetch_params(wildcards):
    """source, sha256 and member of a fetched model (a change of any re-fetches it)."""
    return fetch_params(PLAN.models[wildcards.fetched])


def dataset_fetch_params(wildcards):
    """source, sha256 and member of a dataset."""
    return fetch_params(PLAN.datasets[wildcards.dataset])
