"""Finetuning methods as objects, and the spectral adapter (specbasis.methods.spectral_adapter).

    method     trains                                               file
    full       every weight                                         full.py
    bitfit     every bias (LayerNorm's too, as BitFit does) + head  bitfit.py
    spectral   M, the r x r block [k, m) of U (Σ + A) Vh + head     spectral.py (spectral_adapter.py)
    lora       A (r, in), B (out, r) per matrix + head              hf_peft.py (peft LoraConfig)
    dora       lora + a magnitude per output row                    hf_peft.py
    pissa      lora started on the top-r SVD of W, W := W - BA      hf_peft.py
    adalora    P Λ Q with init_r ranks, pruned to target_r + head   hf_peft.py
    psoft      R (r x r) between frozen top-r SVD factors + head    hf_peft.py
    houlsby    bottleneck adapters after attn_o and ffn_out + head  bottleneck.py (not mergeable)
    pfeiffer   bottleneck adapters after ffn_out + head             bottleneck.py (not mergeable)

A spec (YAML in the config; a dict here) is flat, one method a spec::

    {method: lora, r: 8, alpha: 16, init: gaussian, targets: {layers: [-2, -1], kinds: [ffn_in, ffn_out]}}
    {method: spectral, k: 0, m: 300, targets: {layers: [10, 11]}}          # kinds default: ffn_in, ffn_out
    {method: adalora, init_r: 12, target_r: 8, targets: "bert\\.encoder\\.layer\\.1\\..*dense"}   # a regex
    {method: lora, r: 8, targets: {layers: all, kinds: [attn_q, attn_k, attn_v, attn_o, ffn_in, ffn_out]},
     peft: {use_rslora: true}}          # any other option of the installed peft's config class

`parse` turns it into the method's object (torch-free; every error names the key, the value and what is
allowed); `specbasis.methods.apply.prepare` resolves the shared targets and the head on a model and applies
the method, returning an `Adapted` whose hooks the one training loop calls. Adding a method: one file with a
`Method` subclass (and its `Adapted`, where it needs hooks), one line in METHODS, its unit test.
"""
from __future__ import annotations

from typing import Mapping

from specbasis.methods.base import Adapted, Method, bad
from specbasis.methods.bitfit import BitFit
from specbasis.methods.bottleneck import Houlsby, Pfeiffer
from specbasis.methods.full import Full
from specbasis.methods.hf_peft import AdaLoRA, Dora, Lora, PiSSA, PSoft
from specbasis.methods.spectral import Spectral

METHODS: dict[str, type[Method]] = {
    "full": Full,
    "bitfit": BitFit,
    "spectral": Spectral,
    "lora": Lora,
    "dora": Dora,
    "pissa": PiSSA,
    "adalora": AdaLoRA,
    "psoft": PSoft,
    "houlsby": Houlsby,
    "pfeiffer": Pfeiffer,
}
assert all(name == cls.name for name, cls in METHODS.items())

__all__ = ["METHODS", "Adapted", "Method", "parse"]


def parse(spec: Method | Mapping | str | None) -> Method:
    """The method of a spec (None or a bare name: that method with its defaults), checked before anything is
    loaded; every error names the key, the value and what is allowed. A Method is returned as it is."""
    if isinstance(spec, Method):
        return spec
    if spec is None:
        spec = {"method": "full"}
    elif isinstance(spec, str):
        spec = {"method": spec}
    elif not isinstance(spec, Mapping):
        bad("method", spec, "a method name or a mapping with key `method`")
    spec = dict(spec)
    name = spec.pop("method", "full")
    if name not in METHODS:
        bad("method", name, f"allowed: {', '.join(METHODS)}")
    cls = METHODS[name]
    if spec.get("peft") is not None and not cls.takes_peft:
        peft = ", ".join(n for n, c in METHODS.items() if c.takes_peft)
        bad("peft", spec["peft"], f"only the peft methods ({peft}) take peft options", name)
    return cls.from_spec(spec)
