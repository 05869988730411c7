"""The `interventions` section planned: which models the swap and mask rules edit, the matrix groups each has,
the sources each is swapped with and its donors (the pretrained model it comes from, its cross-task donor); and the
section's checks (registered with specbasis.config). Torch-free."""
from __future__ import annotations

from specbasis.config import FAMILY_GROUPS, section_check


def pretrained_of(config: dict, model: str) -> str | None:
    """The pretrained model a model comes from: its `finetune.from`, else the pretrained model of the
    one pair it is the finetuned model of (None when that is not known)."""
    spec = config["models"].get(model, {})
    if "finetune" in spec:
        return spec["finetune"]["from"]
    bases = {pair["pretrained"] for pair in config.get("pairs", {}).values()
             if pair["finetuned"] == model and pair["pretrained"] != model}
    return bases.pop() if len(bases) == 1 else None


def intervention_models(config: dict) -> list[str]:
    """The models the interventions run on: interventions.models, else every model with `finetune:`."""
    chosen = config.get("interventions", {}).get("models")
    if chosen is None:
        return [m for m, spec in config["models"].items() if "finetune" in spec]
    return list(chosen)


def intervention_groups(config: dict, model: str) -> list[str]:
    """interventions.groups that the model's family has (EfficientNet: no attention)."""
    family = config["models"][model]["family"]
    return [g for g in config["interventions"]["groups"] if g in FAMILY_GROUPS[family]]


def cross_donor(config: dict, model: str) -> str | None:
    """The model whose vectors the `cross` source swaps into `model` (interventions.cross), or None."""
    return config["interventions"].get("cross", {}).get(model)


def intervention_sources(config: dict, model: str) -> list[str]:
    """interventions.sources for one model: `cross` only where it has a donor."""
    sources = config["interventions"]["sources"]
    return [s for s in sources if s != "cross" or cross_donor(config, model) is not None]



@section_check
def intervention_problems(config: dict) -> list[str]:
    """The `interventions` section: models the workflow finetunes, cross donors from the same pretrained
    model, groups each model has, k within what the SVD stores hold."""
    section, models = config.get("interventions", {}), config.get("models", {})
    problems = []
    made = [m for m, spec in models.items() if "finetune" in spec or "evaluate_on" in spec]
    for name in section.get("models") or []:
        if name not in models:
            problems.append(f"interventions.models: {name!r} is not a model; models: {', '.join(models)}")
        elif name not in made:
            problems.append(f"interventions.models: {name!r} has no test data: an intervention re-evaluates a "
                            f"model on its finetune's test split (`finetune:`) or, for a fetched model, on the "
                            f"dataset its `evaluate_on:` names; models with either: {', '.join(made) or '(none)'}")
    chosen = [m for m in intervention_models(config) if m in made]
    for name, donor in section.get("cross", {}).items():
        where = f"interventions.cross.{name}"
        if name not in chosen:
            problems.append(f"{where}: {name!r} is not a model the interventions run on (interventions.models: "
                            f"{', '.join(chosen) or '(none)'})")
            continue
        if donor not in models:
            problems.append(f"{where}: donor {donor!r} is not a model; models: {', '.join(models)}")
        elif donor == name:
            problems.append(f"{where}: a model cannot be its own cross donor; name another model finetuned from "
                            f"{pretrained_of(config, name)!r}")
        elif pretrained_of(config, donor) is None:
            problems.append(f"{where}: cannot tell which pretrained model donor {donor!r} comes from: give it "
                            f"`finetune:` or make it the finetuned model of a pair")
        elif pretrained_of(config, donor) != pretrained_of(config, name):
            problems.append(f"{where}: donor {donor!r} is finetuned from {pretrained_of(config, donor)!r}, {name!r} "
                            f"from {pretrained_of(config, name)!r}; a cross donor must come from the same "
                            f"pretrained model (its matrices have the same shapes and started from the same basis)")
    for name in chosen:
        family = models[name]["family"]
        if not intervention_groups(config, name):
            problems.append(f"interventions.groups: model {name!r} ({family}) has no matrices of group(s) "
                            f"{', '.join(section['groups'])}; its family has {', '.join(FAMILY_GROUPS[family])}")
    rank = config.get("svd", {}).get("rank", "all")
    too_big = [k for k in section.get("k", []) if rank != "all" and k > rank]
    if too_big:
        problems.append(f"interventions.k: {', '.join(map(str, too_big))} exceed svd.rank = {rank}: the SVD stores "
                        f"hold only the top {rank} vectors of each matrix; raise svd.rank (or use 'all')")
    return problems
