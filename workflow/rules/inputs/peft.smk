# The peft stage's input functions and params (its rules: ../peft.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.

from specbasis.plan.peft import task_columns


def prefix_cache_inputs(wildcards):
    """The base model and the dataset a prefix cache is computed from."""
    run = PLAN.prefix_caches[wildcards.cache]
    return {"base": R(f"models/{PLAN.peft['base']}"), "data": f"resources/datasets/{run.task}"}


def prefix_cache_settings(wildcards):
    """What the cache is built from: the split and tokenisation of the sweep runs on its task."""
    return PLAN.prefix_cache_settings(wildcards.cache)


def peft_run_dirs(cells):
    """results/models/<model> of table1's cells or fig5's points, each once, sorted."""
    return sorted({R(f"models/{c['model']}") for c in cells})


PEFT_COLUMNS = task_columns(list(PLAN.peft["tasks"]), PLAN.datasets) if PLAN.peft else {}  # table1, table5's columns


def peft_basis_tables():
    """results/peft/basis/<run>.csv of every table1 run (fig22, table6), each once, sorted."""
    return [R(f"peft/basis/{m}.csv") for m in sorted({c["model"] for c in PLAN.peft_table_cells()})]
