# The dynamics stage's input functions and params (its rules: ../dynamics.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.


def dynamics_fetch_params(wildcards):
    """source, sha256 and member of a dataset of dynamics.datasets."""
    return fetch_params(PLAN.dynamics_only_datasets[wildcards.dyndataset], (LOCK, "datasets", wildcards.dyndataset))


def dynamics_pretrain_data(wildcards):
    """resources/datasets/<data> of the pretraining."""
    return f"resources/datasets/{PLAN.dynamics['data']}"


def dynamics_pretrain_settings(wildcards):
    """What pretrain_mae needs for one scale: data format, scale, validation size, MAE spec, TrainSettings."""
    return PLAN.dynamics_pretrain_settings(wildcards.scale)


def dynamics_work_dir(wildcards):
    """The resumable state of a pretraining, beside (never among) its outputs."""
    return R(f"dynamics/.work/{wildcards.scale}")


def dynamics_scale(wildcards):
    """The number of training images of a scale."""
    return PLAN.scales[wildcards.scale]


def dynamics_posttrain_data(wildcards):
    """resources/datasets/<dataset> of a post-training mode."""
    return f"resources/datasets/{PLAN.dynamics_posttrain_dataset(wildcards.mode)}"


def dynamics_posttrain_settings(wildcards):
    """What posttrain_mae needs for one scale x mode."""
    return PLAN.dynamics_posttrain_settings(wildcards.scale, wildcards.mode)


def dynamics_similarity_tables():
    """results/dynamics/pretrain/<scale>.csv of every scale."""
    return expand(R("dynamics/pretrain/{scale}.csv"), scale=PLAN.scales)


def dynamics_posttrain_tables(modes, ends=False):
    """results/dynamics/posttrain/<scale>-<mode>.csv of the configured modes among `modes`, every scale
    (ends: the smallest and largest scale only)."""
    return [R(f"dynamics/posttrain/{scale}-{mode}.csv") for scale, mode in PLAN.posttrain_runs(modes, ends)]


DYNAMICS_TOP = PLAN.dynamics["top"] if PLAN.dynamics else None  # fig4, fig9, fig21 average |cos| over ranks 1..top
