# The train stage's input functions and params (its rules: ../train.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.


def fetched_family(wildcards):
    """Architecture family of a fetched model (picks its name map)."""
    return PLAN.models[wildcards.fetched]["family"]


def fetched_format(wildcards):
    """Key naming of a fetched checkpoint: hf, timm or lukemelas (default hf)."""
    return PLAN.models[wildcards.fetched].get("format", "hf")


def base_model_dir(wildcards):
    """results/models/<base> of a finetuned model."""
    return R(f"models/{PLAN.models[wildcards.finetuned]['finetune']['from']}")


def finetune_dataset_dir(wildcards):
    """resources/datasets/<dataset> a finetuned model is trained on."""
    return f"resources/datasets/{PLAN.models[wildcards.finetuned]['finetune']['dataset']}"


def finetune_prefix_cache(wildcards):
    """[] or the prefix cache a fig5 run starts from (peft.sweeps.cache_prefix)."""
    cache = PLAN.prefix_cache_of(wildcards.finetuned)
    return R(f"peft/cache/{cache}.safetensors") if cache else []


def finetune_base_svd(wildcards):
    """[] or the SVD store of the base model a finetune adapts, where its method reads one (spectral: U_r, V_r)."""
    entry = PLAN.models[wildcards.finetuned]
    return R(f"svd/{entry['finetune']['from']}.h5") if PLAN.reads_svd_store(entry) else []


def finetune_settings(wildcards):
    """Training settings of the finetuned model's modality, the dataset's reader and the seed."""
    return PLAN.finetune_settings(wildcards.finetuned)


def finetune_metrics():
    """The folders (holding metrics.json) of the finetuned models of pairs that this workflow trains."""
    return [R(f"models/{m}") for m in PLAN.trained_pair_models()]


def finetune_work_dir(wildcards):
    """Where a finetune keeps its resumable state (specbasis.training.resume), removed when it is done."""
    return R(f"models/.work/{wildcards.finetuned}")
