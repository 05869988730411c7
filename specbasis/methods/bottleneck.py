"""Bottleneck adapters: the paper's HAdapter (Houlsby et al. 2019) and PAdapter (Pfeiffer et al. 2021) rows.

    method     an adapter after                                    trains
    houlsby    the attention output and the FFN output of a block   every adapter + head
    pfeiffer   the FFN output of a block                            every adapter + head

An adapter sits on the output h of a Linear (its matrix stays frozen) and adds a residual bottleneck:

    h' = h + up(act(down(h)))        down: d -> b (weight N(0, 0.02²), bias 0), up: b -> d (weight and bias 0)

with d the Linear's output width and b = round(d / reduction_factor) (at least 1). The up-projection starts at
zero, so at step 0 the adapted model computes exactly what the pretrained one does. One adapter has
2·d·b + b + d parameters. Written here: peft 0.21 has no bottleneck adapters, and `adapters` 1.3.0 (the one
maintained library with them) requires transformers ~= 4.57.6, against our pinned 5.23.

Placement: the targets (default: every block's attn_o and ffn_out for houlsby, ffn_out for pfeiffer) are the
Linear layers whose output the adapter reads, as for every targeted method (methods.apply.resolve_targets). In
BERT-like blocks that is the dense projection before dropout and the residual LayerNorm; the libraries that
implement Houlsby's adapter place it after that dropout, a difference only while training with dropout on.

Reduction factors of the default suite (config.yaml): the paper's counts (HAdapter 1.22M, PAdapter 1.18M against
LoRA's 1.33M on DeBERTa-v3-base, d = 768, 12 blocks) are those of b = 32 (Houlsby, 24 adapters) and b = 64
(Pfeiffer, 12 adapters); on MiniLM (d = 384, 6 blocks) the same b are reduction factors 12 and 6.

An adapter is a function of h, not a change of the weight: it cannot be merged into the Linear (`mergeable` is
False). The saved model folder holds the pretrained weights and the trained head; adapter/ holds the adapters'
tensors and unmerged.json (the method and the adapted modules). specbasis.models.load_classifier refuses such a
folder (it would silently lose the adapters); specbasis.methods.apply.load_trained loads it with the adapters.
"""
from __future__ import annotations

import contextlib
import functools
import json

from specbasis.methods.base import Adapted, Method, bad, one_of, positive

BOTTLENECK_FILE = "bottleneck_adapter.safetensors"  # the adapters' tensors, by module name
DOWN_STD = 0.02  # the down-projection's init (adapters' init_weights="bert"); the up-projection starts at 0
NONLINEARITIES = ("relu", "gelu", "silu", "tanh")


class Bottleneck(Method):
    """A residual bottleneck adapter after each target Linear (targets default: `default_targets`)."""

    SCHEMA = {"reduction_factor": (16, positive), "nonlinearity": ("relu", one_of(*NONLINEARITIES))}
    mergeable = False

    def bottleneck(self, width: int) -> int:
        """The bottleneck dimension b for a Linear of output width d."""
        return max(1, round(width / self.settings["reduction_factor"]))

    def apply(self, model, targets, head, *, total_steps=None, factors=None) -> Adapted:
        for module in targets:
            width = model.get_submodule(module).out_features
            if self.bottleneck(width) > width:
                bad("reduction_factor", self.settings["reduction_factor"], f"gives a bottleneck wider than the "
                    f"{width} outputs of {module}; allowed: a factor ≥ 1", self.name)
        prefixes = tuple(h + "." for h in head)
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(prefixes))
        sizes = attach(model, targets, self.bottleneck, self.settings["nonlinearity"])
        record = {"reduction_factor": self.settings["reduction_factor"], "nonlinearity": self.settings["nonlinearity"],
                  "bottleneck": sizes, "down_init_std": DOWN_STD, "up_init": "zeros"}
        return BottleneckAdapted(self, model, targets, head, record)

    def reattach(self, model, modules: list[str], state: dict) -> None:
        """Put saved adapters (`state`: BOTTLENECK_FILE's tensors) back on the Linear layers `modules`."""
        attach(model, modules, self.bottleneck, self.settings["nonlinearity"])
        adapters = {k: v for k, v in model.state_dict().items() if is_adapter_key(k)}
        if set(state) != set(adapters):
            raise ValueError(f"the saved adapters {sorted(set(state) ^ set(adapters))[:4]} do not match the "
                             f"modules {modules[:4]}")
        model.load_state_dict(state, strict=False)


class Houlsby(Bottleneck):
    name = "houlsby"
    default_targets = {"layers": "all", "kinds": ["attn_o", "ffn_out"]}


class Pfeiffer(Bottleneck):
    name = "pfeiffer"
    default_targets = {"layers": "all", "kinds": ["ffn_out"]}


def is_adapter_key(key: str) -> bool:
    return ".adapter_down." in key or ".adapter_up." in key or key.startswith(("adapter_down.", "adapter_up."))


def attach(model, modules, bottleneck, nonlinearity: str) -> dict[str, int]:
    """Replace each Linear `modules` names by an AdaptedLinear around it; return {module: b}."""
    sizes = {}
    for name in modules:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        b = bottleneck(linear.out_features)
        setattr(parent, child, adapted_linear(linear, b, nonlinearity))
        sizes[name] = b
    return sizes


def adapted_linear(linear, b: int, nonlinearity: str):
    """The Linear, its output passed through a residual bottleneck (zero up-projection: the Linear as it was)."""
    return adapted_linear_class()(linear, b, nonlinearity)


@functools.cache
def adapted_linear_class():
    """AdaptedLinear, defined on first use: importing this module imports no torch."""
    from torch import nn

    class AdaptedLinear(nn.Module):
        """h = base(x); h + adapter_up(act(adapter_down(h))). `enabled` False: the Linear alone."""

        def __init__(self, linear: nn.Linear, b: int, nonlinearity: str):
            super().__init__()
            self.base = linear
            w = linear.weight
            self.adapter_down = nn.Linear(linear.out_features, b, device=w.device, dtype=w.dtype)
            self.adapter_up = nn.Linear(b, linear.out_features, device=w.device, dtype=w.dtype)
            nn.init.normal_(self.adapter_down.weight, std=DOWN_STD)
            nn.init.zeros_(self.adapter_down.bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)
            self.act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}[nonlinearity]()
            self.enabled = True

        def forward(self, x):
            h = self.base(x)
            return h + self.adapter_up(self.act(self.adapter_down(h))) if self.enabled else h

    return AdaptedLinear


class BottleneckAdapted(Adapted):
    def write_adapter(self, folder):
        from specbasis.models import UNMERGED_FILE, save_weights

        folder.mkdir(exist_ok=True)
        state = {k: v for k, v in self.model.state_dict().items() if is_adapter_key(k)}
        save_weights(state, folder / BOTTLENECK_FILE, metadata={"method": self.method.name})
        marker = folder.parent / UNMERGED_FILE
        marker.write_text(json.dumps({"method": self.method.to_dict(), "modules": sorted(self.targets),
                                      "file": BOTTLENECK_FILE}, indent=2) + "\n")
        return [BOTTLENECK_FILE, marker.name]

    @contextlib.contextmanager
    def disabled(self):
        """The model without its adapters (the base forward), for the inference cost."""
        layers = [self.model.get_submodule(m) for m in self.targets]
        for layer in layers:
            layer.enabled = False
        try:
            yield self.model
        finally:
            for layer in layers:
                layer.enabled = True

    def unload(self):
        """The model without the adapters: each AdaptedLinear replaced by its Linear (the adapters are saved)."""
        for name in self.targets:
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, getattr(parent, child).base)
        return self.model
