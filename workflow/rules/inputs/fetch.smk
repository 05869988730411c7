# The fetch stage's input functions and params (its rules: ../fetch.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.

from specbasis.io.lock import floating


def model_fetch_params(wildcards):
    """source, sha256 and member of a fetched model (a change of any re-fetches it)."""
    return fetch_params(PLAN.models[wildcards.fetched], (LOCK, "models", wildcards.fetched))


def dataset_fetch_params(wildcards):
    """source, sha256 and member of a dataset."""
    return fetch_params(PLAN.datasets[wildcards.dataset], (LOCK, "datasets", wildcards.dataset))


def locked_resources():
    """The resources/ folders of every hub source at a moving revision: what the lock records."""
    sections = lock_sections(PLAN)
    return {f"{section}.{name}": f"resources/{section}/{name}" for section, entries in sections.items()
            for name, entry in entries.items() if floating(entry["source"])}
