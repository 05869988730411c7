"""Finetuning method specs: the settings each method of specbasis.methods.apply takes, their defaults and checks.

Torch-free (the workflow checks every method of the config's `peft:` section when it parses the config, and
importing torch there would cost seconds): `parse_method` turns a spec (a name, or a flat mapping as the
config writes it) into a checked MethodSpec, every error naming the key, the value and what is allowed.
specbasis.methods.apply applies a spec to a model; its docstring describes the methods and the spec's form.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from specbasis.kinds import FFN_KINDS, KINDS

PEFT_METHODS = ("lora", "dora", "pissa", "adalora", "psoft")
LORA_INITS = {"kaiming": True, "gaussian": "gaussian"}   # our name -> peft's init_lora_weights
REQUIRED = object()  # a setting without a default


def _int(lo: int | None = None):
    def check(v):
        ok = isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)
        return None if ok else f"an int{'' if lo is None else f' ≥ {lo}'}"
    return check


def _number(lo: float, hi: float, hi_open: bool = False):
    def check(v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v and (v < hi if hi_open else v <= hi)
        return None if ok else f"a number in [{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return check


def _positive(v):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return None if ok else "a number > 0"


def _one_of(*allowed):
    return lambda v: None if v in allowed else f"one of {', '.join(map(str, allowed))}"


def _optional(check):
    return lambda v: None if v is None else check(v)


_R = {"r": (8, _int(1)), "alpha": (None, _optional(_positive)), "dropout": (0.0, _number(0, 1, hi_open=True))}
# Every method's settings: name -> (default, check returning None or what is allowed). `targets` and `peft`
# are handled apart. alpha None: alpha = r (scaling α/r = 1; peft's own defaults have r = α too).
SETTINGS: dict[str, dict[str, tuple[Any, Callable]]] = {
    "full": {},
    "bitfit": {},
    "spectral": {"k": (0, _int(0)), "m": (REQUIRED, _int(1)),
                 "dtype": ("float32", _one_of("float32", "float64", "bfloat16", "float16")),
                 "path": ("auto", _one_of("auto", "factored", "dense"))},
    "lora": {**_R, "init": ("kaiming", _one_of(*LORA_INITS))},
    "dora": {**_R, "init": ("kaiming", _one_of(*LORA_INITS))},
    "pissa": {**_R, "svd_niter": (None, _optional(_int(0)))},  # None: full SVD; n: peft's fast SVD, n iterations
    # AdaLoRA: alpha None is peft's default 8 (its scaling is α / the current rank); defaults are peft's.
    "adalora": {"init_r": (12, _int(1)), "target_r": (8, _int(1)), "alpha": (None, _optional(_positive)),
                "dropout": (0.0, _number(0, 1, hi_open=True)), "tinit": (0, _int(0)), "tfinal": (0, _int(0)),
                "delta_t": (1, _int(1)), "beta1": (0.85, _number(0, 1)), "beta2": (0.85, _number(0, 1)),
                "orth_reg_weight": (0.5, _number(0, float("inf")))},
    "psoft": {"r": (32, _int(1)), "alpha": (None, _optional(_positive)), "dropout": (0.0, _number(0, 1, hi_open=True))},
}
METHODS = tuple(SETTINGS)
TARGETED = ("spectral",) + PEFT_METHODS  # methods that adapt chosen matrices (and need `targets`)

# peft config class per method, and the fields our settings (or the method itself) own: `peft:` may not set them.
PEFT_CONFIGS = {"lora": "LoraConfig", "dora": "LoraConfig", "pissa": "LoraConfig", "adalora": "AdaLoraConfig",
                "psoft": "PsoftConfig"}
_OWNED_COMMON = {"target_modules", "modules_to_save", "peft_type", "task_type", "inference_mode",
                 "base_model_name_or_path", "revision", "auto_mapping"}
PEFT_OWNED = {
    "lora": {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "init_lora_weights": "init",
             "use_dora": "method"},
    "adalora": {"init_r": "init_r", "target_r": "target_r", "lora_alpha": "alpha", "lora_dropout": "dropout",
                "tinit": "tinit", "tfinal": "tfinal", "deltaT": "delta_t", "beta1": "beta1", "beta2": "beta2",
                "orth_reg_weight": "orth_reg_weight", "total_step": "the training loop's steps", "r": "init_r",
                "init_lora_weights": "method", "use_dora": "method"},
    "psoft": {"r": "r", "psoft_alpha": "alpha", "psoft_dropout": "dropout", "psoft_orth": "method",
              "psoft_mag_a": "method", "psoft_mag_b": "method"},
}
PEFT_OWNED["dora"] = PEFT_OWNED["pissa"] = PEFT_OWNED["lora"]


# ------------------------------------------------------------------------------------------- the spec

@dataclass
class MethodSpec:
    """A checked method: its name, its settings (defaults filled in), its targets and extra peft options."""

    method: str = "full"
    settings: dict = field(default_factory=dict)   # the method's own keys (SETTINGS), every one filled in
    targets: dict | str | None = None              # {layers, kinds} or a regex; None for full and bitfit
    peft: dict = field(default_factory=dict)       # further options of the peft config class (peft methods only)

    def to_dict(self) -> dict:
        """The flat form parse_method reads (and metrics.json records)."""
        return {"method": self.method, **self.settings,
                **({"targets": copy.deepcopy(self.targets)} if self.targets is not None else {}),
                **({"peft": dict(self.peft)} if self.peft else {})}

    @property
    def uses_peft(self) -> bool:
        return self.method in PEFT_METHODS


def _bad(key: str, value, allowed: str, method: str | None = None):
    where = f"method {method}: " if method else ""
    raise ValueError(f"{where}{key} = {value!r}: {allowed}")


def parse_method(spec: MethodSpec | Mapping | str | None) -> MethodSpec:
    """Check a method spec (None or a bare name: that method with its defaults) before anything is loaded;
    every error names the key, the value and what is allowed."""
    if isinstance(spec, MethodSpec):
        spec = spec.to_dict()
    if spec is None:
        spec = {"method": "full"}
    elif isinstance(spec, str):
        spec = {"method": spec}
    elif not isinstance(spec, Mapping):
        _bad("method", spec, "a method name or a mapping with key `method`")
    spec = dict(spec)
    name = spec.pop("method", "full")
    if name not in SETTINGS:
        _bad("method", name, f"allowed: {', '.join(METHODS)}")
    schema = SETTINGS[name]
    targets = spec.pop("targets", None)
    extra = spec.pop("peft", None)
    unknown = sorted(set(spec) - set(schema))
    if unknown:
        keys = list(schema) + ["targets"] * (name in TARGETED) + ["peft"] * (name in PEFT_METHODS)
        _bad(unknown[0], spec[unknown[0]], f"not a setting of {name}; allowed: {', '.join(keys) or 'none'}", name)
    settings = {}
    for key, (default, check) in schema.items():
        if key not in spec:
            if default is REQUIRED:
                _bad(key, None, "required", name)
            settings[key] = default
            continue
        problem = check(spec[key])
        if problem:
            _bad(key, spec[key], f"must be {problem}", name)
        settings[key] = spec[key]
    if name == "spectral" and settings["k"] >= settings["m"]:
        _bad("m", settings["m"], f"must exceed k = {settings['k']}: the block [k, m) needs r = m - k ≥ 1", name)
    if name == "adalora" and settings["target_r"] > settings["init_r"]:
        _bad("target_r", settings["target_r"], f"must be ≤ init_r = {settings['init_r']} (AdaLoRA only prunes)", name)
    if name in TARGETED:
        targets = _check_targets(targets, name)
    elif targets is not None:
        _bad("targets", targets, f"{name} takes no targets ({'every weight' if name == 'full' else 'every bias'} "
             f"trains)", name)
    if extra is not None and name not in PEFT_METHODS:
        _bad("peft", extra, f"only the peft methods ({', '.join(PEFT_METHODS)}) take peft options", name)
    extra = dict(extra or {})
    if name in PEFT_METHODS:
        _check_peft_options(name, extra)
    return MethodSpec(name, settings, targets, extra)


def _check_targets(targets, method: str) -> dict | str:
    example = "e.g. {layers: [-2, -1], kinds: [ffn_in, ffn_out]}, or a regex full-matched against module names"
    if targets is None:
        _bad("targets", None, f"required for {method}: {example}", method)
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as e:
            _bad("targets", targets, f"not a regular expression ({e})", method)
        return targets
    if not isinstance(targets, Mapping):
        _bad("targets", targets, example, method)
    unknown = sorted(set(targets) - {"layers", "kinds"})
    if unknown:
        _bad(f"targets.{unknown[0]}", targets[unknown[0]], "allowed keys: layers, kinds", method)
    layers = targets.get("layers")
    if layers != "all" and (not isinstance(layers, (list, tuple)) or not layers
                            or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)):
        _bad("targets.layers", layers, "'all' or a non-empty list of layer indices (ints; negative counts from "
             "the end)", method)
    kinds = targets.get("kinds", FFN_KINDS)
    if not isinstance(kinds, (list, tuple)) or not kinds or any(kd not in KINDS for kd in kinds):
        _bad("targets.kinds", kinds, f"a non-empty list; allowed: {', '.join(KINDS)}", method)
    return {"layers": layers if layers == "all" else list(layers), "kinds": list(kinds)}


def _peft_config_class(method: str):
    import peft

    cls = getattr(peft, PEFT_CONFIGS[method], None)
    if cls is None:
        raise ValueError(f"method {method}: the installed peft {peft.__version__} has no {PEFT_CONFIGS[method]}; "
                         f"install the pinned peft (requirements.txt)")
    return cls


def _check_peft_options(method: str, extra: dict) -> None:
    import peft

    cls = _peft_config_class(method)
    fields = {f.name for f in dataclasses.fields(cls)}
    owned = PEFT_OWNED[method]
    allowed = sorted(fields - set(owned) - _OWNED_COMMON)
    for key in extra:
        if key in owned:
            by = owned[key]
            _bad(f"peft.{key}", extra[key], f"set by the method itself ({method})" if by == "method" else
                 f"set by the key `{by}`" if by in SETTINGS[method] else f"set by {by}", method)
        if key in _OWNED_COMMON:
            _bad(f"peft.{key}", extra[key], "set by specbasis (targets: `targets`; the head trains always)", method)
        if key not in fields:
            _bad(f"peft.{key}", extra[key], f"{cls.__name__} of the installed peft {peft.__version__} has no such "
                 f"option; allowed: {', '.join(allowed)}", method)
