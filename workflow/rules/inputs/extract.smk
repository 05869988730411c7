# The extract stage's input functions and params (its rules: ../extract.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.


def model_family(wildcards):
    """Architecture family of any model."""
    return PLAN.models[wildcards.model]["family"]
