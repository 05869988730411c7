"""Finetuning methods: which parameters train, and how the result becomes a plain model again.

A finetuned model's config names its method; `parse_method` checks it, `prepare` applies it to a freshly
loaded classifier, specbasis.training.finetune.finetune trains whatever `prepare` left trainable (one loop for every
method), `save_adapter` writes the adapter's own files (into the subfolder adapter/) and `finalize` merges
the adapter into the weights, so the saved folder loads like a fully finetuned model (models.load_classifier)
and its weights extract like any other model's.

    method     trains                                               through
    full       every weight (today's finetuning)                    -
    bitfit     every bias (LayerNorm's too, as BitFit does) + head  requires_grad
    spectral   M, the r x r block [k, m) of U (Σ + A) Vh + head     specbasis.methods.spectral
    lora       A (r, in), B (out, r) per matrix + head              peft LoraConfig
    dora       lora + a magnitude per output row                    peft LoraConfig(use_dora=True)
    pissa      lora started on the top-r SVD of W, W := W - BA      peft LoraConfig(init_lora_weights="pissa")
    adalora    P Λ Q with init_r ranks, pruned to target_r + head   peft AdaLoraConfig (+ update_and_allocate)
    psoft      R (r x r) between frozen top-r SVD factors + head    peft PsoftConfig(psoft_orth=False, no magnitudes)

The spec (YAML in the config; a dict here), flat, one method a spec::

    {method: lora, r: 8, alpha: 16, init: gaussian, targets: {layers: [-2, -1], kinds: [ffn_in, ffn_out]}}
    {method: spectral, k: 0, m: 300, targets: {layers: [10, 11]}}          # kinds default: ffn_in, ffn_out
    {method: adalora, init_r: 12, target_r: 8, targets: "bert\\.encoder\\.layer\\.1\\..*dense"}   # a regex
    {method: lora, r: 8, targets: {layers: all, kinds: [attn_q, attn_k, attn_v, attn_o, ffn_in, ffn_out]},
     peft: {use_rslora: true}}          # any other option of the installed peft's config class

Targets are shared: `resolve_targets` turns `layers + kinds` (matrix ids of specbasis.io.namemaps) or a regex
into exact module names, and every method is given that same list (peft's target_modules as a list of exact
names; the spectral adapter's target_modules likewise), so every method adapts the same matrices. The task
head (the modules models.head_prefixes names: `classifier`, DeBERTa's `pooler` too) trains in full under
every method (peft: modules_to_save).

LoRA's initialisations, as peft 0.21 has them (tuners/lora/layer.py, reset_lora_parameters): ΔW = (α/r) B A
with B (out, r) zero and A (r, in) random, so every variant starts as an exact no-op:
    init: kaiming   init_lora_weights=True        A ~ Kaiming-uniform(a=√5) (nn.Linear's own init)
    init: gaussian  init_lora_weights="gaussian"  A ~ N(0, 1/r²)
The paper's Table 1 rows "LoRA (Kaiming init of B)" and "LoRA (Gaussian init of B)" are mapped to these two:
its "B" can only be the factor that is random (zero-B with random A is the LoRA paper's own init; peft has
no zero-A / random-B option), so the rows differ by the distribution of the random factor, which peft
calls A. That reading is ours; the paper does not spell its letters out.

Bottleneck adapters (the paper's HAdapter / PAdapter rows) are missing: peft 0.21 has none, and the one
maintained library that has them, `adapters` (1.3.0, the newest on the index), requires
transformers ~= 4.57.6, against our pinned 5.23.
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from specbasis.methods.spec import (LORA_INITS, METHODS, PEFT_CONFIGS, PEFT_METHODS, PEFT_OWNED, SETTINGS,  # noqa: F401
                                   TARGETED, MethodSpec, _bad, _peft_config_class, parse_method)
from specbasis.io.namemaps import map_names, parse_id

log = logging.getLogger(__name__)

# The adapter's own files go into a subfolder of the model folder: transformers' from_pretrained would apply
# an adapter_config.json it finds beside the weights on top of them (the merged adapter twice), and
# extract.find_checkpoint takes the folder's *.safetensors files for the model's weights.
ADAPTER_DIR = "adapter"
SPECTRAL_FILE = "spectral_adapter.safetensors"   # save_spectral's file
BITFIT_FILE = "bitfit_adapter.safetensors"       # the trained biases and head
PEFT_FILES = ("adapter_model.safetensors", "adapter_config.json")  # what peft's save_pretrained writes

# ------------------------------------------------------------------------------------------- targets

def head_modules(model: nn.Module) -> list[str]:
    """Module names of the task head (trained in full by every method), as models.head_prefixes finds them."""
    from specbasis.models import head_prefixes

    return [p.removesuffix(".") for p in head_prefixes(model)]


def resolve_targets(model: nn.Module, targets: dict | str, family: str) -> dict[str, str]:
    """{module name: matrix id (regex: the name)} of the nn.Linear modules `targets` selects, sorted by name.

    Selection is spectral.find_targets' (layers + kinds through specbasis.io.namemaps, or a regex full-matched
    against module names), the one code path for every method; it refuses a selection that matches nothing,
    a layer the model lacks, and any module that is not an nn.Linear (a 1x1 conv, a fused qkv)."""
    from specbasis.methods.spectral import SpectralConfig, find_targets

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


# ------------------------------------------------------------------------------------------- prepare

@dataclass
class Prepared:
    """What prepare did: for the training loop (hooks), for metrics.json and for save_adapter."""

    spec: MethodSpec
    targets: dict[str, str]          # module name -> matrix id (regex targets: the name); {} for full, bitfit
    head: list[str]                  # module names trained in full beside the adapter
    counts: dict[str, int]           # trainable, adapter, head, base (parameters of the model before prepare)
    config: dict                     # the adapter config as applied (peft's to_dict / SpectralConfig's)
    after_step: Callable[[int], None] | None = None    # called after each optimizer step with the 1-based step
    regularizer: Callable[[], torch.Tensor] | None = None  # added to the task loss before backward
    initial_adapter: dict | None = None  # PiSSA: the adapter at init, to save the trained one as a plain LoRA


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _counts(model: nn.Module, base: int, head_params: int) -> dict[str, int]:
    trainable = sum(p.numel() for p in _trainable(model).values())
    return {"trainable": trainable, "adapter": trainable - head_params, "head": head_params, "base": base}


def prepare(model: nn.Module, spec: MethodSpec | Mapping | str | None, family: str, *,
            total_steps: int | None = None, factors: Mapping | None = None) -> tuple[nn.Module, Prepared]:
    """Apply the method to a freshly loaded classifier; return (the model to train, what was done).

    total_steps: the training loop's optimizer steps (AdaLoRA's budget schedule needs it). factors: spectral
    only, precomputed SVDs by matrix id (spectral.apply_spectral checks they fit the weights; those missing
    are computed). Everything that can fail (targets, ranks, peft options) fails here, before the first step."""
    spec = parse_method(spec)
    base = sum(p.numel() for p in model.parameters())
    head = head_modules(model)
    head_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(tuple(h + "." for h in head)))
    name = spec.method
    if name == "full":
        return model, Prepared(spec, {}, head, _counts(model, base, head_params), {})
    if name == "bitfit":
        prefixes = tuple(h + "." for h in head)
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".bias") or n.startswith(prefixes))
        counts = _counts(model, base, head_params)
        return model, Prepared(spec, {}, head, counts, {"trains": "every *.bias + the head"})
    targets = resolve_targets(model, spec.targets, family)
    if name == "spectral":
        return _prepare_spectral(model, spec, targets, head, base, head_params, factors)
    return _prepare_peft(model, spec, targets, head, base, head_params, total_steps)


def _prepare_spectral(model, spec, targets, head, base, head_params, factors=None):
    from specbasis.methods.spectral import SpectralConfig, apply_spectral, spectral_layers

    s = spec.settings
    for module, key in targets.items():
        rank = min(model.get_submodule(module).weight.shape)
        if s["m"] > rank:
            _bad("m", s["m"], f"exceeds the rank {rank} of {key} (weight "
                 f"{tuple(model.get_submodule(module).weight.shape)}); allowed: k < m ≤ {rank}", "spectral")
    config = SpectralConfig(k=s["k"], m=s["m"], target_modules=list(targets), dtype=s["dtype"], path=s["path"],
                            modules_to_save=head)
    given = {}  # by module name: the adapter's targets are module names, a store's SVDs are by matrix id
    for module, key in targets.items():
        found = None if factors is None else factors.get(key)
        if found is not None:
            given[module] = found
    model = apply_spectral(model, config, given)
    assert set(spectral_layers(model)) == set(targets), "the spectral adapter wrapped other modules than the targets"
    record = {**config.to_dict(), "factors_given": sorted(given)}  # the rest computed here (float64 SVD)
    return model, Prepared(spec, targets, head, _counts(model, base, head_params), record)


def _peft_config(spec: MethodSpec, targets: dict[str, str], head: list[str], total_steps: int | None):
    s, name = spec.settings, spec.method
    cls = _peft_config_class(name)
    common = {"target_modules": list(targets), "modules_to_save": list(head), **spec.peft}
    if name in ("lora", "dora", "pissa"):
        init = (LORA_INITS[s["init"]] if name != "pissa" else
                "pissa" if s["svd_niter"] is None else f"pissa_niter_{s['svd_niter']}")
        return cls(r=s["r"], lora_alpha=s["alpha"] if s["alpha"] is not None else s["r"], lora_dropout=s["dropout"],
                   init_lora_weights=init, use_dora=name == "dora", **common)
    if name == "adalora":
        if total_steps is None:
            raise ValueError("method adalora: prepare needs total_steps (the training loop's optimizer steps)")
        if s["tinit"] >= total_steps - s["tfinal"]:
            _bad("tinit", s["tinit"], f"with tfinal = {s['tfinal']} leaves no budgeting phase in {total_steps} steps; "
                 f"allowed: tinit < steps - tfinal", "adalora")
        alpha = {} if s["alpha"] is None else {"lora_alpha": s["alpha"]}
        return cls(init_r=s["init_r"], target_r=s["target_r"], lora_dropout=s["dropout"], tinit=s["tinit"],
                   tfinal=s["tfinal"], deltaT=s["delta_t"], beta1=s["beta1"], beta2=s["beta2"],
                   orth_reg_weight=s["orth_reg_weight"], total_step=total_steps, **alpha, **common)
    assert name == "psoft", name
    # free R (no Cayley orthogonality) and no magnitude vectors: ΔW = (α/r) B (R - I) A on the frozen top-r SVD
    return cls(r=s["r"], psoft_alpha=s["alpha"] if s["alpha"] is not None else s["r"], psoft_dropout=s["dropout"],
               psoft_orth=False, psoft_mag_a=False, psoft_mag_b=False, **common)


def _prepare_peft(model, spec, targets, head, base, head_params, total_steps):
    from peft import get_peft_model, get_peft_model_state_dict
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    name = spec.method
    if name == "psoft":
        for module, key in targets.items():
            rank = min(model.get_submodule(module).weight.shape)
            if spec.settings["r"] > rank:
                _bad("r", spec.settings["r"], f"exceeds the rank {rank} of {key}; allowed: r ≤ {rank}", name)
    config = _peft_config(spec, targets, head, total_steps)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # transformers 5 vs peft
        model = get_peft_model(model, config)
    tuned = {n.removeprefix("base_model.model.") for n, m in model.named_modules()
             if isinstance(m, BaseTunerLayer) and not isinstance(m, ModulesToSaveWrapper)}
    wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules()
               if isinstance(m, ModulesToSaveWrapper)}
    assert tuned == set(targets), f"peft adapted {sorted(tuned ^ set(targets))} against the targets"
    assert wrapped == set(head), f"peft trains {sorted(wrapped)} in full, the head is {head}"
    head_trained = sum(p.numel() for n, p in _trainable(model).items() if ".modules_to_save." in n)
    info = Prepared(spec, targets, head, _counts(model, base, head_trained), _jsonable(config.to_dict()))
    if name == "adalora":
        # peft adds the orthogonality penalty only to a loss the model computes itself (labels passed in);
        # our loop computes the loss, so it adds the same penalty here (AdaLoraModel.forward's mean of norms).
        info.regularizer = lambda: _adalora_orth_penalty(model, config.orth_reg_weight)
        # peft's example order: backward, optimizer.step, scheduler.step, update_and_allocate(global_step),
        # zero_grad, with global_step counted from 0; the allocator reads the gradients, still there then.
        info.after_step = lambda step: model.base_model.update_and_allocate(step - 1)
    if name == "pissa":
        info.initial_adapter = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    return model, info


def _adalora_orth_penalty(model, weight: float) -> torch.Tensor:
    adapter = model.base_model.trainable_adapter_name
    terms = []
    for n, p in model.base_model.model.named_parameters():
        if ("lora_A" in n or "lora_B" in n) and adapter in n:
            cov = p @ p.T if "lora_A" in n else p.T @ p          # (r, r)
            terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
    return weight * torch.stack(terms).mean() if terms else torch.zeros(())


def _jsonable(d):
    if isinstance(d, dict):
        return {str(k): _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple, set)):
        return [_jsonable(v) for v in (sorted(d) if isinstance(d, set) else d)]
    if isinstance(d, (str, int, float, bool)) or d is None:
        return d
    return str(d)


# ------------------------------------------------------------------------------------------- save, merge

def save_adapter(model: nn.Module, info: Prepared, folder: Path) -> list[str]:
    """Write the adapter's own file(s) into `folder`/adapter (before finalize); return their paths in `folder`.

    peft methods: peft's adapter_model.safetensors + adapter_config.json, loadable onto the pretrained model
    with PeftModel.from_pretrained (PiSSA's saved as the equivalent plain LoRA of rank 2r, peft's own
    conversion, since the trained PiSSA factors only fit the residual W - B₀A₀); spectral: save_spectral's
    file; bitfit: the trained biases and head; full: nothing."""
    name = info.spec.method
    if name == "full":
        return []
    folder = Path(folder) / ADAPTER_DIR
    folder.mkdir(exist_ok=True)
    written = _save_adapter(model, info, folder)
    return [f"{ADAPTER_DIR}/{f}" for f in written]


def _save_adapter(model: nn.Module, info: Prepared, folder: Path) -> list[str]:
    name = info.spec.method
    if name == "bitfit":
        from specbasis.models import save_weights

        save_weights(_trainable(model), folder / BITFIT_FILE, metadata={"method": "bitfit"})
        return [BITFIT_FILE]
    if name == "spectral":
        from specbasis.methods.spectral import save_spectral

        save_spectral(model, folder / SPECTRAL_FILE)
        return [SPECTRAL_FILE]
    readme = folder / "README.md"
    had_readme = readme.exists()
    if name == "pissa":
        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory() as td:
            init_dir = Path(td) / "pissa_init"
            init_dir.mkdir()
            save_file(info.initial_adapter, str(init_dir / PEFT_FILES[0]), metadata={"format": "pt"})
            with warnings.catch_warnings():  # the conversion loads the initial adapter beside the trained one
                warnings.filterwarnings("ignore", message="PiSSA changes the base weights")
                model.save_pretrained(str(folder), path_initial_model_for_weight_conversion=str(init_dir))
        # peft 0.21's conversion (LoraModel.subtract_mutated_init) keeps only the lora_A/B tensors: put the
        # trained head (modules_to_save) back, or the adapter would load onto a fresh head
        from peft import get_peft_model_state_dict
        from safetensors.torch import load_file

        saved = load_file(folder / PEFT_FILES[0])
        lost = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()
                if k not in saved and "lora_" not in k}
        if lost:
            save_file({**saved, **lost}, str(folder / PEFT_FILES[0]), metadata={"format": "pt"})
    else:
        model.save_pretrained(str(folder))
    if readme.exists() and not had_readme:
        readme.unlink()  # peft's model card template: nothing of ours
    missing = [f for f in PEFT_FILES if not (folder / f).is_file()]
    assert not missing, f"peft's save_pretrained wrote no {missing} in {folder}"
    return list(PEFT_FILES)


def finalize(model: nn.Module, spec: MethodSpec | Prepared | Mapping | str | None) -> nn.Module:
    """The plain model: adapters merged into the weights (refusing non-finite ones), adapter modules gone."""
    if isinstance(spec, Prepared):
        spec = spec.spec
    if isinstance(spec, MethodSpec):
        name = spec.method
    elif isinstance(spec, Mapping):
        name = spec.get("method", "full")
    else:
        name = spec or "full"
    if name not in METHODS:
        _bad("method", name, f"allowed: {', '.join(METHODS)}")
    if name == "spectral":
        from specbasis.methods.spectral import merge_and_unload

        model = merge_and_unload(model, safe=True)
        del model.spectral_config
    elif name in PEFT_METHODS:
        model = model.merge_and_unload(safe_merge=True)
    if name != "full":
        for p in model.parameters():
            p.requires_grad_(True)  # a plain model again, as load_classifier would give it
    return model
