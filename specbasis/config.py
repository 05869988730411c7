"""Load and validate the workflow configuration.

The JSON schema (workflow/schemas/config.schema.yaml) checks keys, types, enums and ranges and
fills defaults; `validate_config` then runs each section's checks (SECTION_CHECKS) for what a schema
cannot say: that names refer to entries that exist, that settings fit together. Every problem is reported
at once, each naming its key and what is allowed.

This module only loads and validates. What the workflow builds from a valid config is specbasis.plan's
(which imports this module, never the reverse); the sections whose checks need the plan (interventions,
finetune methods, peft) register them when specbasis.plan is imported, as the workflow does first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import jsonschema
import yaml

from specbasis import families

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"

# Per-family facts live in specbasis.families; the names below are the views the checks read.
MODALITIES = families.MODALITIES
FAMILY_MODALITY = {f.name: f.modality for f in families.FAMILIES.values()}
FAMILY_FORMATS = {f.name: f.formats for f in families.FAMILIES.values()}
# Dataset formats made of named tasks (specbasis.data.TASK_FORMATS): a dataset of one needs `task:`; the
# others take none. Its test part is the task's official labelled split (GLUE's validation split).
TASK_FORMATS = ("glue",)
FINETUNABLE_FAMILIES = frozenset(families.names(finetunable=True))
FAMILY_GROUPS = {f.name: f.groups for f in families.FAMILIES.values()}
# Sources that are not content-addressed must carry a sha256; archives need the path inside.
NEEDS_SHA256 = ("wheel:", "deb:", "url:")
NEEDS_MEMBER = ("wheel:", "deb:")


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem found."""


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The schema, read with libyaml's safe loader where PyYAML has it (10x faster than the pure-Python one: the
    schema is read whenever the workflow parses a config)."""
    with open(path) as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key and what is allowed."""
    where = _key(error.absolute_path)
    schema = error.schema
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; allowed: {', '.join(map(str, schema['enum']))}"
    if error.validator == "pattern":
        what = schema.get("description", f"a string matching {schema['pattern']}")
        return f"{where}: {error.instance!r} is malformed; expected {what}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "propertyNames":
        return f"{where}: {error.message} (names: letters, digits, '_', '.', '-')"
    return f"{where}: {error.message}"


def _fill_defaults(schema: dict, instance: Any, root: dict) -> None:
    """Insert schema defaults into objects, recursively (jsonschema validates but does not fill)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))  # a copy
        if key in instance:
            _fill_defaults(sub, instance[key], root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(extra, value, root)


def _source_problems(where: str, entry: dict) -> list[str]:
    """A fetched entry (model or dataset) whose source is not content-addressed needs a sha256, an archive a member."""
    src, problems = entry["source"], []
    if src.startswith(NEEDS_SHA256) and "sha256" not in entry:
        problems.append(f"{where}.sha256: required for source {src!r} (not content-addressed)")
    if src.startswith(NEEDS_MEMBER) and "member" not in entry:
        problems.append(f"{where}.member: required for source {src!r}: the path inside the archive")
    return problems


# Each section's checks beyond the schema, run in order, every problem kept: this module's own (models, datasets,
# pairs; dynamics), then those that specbasis.plan registers when it is imported (interventions, finetune methods,
# peft), which need the plan's view of the suite. The arrow points one way: the plan imports config, never back.
SECTION_CHECKS: list[Callable[[dict], list[str]]] = []


def section_check(check: Callable[[dict], list[str]]) -> Callable[[dict], list[str]]:
    """Register check(config) -> [problem, ...] to run after the schema (a decorator; returns check unchanged)."""
    SECTION_CHECKS.append(check)
    return check


@section_check
def model_problems(config: dict) -> list[str]:
    """`models`, `datasets` and `pairs`: each entry fetched or made, names that exist, families that fit."""
    problems = []
    models, datasets = config.get("models", {}), config.get("datasets", {})
    for name, model in models.items():
        where = f"models.{name}"
        has_source, has_finetune = "source" in model, "finetune" in model
        if has_source == has_finetune:
            problems.append(f"{where}: give exactly one of 'source' (fetch it) or 'finetune' (make it)")
        if has_source:
            problems += _source_problems(where, model)
        fmt = model.get("format", "hf")
        if has_source and fmt not in FAMILY_FORMATS[model["family"]]:
            problems.append(f"{where}.format: {fmt!r} does not fit family {model['family']!r}; allowed: "
                            f"{', '.join(FAMILY_FORMATS[model['family']])}")
        if has_finetune and model["family"] not in FINETUNABLE_FAMILIES:
            problems.append(f"{where}.finetune: the workflow cannot finetune family {model['family']!r} (no classifier "
                            f"and data reader for it); bring the finetuned checkpoint as a source instead. Finetunable: "
                            f"{', '.join(sorted(FINETUNABLE_FAMILIES))}")
        if "evaluate_on" in model:
            data = model["evaluate_on"]
            if has_finetune:
                problems.append(f"{where}.evaluate_on: a model the workflow finetunes is evaluated on its finetune's "
                                f"test split; evaluate_on is for fetched models")
            elif data not in datasets:
                problems.append(f"{where}.evaluate_on: {data!r} is not a dataset; datasets: "
                                f"{', '.join(datasets) or '(none)'}")
        if has_finetune:
            base, data = model["finetune"]["from"], model["finetune"]["dataset"]
            if base not in models:
                problems.append(f"{where}.finetune.from: {base!r} is not a model; models: {', '.join(models)}")
            elif models[base].get("family") != model.get("family"):
                problems.append(f"{where}.family: {model.get('family')!r} differs from its base {base!r} "
                                f"({models[base].get('family')!r})")
            if data not in datasets:
                problems.append(f"{where}.finetune.dataset: {data!r} is not a dataset; "
                                f"datasets: {', '.join(datasets) or '(none)'}")
    for name, dataset in datasets.items():
        if (dataset["format"] in TASK_FORMATS) != ("task" in dataset):
            problems.append(f"datasets.{name}.task: " + (f"required for format {dataset['format']!r}" if "task" not in
                            dataset else f"only format(s) {', '.join(TASK_FORMATS)} take a task"))
        problems += _source_problems(f"datasets.{name}", dataset)
    for name, pair in config.get("pairs", {}).items():
        for role in ("pretrained", "finetuned"):
            if pair[role] not in models:
                problems.append(f"pairs.{name}.{role}: {pair[role]!r} is not a model; models: {', '.join(models)}")
        if pair["pretrained"] in models and pair["finetuned"] in models:
            fams = {models[pair[r]]["family"] for r in ("pretrained", "finetuned")}
            if len(fams) > 1:
                problems.append(f"pairs.{name}: pretrained and finetuned families differ ({', '.join(sorted(fams))})")
            kinds = {model_modality(models[pair[r]]) for r in ("pretrained", "finetuned")}
            if len(kinds) > 1:
                problems.append(f"pairs.{name}: pretrained and finetuned modalities differ ({', '.join(sorted(kinds))}); "
                                f"set the same `modality:` on both models")
    return problems


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate `config` in place (defaults filled) and return it; raise ConfigError listing every problem.

    Runs the schema, then every registered section check (import specbasis.plan for its sections' checks)."""
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        _fill_defaults(schema, config, schema)
        problems = [p for check in SECTION_CHECKS for p in check(config)]
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def load_config(path: Path | str) -> dict:
    with open(path) as fh:
        return validate_config(yaml.safe_load(fh) or {})


def modality(family: str) -> str:
    """What a finetune feeds the model: 'image' or 'text' (picks the finetune settings)."""
    return families.family(family).sees


def model_modality(model: dict) -> str:
    """'vision', 'language', 'eeg' or 'fmri': the model's `modality:`, else its family's."""
    return model.get("modality") or FAMILY_MODALITY[model["family"]]


# ------------------------------------------------------------------------- pretraining dynamics

DYNAMICS_PRETRAIN_FORMATS = ("idx", "cifar10")  # specbasis.dynamics.data.PRETRAIN_FORMATS: with a training split
DYNAMICS_FORMATS = ("idx", "mnist_csv", "cifar10")
DYNAMICS_IMAGES = {"idx": (28, 1), "mnist_csv": (28, 1), "cifar10": (32, 3)}  # (side, channels) of each format


def dynamics_datasets(config: dict) -> dict:
    """Every dataset the dynamics stage may name: `datasets` and dynamics.datasets."""
    return {**config.get("datasets", {}), **config.get("dynamics", {}).get("datasets", {})}


def dynamics_settings(section: dict) -> dict:
    """A dynamics.{pretrain,classify,reconstruct} section as specbasis.dynamics.train.TrainSettings fields."""
    return {k: v for k, v in section.items() if k != "images"}


def scale_name(n: int) -> str:
    """How a scale is spelt in paths: 1000 -> 1k, 50000 -> 50k, 1500 -> 1500."""
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# specbasis.dynamics.mae.MAESpec's defaults and cross-field rules, restated here so that checking a config at parse time
# does not import torch (~2 s); tests/test_dynamics_stage.py checks both refuse the same specs.
MAE_SPEC_DEFAULTS = {"image_size": 28, "patch_size": 4, "num_channels": 1, "hidden_size": 64, "num_layers": 4,
                     "num_heads": 2, "mlp_ratio": 4, "decoder_hidden_size": 32, "decoder_layers": 1, "decoder_heads": 2,
                     "mask_ratio": 0.6, "norm_pix_loss": False}


def mae_spec_problems(spec: dict) -> list[str]:
    """What MAESpec would refuse in a (schema-valid) dynamics.spec, without importing torch."""
    s = {**MAE_SPEC_DEFAULTS, **spec}
    problems = []
    if s["image_size"] % s["patch_size"]:
        problems.append(f"image_size={s['image_size']} is not a multiple of patch_size={s['patch_size']}")
    for width, heads, what in ((s["hidden_size"], s["num_heads"], ""), (s["decoder_hidden_size"], s["decoder_heads"],
                                                                         "decoder_")):
        if width % 4:
            problems.append(f"{what}hidden_size={width}: the 2-D sin-cos position embedding needs a multiple of 4")
        if width % heads:
            problems.append(f"{what}hidden_size={width} is not divisible by {what or 'num_'}heads={heads}")
    if int((s["image_size"] // s["patch_size"]) ** 2 * (1 - s["mask_ratio"])) < 1:
        problems.append(f"mask_ratio={s['mask_ratio']} leaves no visible patch")
    return problems


@section_check
def dynamics_problems(config: dict) -> list[str]:
    """Cross-checks of the dynamics section (absent: none)."""
    dyn = config.get("dynamics")
    if dyn is None:
        return []
    problems = []
    known = dynamics_datasets(config)
    for name in sorted(set(dyn.get("datasets", {})) & set(config.get("datasets", {}))):
        problems.append(f"dynamics.datasets.{name}: already a dataset of `datasets`; give it another name")
    for name, dataset in dyn.get("datasets", {}).items():
        problems += _source_problems(f"dynamics.datasets.{name}", dataset)
    for key, formats in (("data", DYNAMICS_PRETRAIN_FORMATS), ("new_data", DYNAMICS_FORMATS)):
        name = dyn[key]
        if name not in known:
            problems.append(f"dynamics.{key}: {name!r} is not a dataset; datasets: {', '.join(known) or '(none)'}")
        elif known[name]["format"] not in formats:
            problems.append(f"dynamics.{key}: {name!r} has format {known[name]['format']!r}; allowed: {', '.join(formats)}")
    problems += [f"dynamics.spec: {p}" for p in mae_spec_problems(dyn["spec"])]
    spec = {**MAE_SPEC_DEFAULTS, **dyn["spec"]}
    for key in ("data", "new_data"):
        fmt = known.get(dyn[key], {}).get("format")
        if fmt in DYNAMICS_IMAGES and DYNAMICS_IMAGES[fmt][1] != spec["num_channels"]:
            problems.append(f"dynamics.spec.num_channels={spec['num_channels']}: {key} {dyn[key]!r} ({fmt}) has "
                            f"{DYNAMICS_IMAGES[fmt][1]} channel(s)")
        if fmt in DYNAMICS_IMAGES and DYNAMICS_IMAGES[fmt][0] > spec["image_size"]:
            problems.append(f"dynamics.spec.image_size={spec['image_size']}: {key} {dyn[key]!r} ({fmt}) has "
                            f"{DYNAMICS_IMAGES[fmt][0]}x{DYNAMICS_IMAGES[fmt][0]} images (smaller ones are zero-padded)")
    for key in ("pretrain", "classify", "reconstruct"):
        if "epochs" not in dyn[key]:
            problems.append(f"dynamics.{key}.epochs: required")
        elif not dyn[key]["warmup_epochs"] < dyn[key]["epochs"]:
            problems.append(f"dynamics.{key}.warmup_epochs={dyn[key]['warmup_epochs']}: want < epochs={dyn[key]['epochs']}")
        if key != "pretrain" and "images" not in dyn[key]:
            problems.append(f"dynamics.{key}.images: required (how many images post-training uses)")
    names = [scale_name(n) for n in dyn["scales"]]
    if len(set(names)) != len(names):
        problems.append(f"dynamics.scales: {dyn['scales']} spell the same path twice ({names})")
    made = {f"mae-{n}" for n in names} | {f"mae-{n}-{m}" for n in names for m in dyn["modes"]}
    for name in sorted(made & set(config.get("models", {}))):
        problems.append(f"models.{name}: results/models/{name} is made by the dynamics stage; rename the model")
    return problems
