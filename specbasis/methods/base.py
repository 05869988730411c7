"""What a finetuning method is: a torch-free, checked config (`Method`) and what applying it returns (`Adapted`).

A method is parsed once from its flat spec (the config's YAML, a dict here) into an instance of its class
(specbasis.methods.METHODS); that object is what travels. Its class says what it takes and what it needs:

    SCHEMA            its own settings: name -> (default, check returning None or what is allowed)
    targeted          adapts chosen matrices (and needs `targets`: {layers, kinds} or a regex)
    default_targets   the targets a targeted method takes when none are given (None: they are required)
    mergeable         the trained adapter merges into the weights (False: it is saved beside a plain model and
                      re-attached on loading, methods.apply.load_trained; its inference cost is measured)
    takes_peft        takes `peft:`, further options of the installed peft's config class
    reads_svd_store   applying it wants the pretrained model's SVDs (the workflow passes its SVD store)
    trains_every_weight  full finetuning: every weight trains
    libraries         libraries whose versions its runs record, beyond torch and the model's own

Importing this module (and every method's) imports no torch: the workflow checks every method of a suite when
it parses the config. `apply` imports what it needs.

`Method.apply(model, targets, head, ...)` changes the model in place or wraps it, and returns an `Adapted`: the
model to train, plus the hooks the one training loop calls without asking which method it runs: a loss term
added before backward (`loss_term`), an action after each optimizer step (`after_step`), the adapter's own
files (`save`), and the plain model with the adapter merged into its weights (`merge`).
"""
from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping

from specbasis.kinds import FFN_KINDS, KINDS

if TYPE_CHECKING:
    import torch
    from torch import nn

REQUIRED = object()  # a setting without a default

# The adapter's own files go into a subfolder of the model folder: transformers' from_pretrained would apply
# an adapter_config.json it finds beside the weights on top of them (the merged adapter twice), and
# extract.find_checkpoint takes the folder's *.safetensors files for the model's weights.
ADAPTER_DIR = "adapter"


# ------------------------------------------------------------------------------------------- checks

def integer(lo: int | None = None) -> Callable[[Any], str | None]:
    def check(v):
        ok = isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)
        return None if ok else f"an int{'' if lo is None else f' ≥ {lo}'}"
    return check


def number(lo: float, hi: float, hi_open: bool = False) -> Callable[[Any], str | None]:
    def check(v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v and (v < hi if hi_open else v <= hi)
        return None if ok else f"a number in [{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return check


def positive(v) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return None if ok else "a number > 0"


def one_of(*allowed) -> Callable[[Any], str | None]:
    return lambda v: None if v in allowed else f"one of {', '.join(map(str, allowed))}"


def optional(check) -> Callable[[Any], str | None]:
    return lambda v: None if v is None else check(v)


DROPOUT = (0.0, number(0, 1, hi_open=True))


def bad(key: str, value, allowed: str, method: str | None = None):
    """Refuse a setting: the method, the key, the value and what is allowed."""
    where = f"method {method}: " if method else ""
    raise ValueError(f"{where}{key} = {value!r}: {allowed}")


def check_targets(targets, method: str) -> dict | str:
    """{layers, kinds} (layers 'all' or ints, negative from the end; kinds default FFN) or a regex."""
    example = "e.g. {layers: [-2, -1], kinds: [ffn_in, ffn_out]}, or a regex full-matched against module names"
    if targets is None:
        bad("targets", None, f"required for {method}: {example}", method)
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as e:
            bad("targets", targets, f"not a regular expression ({e})", method)
        return targets
    if not isinstance(targets, Mapping):
        bad("targets", targets, example, method)
    unknown = sorted(set(targets) - {"layers", "kinds"})
    if unknown:
        bad(f"targets.{unknown[0]}", targets[unknown[0]], "allowed keys: layers, kinds", method)
    layers = targets.get("layers")
    if layers != "all" and (not isinstance(layers, (list, tuple)) or not layers
                            or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)):
        bad("targets.layers", layers, "'all' or a non-empty list of layer indices (ints; negative counts from "
            "the end)", method)
    kinds = targets.get("kinds", FFN_KINDS)
    if not isinstance(kinds, (list, tuple)) or not kinds or any(kd not in KINDS for kd in kinds):
        bad("targets.kinds", kinds, f"a non-empty list; allowed: {', '.join(KINDS)}", method)
    return {"layers": layers if layers == "all" else list(layers), "kinds": list(kinds)}


# ------------------------------------------------------------------------------------------- the method

class Method:
    """A checked finetuning method: its name, its settings (defaults filled in), its targets, peft options."""

    name: ClassVar[str]
    SCHEMA: ClassVar[dict[str, tuple[Any, Callable]]] = {}
    targeted: ClassVar[bool] = True
    default_targets: ClassVar[dict | None] = None
    mergeable: ClassVar[bool] = True
    takes_peft: ClassVar[bool] = False
    reads_svd_store: ClassVar[bool] = False
    trains_every_weight: ClassVar[bool] = False  # full finetuning (a suite's own finetunes are)
    libraries: ClassVar[tuple[str, ...]] = ()
    untargeted_trains: ClassVar[str] = ""  # what trains when the method takes no targets (for its error)

    def __init__(self, settings: Mapping | None = None, targets: dict | str | None = None,
                 peft: Mapping | None = None):
        """Check and fill in the settings (the keys of SCHEMA), the targets and the peft options."""
        given, settings = dict(settings or {}), {}
        unknown = sorted(set(given) - set(self.SCHEMA))
        if unknown:
            keys = list(self.SCHEMA) + ["targets"] * self.targeted + ["peft"] * self.takes_peft
            bad(unknown[0], given[unknown[0]], f"not a setting of {self.name}; allowed: {', '.join(keys) or 'none'}",
                self.name)
        for key, (default, check) in self.SCHEMA.items():
            if key not in given:
                if default is REQUIRED:
                    bad(key, None, "required", self.name)
                settings[key] = default
                continue
            problem = check(given[key])
            if problem:
                bad(key, given[key], f"must be {problem}", self.name)
            settings[key] = given[key]
        self.settings = settings
        self.check()
        if self.targeted:
            targets = check_targets(copy.deepcopy(self.default_targets) if targets is None else targets, self.name)
        elif targets is not None:
            bad("targets", targets, f"{self.name} takes no targets ({self.untargeted_trains} trains)", self.name)
        self.targets = targets
        if peft is not None and not self.takes_peft:
            bad("peft", peft, f"only the peft methods take peft options, not {self.name}", self.name)
        self.peft = dict(peft or {})
        if self.takes_peft:
            self.check_peft(self.peft)

    def svd_rank(self) -> int | None:
        """For a method that reads the SVD store: how many leading singular vectors of each matrix it needs."""
        return None

    def check(self) -> None:
        """Checks across settings (each method its own)."""

    def check_peft(self, options: dict) -> None:
        """Checks of the peft options (peft methods only)."""

    @classmethod
    def from_spec(cls, spec: Mapping) -> "Method":
        """From the flat form (without `method`): its settings, `targets`, `peft`."""
        spec = dict(spec)
        targets, peft = spec.pop("targets", None), spec.pop("peft", None)
        return cls(spec, targets, peft)

    def to_dict(self) -> dict:
        """The flat form parse reads (and metrics.json records)."""
        return {"method": self.name, **self.settings,
                **({"targets": copy.deepcopy(self.targets)} if self.targets is not None else {}),
                **({"peft": dict(self.peft)} if self.peft else {})}

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"

    def apply(self, model: "nn.Module", targets: dict[str, str], head: list[str], *, total_steps: int | None = None,
              factors: Mapping | None = None) -> "Adapted":
        """Apply the method to a freshly loaded classifier whose `targets` ({module name: matrix id}, {} for an
        untargeted method) and task `head` (module names, trained in full by every method) are resolved.
        total_steps: the loop's optimizer steps (AdaLoRA's budget needs it); factors: precomputed SVDs by
        matrix id (methods that read the SVD store). Everything that can fail fails here, before step one."""
        raise NotImplementedError

    def reattach(self, model: "nn.Module", modules: list[str], state: dict) -> None:
        """A method that is not mergeable: put its saved adapter (`state`, its file's tensors) back on the
        `modules` of a model loaded from the saved folder (methods.apply.load_trained)."""
        raise NotImplementedError(f"method {self.name} merges into the weights: its saved model needs nothing back")


# ------------------------------------------------------------------------------------------- applied

class Adapted:
    """A method applied to a model: the model to train and the hooks of the training loop."""

    def __init__(self, method: Method, model: "nn.Module", targets: dict[str, str], head: list[str],
                 config: dict | None = None):
        self.method, self.model, self.targets, self.head = method, model, dict(targets), list(head)
        self.config = config or {}   # the adapter config as applied (peft's to_dict, SpectralConfig's), for metrics
        self.counts: dict[str, int] = {}  # trainable, adapter, head, base: set by methods.apply.prepare

    def trainable(self) -> dict[str, "torch.nn.Parameter"]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def head_parameters(self) -> int:
        """Parameters of the head that train (the head's own modules; peft wraps them)."""
        prefixes = tuple(h + "." for h in self.head)
        return sum(p.numel() for n, p in self.model.named_parameters() if p.requires_grad and n.startswith(prefixes))

    def loss_term(self) -> "torch.Tensor | None":
        """Added to the task loss before backward (None: nothing)."""
        return None

    def after_step(self, step: int) -> None:
        """Called after each optimizer step with the 1-based step."""

    def training_state(self) -> dict:
        """What the method keeps between steps outside the model's parameters and buffers (a resumable finetune saves
        it with the model: specbasis.training.resume); {} for most methods."""
        return {}

    def load_training_state(self, state: dict) -> None:
        """Put back what training_state gave."""

    def save(self, folder: Path) -> list[str]:
        """Write the adapter's own file(s) into `folder`/adapter (before merge); return their paths in `folder`."""
        written = self.write_adapter(Path(folder) / ADAPTER_DIR)
        return [f"{ADAPTER_DIR}/{f}" for f in written]

    def write_adapter(self, folder: Path) -> list[str]:
        """The adapter's files, written into `folder` (made here); [] when the method has none."""
        return []

    def merge(self) -> "nn.Module":
        """The plain model: the adapter merged into the weights (refusing non-finite ones), adapter modules gone,
        every parameter trainable again, as models.load_classifier would give it. A method that is not mergeable
        gives the model without its adapter (saved by `save`, put back by methods.apply.load_trained)."""
        model = self.unload()
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def unload(self) -> "nn.Module":
        return self.model

    @contextlib.contextmanager
    def disabled(self) -> "Iterator[nn.Module]":
        """The model with the adapter switched off (a method that is not mergeable: its inference-cost baseline)."""
        raise NotImplementedError(f"method {self.method.name}: no switch for its adapter")
        yield
