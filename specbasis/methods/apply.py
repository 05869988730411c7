"""Applying a method to a model: the shared targets, the task head, and `prepare`, which the training loop calls.

Targets are shared: `resolve_targets` turns `layers + kinds` (matrix ids of specbasis.io.namemaps) or a regex
into exact module names, and every method is given that same list, so every method adapts the same matrices.
The task head (the modules models.head_prefixes names: `classifier`, DeBERTa's `pooler` too) trains in full
under every method. `prepare` applies the method (specbasis.methods) and counts what trains; the Adapted it
returns trains in the one loop, saves its own files and merges into a plain model, which loads like a fully
finetuned one (models.load_classifier) and extracts like any other model. A method that cannot merge (the
bottleneck adapters) saves the plain model without it and its adapter beside it: `load_trained` loads either.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping

from torch import nn

from specbasis.io.namemaps import map_names, parse_id
from specbasis.methods import Adapted, Method, parse
from specbasis.methods.base import ADAPTER_DIR
from specbasis.models import UNMERGED_FILE, head_prefixes, load_classifier


def head_modules(model: nn.Module) -> list[str]:
    """Module names of the task head (trained in full by every method), as models.head_prefixes finds them."""
    return [p.removesuffix(".") for p in head_prefixes(model)]


def resolve_targets(model: nn.Module, targets: dict | str, family: str) -> dict[str, str]:
    """{module name: matrix id (regex: the name)} of the nn.Linear modules `targets` selects, sorted by name.

    Selection is spectral.find_targets' (layers + kinds through specbasis.io.namemaps, or a regex full-matched
    against module names), the one code path for every method; it refuses a selection that matches nothing,
    a layer the model lacks, and any module that is not an nn.Linear (a 1x1 conv, a fused qkv)."""
    from specbasis.methods.spectral_adapter import SpectralConfig, find_targets

    if isinstance(targets, str):
        config = SpectralConfig(k=0, m=1, target_modules=targets)
    else:
        layers = targets["layers"]
        if layers == "all":
            specs = map_names(family, {n: tuple(p.shape) for n, p in model.state_dict().items()},
                              _hf_config(model))
            layers = sorted({parse_id(s.id)["layer"] for s in specs})
            if not layers:
                raise ValueError(f"targets.layers = 'all': the {family} name map finds no matrices in this model")
        config = SpectralConfig(k=0, m=1, layers=list(layers), kinds=list(targets["kinds"]), family=family)
    try:
        found = find_targets(model, config)
    except ValueError as e:
        message = str(e).replace("SpectralConfig.target_modules", "targets").replace("SpectralConfig.", "targets.")
        raise ValueError(message.replace("the spectral adapter wraps", "adapters wrap")) from None
    head = head_modules(model)
    in_head = [n for n in found if any(n == h or n.startswith(h + ".") for h in head)]
    if in_head:
        raise ValueError(f"targets: {in_head} lie in the task head, which trains in full under every method; "
                         f"leave them out")
    return dict(sorted(found.items()))


def _hf_config(model: nn.Module) -> dict:
    cfg = getattr(model, "config", None)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else {}


def prepare(model: nn.Module, method: Method | Mapping | str | None, family: str, *,
            total_steps: int | None = None, factors: Mapping | None = None) -> Adapted:
    """Apply the method to a freshly loaded classifier; return the Adapted model, its `counts` set (trainable,
    adapter, head, base: the model's parameters before).

    total_steps: the training loop's optimizer steps (AdaLoRA's budget schedule needs it). factors: for a method
    that reads the SVD store, precomputed SVDs by matrix id (the spectral adapter checks they fit the weights;
    those missing are computed). Everything that can fail (targets, ranks, peft options) fails here."""
    method = parse(method)
    base = sum(p.numel() for p in model.parameters())
    head = head_modules(model)
    targets = resolve_targets(model, method.targets, family) if method.targeted else {}
    adapted = method.apply(model, targets, head, total_steps=total_steps, factors=factors)
    trainable = sum(p.numel() for p in adapted.trainable().values())
    head_params = adapted.head_parameters()
    adapted.counts = {"trainable": trainable, "adapter": trainable - head_params, "head": head_params, "base": base}
    return adapted


def load_trained(model_dir: Path, family: str, num_classes: int, **keywords) -> tuple[nn.Module, Callable]:
    """(model, preprocess) of a finetuned folder as it was trained: models.load_classifier's, and for a method
    that could not merge into the weights (UNMERGED_FILE in the folder) its saved adapter put back on."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    marker = model_dir / UNMERGED_FILE
    model, preprocess = load_classifier(model_dir, family, num_classes, base_only=True, **keywords)
    if marker.is_file():
        saved = json.loads(marker.read_text())
        method = parse(saved["method"])
        method.reattach(model, saved["modules"], load_file(model_dir / ADAPTER_DIR / saved["file"]))
        model.eval()
    return model, preprocess
