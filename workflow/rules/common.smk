# Helpers of the rules: configuration checks and functions that say what they return.
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the specbasis package beside the Snakefile
from snakemake.logging import logger

from specbasis.config import (MODALITIES, cross_donor, intervention_groups, intervention_models, intervention_sources,
                              model_modality, modality, pretrained_of, validate_config)

validate_config(config)  # fails at parse time, naming each bad key and what is allowed

# The `peft:` section's runs (table1's grid, fig5's sweeps) become finetuned models like any other.
from specbasis.plan import peft as peft_grid  # noqa: E402

PEFT = config.get("peft")
if PEFT:
    config["models"].update(peft_grid.model_entries(config))

MODELS = config["models"]
PAIRS = config["pairs"]
DATASETS = config["datasets"]
FETCHED_MODELS = [m for m, spec in MODELS.items() if "source" in spec]
FINETUNED_MODELS = [m for m, spec in MODELS.items() if "finetune" in spec]
INTERVENTIONS = config["interventions"]
EDITED_MODELS = intervention_models(config)  # the finetuned models the swap and mask rules run on
PAIR_MODELS = sorted({PAIRS[p][role] for p in PAIRS for role in ("pretrained", "finetuned")})
STYLE = str(Path(workflow.basedir) / "workflow" / "style" / "specbasis.mplstyle")  # part of the workflow, not of the run


def alternatives(names):
    """A wildcard constraint matching exactly these names (never an empty alternation)."""
    import re

    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    model=alternatives(MODELS),
    fetched=alternatives(FETCHED_MODELS),
    finetuned=alternatives(FINETUNED_MODELS),
    dataset=alternatives(DATASETS),
    pair=alternatives(PAIRS),
    edited=alternatives(EDITED_MODELS),


def _fetch_params(spec):
    return {k: spec.get(k) for k in ("source", "sha256", "member")}


def model_fetch_params(wildcards):
    """source, sha256 and member of a fetched model (a change of any re-fetches it)."""
    return _fetch_params(MODELS[wildcards.fetched])


def dataset_fetch_params(wildcards):
    """source, sha256 and member of a dataset."""
    return _fetch_params(DATASETS[wildcards.dataset])


def fetched_family(wildcards):
    """Architecture family of a fetched model (picks its name map)."""
    return MODELS[wildcards.fetched]["family"]


def fetched_format(wildcards):
    """Key naming of a fetched checkpoint: hf, timm or lukemelas (default hf)."""
    return MODELS[wildcards.fetched].get("format", "hf")


def model_family(wildcards):
    """Architecture family of any model."""
    return MODELS[wildcards.model]["family"]


def base_model_dir(wildcards):
    """results/models/<base> of a finetuned model."""
    return f"results/models/{MODELS[wildcards.finetuned]['finetune']['from']}"


def finetune_dataset_dir(wildcards):
    """resources/datasets/<dataset> a finetuned model is trained on."""
    return f"resources/datasets/{MODELS[wildcards.finetuned]['finetune']['dataset']}"


def finetune_settings(wildcards):
    """Training settings of the finetuned model's modality, the dataset's reader and the seed."""
    return settings_of_finetune(wildcards.finetuned)


def settings_of_finetune(model):
    """finetune_settings of a model by name."""
    spec = MODELS[model]
    finetune = spec["finetune"]
    dataset = DATASETS[finetune["dataset"]]
    return {
        "family": spec["family"],
        "format": dataset["format"],
        "task": dataset.get("task"),
        "seed": config["seed"],  # the split's
        "train_seed": finetune.get("seed", config["seed"]),  # the head's init, the batch order, dropout
        "device": config["device"],
        "method": finetune.get("method"),
        **config["finetune"].get(modality(spec["family"]), {}),
        **finetune.get("train", {}),
    }


def pair_svds(wildcards):
    """The SVD stores of a pair's pretrained and finetuned models."""
    pair = PAIRS[wildcards.pair]
    return {role: f"results/svd/{pair[role]}.h5" for role in ("pretrained", "finetuned")}


def pair_weights(wildcards):
    """The weights stores of a pair's pretrained and finetuned models."""
    pair = PAIRS[wildcards.pair]
    return {role: f"results/weights/{pair[role]}.h5" for role in ("pretrained", "finetuned")}


def pretrained_svd(wildcards):
    """The SVD store of a pair's pretrained model."""
    return f"results/svd/{PAIRS[wildcards.pair]['pretrained']}.h5"


def pair_tables(analysis, suffix=".csv"):
    """results/<analysis>/<pair><suffix> of every pair."""
    return expand("results/{analysis}/{pair}{suffix}", analysis=analysis, pair=PAIRS, suffix=suffix)


def energy_tables():
    """results/energy/<model>.csv of every pretrained model of a pair."""
    return expand("results/energy/{model}.csv", model=sorted({p["pretrained"] for p in PAIRS.values()}))


def pair_finetuned():
    """{pair: its finetuned model}."""
    return {pair: spec["finetuned"] for pair, spec in PAIRS.items()}


def tested_pair_finetuned():
    """{pair: its finetuned model} of the pairs fig18 tests (those with a held-out accuracy)."""
    return {pair: model for pair, model in pair_finetuned().items() if pair in TESTED_PAIRS}


def config_accuracies():
    """{finetuned model: the accuracy listed in the config, or None}."""
    return {spec["finetuned"]: MODELS[spec["finetuned"]].get("accuracy") for spec in PAIRS.values()}


def finetune_metrics():
    """The folders (holding metrics.json) of the finetuned models this workflow trains."""
    return sorted({f"results/models/{m}" for m in pair_finetuned().values() if m in FINETUNED_MODELS})


def pair_modality():
    """{pair: 'vision', 'language', 'eeg' or 'fmri'}: the pretrained model's `modality:` or its family's."""
    return {pair: model_modality(MODELS[spec["pretrained"]]) for pair, spec in PAIRS.items()}


def modality_pairs(which):
    """{pair: {pretrained, finetuned}} of the pairs of one modality ('vision', 'language', 'eeg', 'fmri')."""
    modality = pair_modality()
    return {pair: dict(spec) for pair, spec in PAIRS.items() if modality[pair] == which}


def modality_tables(which):
    """The alignment tables of the pairs of one modality."""
    return [f"results/alignment/{pair}.csv" for pair in modality_pairs(which)]


def brain_tables():
    """The alignment tables of the EEG and fMRI pairs (fig7; none in the default suite)."""
    return [table for which in ("eeg", "fmri") for table in modality_tables(which)]


def edited_model_dir(wildcards):
    """results/models/<model> of a model the interventions edit."""
    return f"results/models/{wildcards.edited}"


def edited_pretrained_svd(wildcards):
    """The SVD store of the pretrained model an edited model was finetuned from (the `pretrained` donor)."""
    return f"results/svd/{pretrained_of(config, wildcards.edited)}.h5"


def edited_cross_svds(wildcards):
    """[] or the SVD store of an edited model's cross-task donor (interventions.cross)."""
    donor = cross_donor(config, wildcards.edited)
    return [f"results/svd/{donor}.h5"] if donor else []


def edited_dataset(model):
    """The dataset an edited model is evaluated on: its finetune's, else its `evaluate_on` (a fetched model)."""
    spec = MODELS[model]
    return spec["finetune"]["dataset"] if "finetune" in spec else spec["evaluate_on"]


def edited_dataset_dir(wildcards):
    """resources/datasets/<dataset> an edited model is evaluated on (a finetune's test split, or evaluate_on)."""
    return f"resources/datasets/{edited_dataset(wildcards.edited)}"


def edited_split(model):
    """How the held-out part is made: the finetune's reader, seed and caps (the same test examples its
    metrics.json measured); for a fetched model, its evaluate_on dataset's reader and task, and its `labels`."""
    if "finetune" in MODELS[model]:
        train = settings_of_finetune(model)
        return {"held_out": "finetune", **{k: train.get(k) for k in ("format", "task", "seed", "max_train", "max_eval")}}
    dataset = DATASETS[edited_dataset(model)]
    return {"held_out": "evaluate_on", "format": dataset["format"], "task": dataset.get("task"),
            "seed": config["seed"], "labels": MODELS[model].get("labels")}


def _edited_common(model):
    return {
        "model": model,
        "family": MODELS[model]["family"],
        "device": config["device"],
        "split": edited_split(model),
        "groups": intervention_groups(config, model),
        "max_eval": INTERVENTIONS["max_eval"],
        "batch_size": INTERVENTIONS["batch_size"],
    }


def swap_settings(wildcards):
    """Swap settings of one model: groups, sources, k grid, donors' names, random seed."""
    model = wildcards.edited
    return {
        **_edited_common(model),
        "sources": intervention_sources(config, model),
        "k": INTERVENTIONS["k"],
        "seed": INTERVENTIONS.get("seed", config["seed"]),
        "pretrained": pretrained_of(config, model),
        "cross": cross_donor(config, model),
    }


def mask_settings(wildcards):
    """Mask settings of one model: groups, orders, fractions."""
    return {**_edited_common(wildcards.edited), "orders": INTERVENTIONS["orders"],
            "fractions": INTERVENTIONS["fractions"]}


def swap_tables():
    """results/swap/<model>.csv of every model the interventions edit."""
    return expand("results/swap/{model}.csv", model=EDITED_MODELS)


def mask_tables():
    """results/mask/<model>.csv of every model the interventions edit."""
    return expand("results/mask/{model}.csv", model=EDITED_MODELS)


_NO_DONOR = [m for m in EDITED_MODELS if "cross" in INTERVENTIONS["sources"] and not cross_donor(config, m)]
if _NO_DONOR:
    logger.warning(f"interventions: no cross donor (interventions.cross) for {', '.join(_NO_DONOR)}: their "
                   "cross-task swaps are left out (fig13, fig15 say so)")


FIGURES = ["fig2", "fig3", "fig6", "fig7", "fig8", "fig10", "fig11", "fig12", "fig13", "fig14", "fig15", "fig16",
           "fig17", "fig18", "fig19", "fig20"]
# fig18 correlates alignment with held-out accuracy: measured for the models this workflow finetunes,
# taken from the config (`accuracy:`) for hub models. Pairs with neither are left out of its tests
# (said as a warning); with fewer than MIN_TESTED_PAIRS left, fig18 is left out of `all`.
MIN_TESTED_PAIRS = 3  # a Spearman test of fewer pairs has no p below 1
WITHOUT_ACCURACY = sorted(p for p, m in pair_finetuned().items()
                          if m not in FINETUNED_MODELS and MODELS[m].get("accuracy") is None)
TESTED_PAIRS = [p for p in PAIRS if p not in WITHOUT_ACCURACY]
if len(TESTED_PAIRS) < MIN_TESTED_PAIRS:
    FIGURES.remove("fig18")
    logger.warning(f"fig18 is left out of `all`: only {len(TESTED_PAIRS)} pairs have a held-out accuracy (fewer "
                   f"than {MIN_TESTED_PAIRS}); without one: {', '.join(WITHOUT_ACCURACY)} (add `accuracy:` to their "
                   "finetuned models in the config)")
elif WITHOUT_ACCURACY:
    logger.warning(f"fig18 leaves out pairs without a held-out accuracy: {', '.join(WITHOUT_ACCURACY)} "
                   "(add `accuracy:` to their finetuned models in the config to include them)")


# Pretraining dynamics (dynamics.smk): an absent `dynamics:` section turns the stage (fig4, fig9, fig21) off.
from specbasis.config import dynamics_datasets, dynamics_settings, scale_name  # noqa: E402

DYNAMICS = config.get("dynamics")
DYNAMICS_ONLY_DATASETS = DYNAMICS["datasets"] if DYNAMICS else {}  # fetched by fetch_dynamics_dataset
SCALES = {scale_name(n): n for n in DYNAMICS["scales"]} if DYNAMICS else {}  # path spelling -> images
DYNAMICS_MODES = DYNAMICS["modes"] if DYNAMICS else []
if DYNAMICS:
    FIGURES += ["fig4", "fig9", "fig21"]


def _dynamics_common():
    data = dynamics_datasets(config)
    return {"seed": DYNAMICS.get("seed", config["seed"]), "device": config["device"],
            "analysed": DYNAMICS["analysed"], "pretrain_format": data[DYNAMICS["data"]]["format"]}


def dynamics_pretrain_settings(wildcards):
    """What pretrain_mae needs for one scale: data format, scale, validation size, MAE spec, TrainSettings."""
    return {**_dynamics_common(), "format": dynamics_datasets(config)[DYNAMICS["data"]]["format"],
            "scale": SCALES[wildcards.scale], "val_images": DYNAMICS["val_images"], "spec": DYNAMICS["spec"],
            "train": dynamics_settings(DYNAMICS["pretrain"])}


def dynamics_posttrain_section(mode):
    """The config section of a post-training mode: classify_shuffled trains as classify does."""
    return DYNAMICS["reconstruct" if mode == "reconstruct" else "classify"]


def dynamics_posttrain_dataset(mode):
    """The dataset a post-training mode reads: new_data for reconstruct, else the pretraining data."""
    return DYNAMICS["new_data" if mode == "reconstruct" else "data"]


def dynamics_posttrain_settings(wildcards):
    """What posttrain_mae needs for one scale x mode."""
    section = dynamics_posttrain_section(wildcards.mode)
    return {**_dynamics_common(), "format": dynamics_datasets(config)[dynamics_posttrain_dataset(wildcards.mode)]["format"],
            "scale": SCALES[wildcards.scale], "images": section["images"], "train": dynamics_settings(section),
            "track_every": DYNAMICS["track_every"], "max_rank": DYNAMICS["max_rank"], "top": DYNAMICS["top"]}


def dynamics_pretrain_data(wildcards):
    """resources/datasets/<data> of the pretraining."""
    return f"resources/datasets/{DYNAMICS['data']}"


def dynamics_posttrain_data(wildcards):
    """resources/datasets/<dataset> of a post-training mode."""
    return f"resources/datasets/{dynamics_posttrain_dataset(wildcards.mode)}"


def dynamics_fetch_params(wildcards):
    """source, sha256 and member of a dataset of dynamics.datasets."""
    return _fetch_params(DYNAMICS_ONLY_DATASETS[wildcards.dyndataset])


def dynamics_scale(wildcards):
    """The number of training images of a scale."""
    return SCALES[wildcards.scale]


def dynamics_work_dir(wildcards):
    """The resumable state of a pretraining, beside (never among) its outputs."""
    return f"results/dynamics/.work/{wildcards.scale}"


def dynamics_similarity_tables():
    """results/dynamics/pretrain/<scale>.csv of every scale."""
    return expand("results/dynamics/pretrain/{scale}.csv", scale=SCALES)


def dynamics_posttrain_tables(modes, ends=False):
    """results/dynamics/posttrain/<scale>-<mode>.csv of the configured modes among `modes`, every scale
    (ends: the smallest and largest scale only)."""
    names = sorted(SCALES, key=SCALES.get)
    names = sorted({names[0], names[-1]}, key=SCALES.get) if ends and names else names
    return expand("results/dynamics/posttrain/{scale}-{mode}.csv", scale=names,
                  mode=[m for m in modes if m in DYNAMICS_MODES])


def all_targets():
    """Everything `snakemake all` builds: every figure (PDF and PNG) and table."""
    tables = ("table2", "table3", "table4") + (("table1", "table5") if PEFT else ())
    return expand("results/{fig}.{ext}", fig=FIGURES, ext=("pdf", "png")) + expand(
        "results/{table}.{ext}", table=tables, ext=("csv", "md", "tex"))


# Spectral finetuning and the PEFT methods (peft.smk): an absent `peft:` section turns the stage (table1, table5,
# fig5) off. Its runs are finetuned models (added to `models` above); fig5's may start from a prefix cache.
PEFT_SWEEP_RUNS = {r.name: r for r in peft_grid.sweep_runs(config)} if PEFT else {}
def prefix_cache_name(run):
    """results/peft/cache/<name>.safetensors: the base model, the task and the first adapted block."""
    return f"{PEFT['base']}-{run.task}-L{run.first_layer}"


# prefix cache name -> the first sweep run that reads it (its settings say how the cache is cut and tokenised)
PREFIX_CACHES = {}
for _run in PEFT_SWEEP_RUNS.values():
    if peft_grid.uses_cache(config, _run):
        PREFIX_CACHES.setdefault(prefix_cache_name(_run), _run)
if PEFT:
    FIGURES.append("fig5")


def finetune_prefix_cache(wildcards):
    """[] or the prefix cache a fig5 run starts from (peft.sweeps.cache_prefix)."""
    run = PEFT_SWEEP_RUNS.get(wildcards.finetuned)
    if run is None or not peft_grid.uses_cache(config, run):
        return []
    return f"results/peft/cache/{prefix_cache_name(run)}.safetensors"


def finetune_base_svd(wildcards):
    """[] or the SVD store of the base model a spectral finetune adapts (its U_r, V_r are read from there)."""
    finetune = MODELS[wildcards.finetuned]["finetune"]
    method = finetune.get("method")
    if not (isinstance(method, dict) and method.get("method") == "spectral"):
        return []
    return f"results/svd/{finetune['from']}.h5"


def prefix_cache_inputs(wildcards):
    """The base model and the dataset a prefix cache is computed from."""
    run = PREFIX_CACHES[wildcards.cache]
    return {"base": f"results/models/{PEFT['base']}", "data": f"resources/datasets/{run.task}"}


def prefix_cache_settings(wildcards):
    """What the cache is built from: the split and tokenisation of the sweep runs on its task."""
    run = PREFIX_CACHES[wildcards.cache]
    return {**settings_of_finetune(run.name), "start": run.first_layer}


def peft_table_cells():
    """table1's cells: task, method, seed and the model holding its metrics.json ([] without a peft section)."""
    return peft_grid.table_models(config) if PEFT else []


def peft_table_inputs(wildcards=None):
    return sorted({f"results/models/{c['model']}" for c in peft_table_cells()})


def peft_reference_cells():
    """fig5's full-finetuning reference on its task (drawn as a line; peft_grid.sweep_reference): [] without one."""
    return peft_grid.sweep_reference(config) if PEFT else []


def peft_sweep_points():
    """fig5's points ([] without a peft section or its sweeps)."""
    return peft_grid.sweep_models(config) if PEFT else []


def peft_sweep_inputs(wildcards=None):
    return sorted({f"results/models/{p['model']}" for p in peft_sweep_points()})


def peft_task_columns():
    from specbasis.analysis.peft import task_columns

    return task_columns(list(PEFT["tasks"]), DATASETS) if PEFT else {}
