"""The methods HF peft implements: LoRA (two initialisations), DoRA, PiSSA, AdaLoRA and PSOFT.

    method     trains                                               through
    lora       A (r, in), B (out, r) per matrix + head              peft LoraConfig
    dora       lora + a magnitude per output row                    peft LoraConfig(use_dora=True)
    pissa      lora started on the top-r SVD of W, W := W - BA      peft LoraConfig(init_lora_weights="pissa")
    adalora    P Λ Q with init_r ranks, pruned to target_r + head   peft AdaLoraConfig (+ update_and_allocate)
    psoft      R (r x r) between frozen top-r SVD factors + head    peft PsoftConfig(psoft_orth=False, no magnitudes)

Every method is given the shared targets (peft's target_modules as a list of exact names) and trains the task
head in full (modules_to_save). `peft:` passes any further option of the installed peft's config class, except
those our settings or the method itself own (PEFT_OWNED).

LoRA's initialisations, as peft 0.21 has them (tuners/lora/layer.py, reset_lora_parameters): ΔW = (α/r) B A
with B (out, r) zero and A (r, in) random, so every variant starts as an exact no-op:
    init: kaiming   init_lora_weights=True        A ~ Kaiming-uniform(a=√5) (nn.Linear's own init)
    init: gaussian  init_lora_weights="gaussian"  A ~ N(0, 1/r²)
The paper's Table 1 rows "LoRA (Kaiming init of B)" and "LoRA (Gaussian init of B)" are mapped to these two:
its "B" can only be the factor that is random (zero-B with random A is the LoRA paper's own init; peft has
no zero-A / random-B option), so the rows differ by the distribution of the random factor, which peft
calls A. That reading is ours; the paper does not spell its letters out.

The paper's HAdapter / PAdapter rows are bottleneck adapters, which peft 0.21 has none of: specbasis.methods.bottleneck.
"""
from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import ClassVar

from specbasis.methods.base import DROPOUT, Adapted, Method, bad, integer, number, one_of, optional, positive

LORA_INITS = {"kaiming": True, "gaussian": "gaussian"}   # our name -> peft's init_lora_weights
PEFT_FILES = ("adapter_model.safetensors", "adapter_config.json")  # what peft's save_pretrained writes
# peft config fields specbasis sets itself, for every method
OWNED_COMMON = {"target_modules", "modules_to_save", "peft_type", "task_type", "inference_mode",
                "base_model_name_or_path", "revision", "auto_mapping"}
# alpha None: alpha = r (scaling α/r = 1; peft's own defaults have r = α too)
RANK = {"r": (8, integer(1)), "alpha": (None, optional(positive)), "dropout": DROPOUT}
LORA_OWNED = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "init_lora_weights": "init",
              "use_dora": "method"}


class PeftMethod(Method):
    """A method peft applies: its config class, and the fields of it that our settings or the method own."""

    takes_peft = True
    libraries = ("peft",)
    config_class: ClassVar[str]
    owned: ClassVar[dict[str, str]]   # peft field -> our setting that sets it, or "method" / what else does

    def peft_config_class(self):
        import peft

        cls = getattr(peft, self.config_class, None)
        if cls is None:
            raise ValueError(f"method {self.name}: the installed peft {peft.__version__} has no {self.config_class}; "
                             f"install the pinned peft (requirements.txt)")
        return cls

    def check_peft(self, options):
        if not options:
            return  # nothing to check, and importing peft (torch, transformers) is most of a plan's time
        import peft

        cls = self.peft_config_class()
        fields = {f.name for f in dataclasses.fields(cls)}
        allowed = sorted(fields - set(self.owned) - OWNED_COMMON)
        for key in options:
            if key in self.owned:
                by = self.owned[key]
                bad(f"peft.{key}", options[key], f"set by the method itself ({self.name})" if by == "method" else
                    f"set by the key `{by}`" if by in self.SCHEMA else f"set by {by}", self.name)
            if key in OWNED_COMMON:
                bad(f"peft.{key}", options[key], "set by specbasis (targets: `targets`; the head trains always)",
                    self.name)
            if key not in fields:
                bad(f"peft.{key}", options[key], f"{cls.__name__} of the installed peft {peft.__version__} has no "
                    f"such option; allowed: {', '.join(allowed)}", self.name)

    def peft_config(self, targets: dict[str, str], head: list[str], total_steps: int | None):
        """The peft config object for these targets and head."""
        raise NotImplementedError

    def check_model(self, model, targets) -> None:
        """Checks of the settings against the model's matrices, before peft touches it."""

    adapted_class: ClassVar[type] = None  # set below: PeftAdapted

    def apply(self, model, targets, head, *, total_steps=None, factors=None) -> Adapted:
        from peft import get_peft_model
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils import ModulesToSaveWrapper

        self.check_model(model, targets)
        config = self.peft_config(targets, head, total_steps)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # transformers 5 vs peft
            model = get_peft_model(model, config)
        tuned = {n.removeprefix("base_model.model.") for n, m in model.named_modules()
                 if isinstance(m, BaseTunerLayer) and not isinstance(m, ModulesToSaveWrapper)}
        wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules()
                   if isinstance(m, ModulesToSaveWrapper)}
        assert tuned == set(targets), f"peft adapted {sorted(tuned ^ set(targets))} against the targets"
        assert wrapped == set(head), f"peft trains {sorted(wrapped)} in full, the head is {head}"
        return self.adapted_class(self, model, targets, head, jsonable(config.to_dict()), config)


class PeftAdapted(Adapted):
    def __init__(self, method, model, targets, head, record, peft_config):
        super().__init__(method, model, targets, head, record)
        self.peft_config = peft_config

    def head_parameters(self) -> int:
        return sum(p.numel() for n, p in self.trainable().items() if ".modules_to_save." in n)

    def write_adapter(self, folder):
        folder.mkdir(exist_ok=True)
        readme = folder / "README.md"
        had_readme = readme.exists()
        self.save_pretrained(folder)
        if readme.exists() and not had_readme:
            readme.unlink()  # peft's model card template: nothing of ours
        missing = [f for f in PEFT_FILES if not (folder / f).is_file()]
        assert not missing, f"peft's save_pretrained wrote no {missing} in {folder}"
        return list(PEFT_FILES)

    def save_pretrained(self, folder: Path) -> None:
        self.model.save_pretrained(str(folder))

    def unload(self):
        return self.model.merge_and_unload(safe_merge=True)


PeftMethod.adapted_class = PeftAdapted


class Lora(PeftMethod):
    name = "lora"
    SCHEMA = {**RANK, "init": ("kaiming", one_of(*LORA_INITS))}
    config_class = "LoraConfig"
    owned = LORA_OWNED

    def init_lora_weights(self):
        return LORA_INITS[self.settings["init"]]

    def peft_config(self, targets, head, total_steps):
        s = self.settings
        return self.peft_config_class()(
            r=s["r"], lora_alpha=s["alpha"] if s["alpha"] is not None else s["r"], lora_dropout=s["dropout"],
            init_lora_weights=self.init_lora_weights(), use_dora=self.name == "dora",
            target_modules=list(targets), modules_to_save=list(head), **self.peft)


class Dora(Lora):
    name = "dora"


class PiSSA(Lora):
    name = "pissa"
    SCHEMA = {**RANK, "svd_niter": (None, optional(integer(0)))}  # None: full SVD; n: peft's fast SVD, n iterations

    def init_lora_weights(self):
        n = self.settings["svd_niter"]
        return "pissa" if n is None else f"pissa_niter_{n}"

    def apply(self, model, targets, head, *, total_steps=None, factors=None):
        from peft import get_peft_model_state_dict

        adapted = super().apply(model, targets, head, total_steps=total_steps)
        # the adapter at init, to save the trained one as a plain LoRA
        adapted.initial_adapter = {k: v.detach().clone() for k, v in get_peft_model_state_dict(adapted.model).items()}
        return adapted


class PissaAdapted(PeftAdapted):
    """Saved as the equivalent plain LoRA of rank 2r (peft's own conversion), since the trained PiSSA factors
    only fit the residual W - B₀A₀."""

    def save_pretrained(self, folder):
        from peft import get_peft_model_state_dict
        from safetensors.torch import load_file, save_file

        with tempfile.TemporaryDirectory() as td:
            init_dir = Path(td) / "pissa_init"
            init_dir.mkdir()
            save_file(self.initial_adapter, str(init_dir / PEFT_FILES[0]), metadata={"format": "pt"})
            with warnings.catch_warnings():  # the conversion loads the initial adapter beside the trained one
                warnings.filterwarnings("ignore", message="PiSSA changes the base weights")
                self.model.save_pretrained(str(folder), path_initial_model_for_weight_conversion=str(init_dir))
        # peft 0.21's conversion (LoraModel.subtract_mutated_init) keeps only the lora_A/B tensors: put the
        # trained head (modules_to_save) back, or the adapter would load onto a fresh head
        saved = load_file(folder / PEFT_FILES[0])
        lost = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self.model).items()
                if k not in saved and "lora_" not in k}
        if lost:
            save_file({**saved, **lost}, str(folder / PEFT_FILES[0]), metadata={"format": "pt"})


PiSSA.adapted_class = PissaAdapted


class AdaLoRA(PeftMethod):
    name = "adalora"
    # alpha None is peft's default 8 (its scaling is α / the current rank); defaults are peft's.
    SCHEMA = {"init_r": (12, integer(1)), "target_r": (8, integer(1)), "alpha": (None, optional(positive)),
              "dropout": DROPOUT, "tinit": (0, integer(0)), "tfinal": (0, integer(0)),
              "delta_t": (1, integer(1)), "beta1": (0.85, number(0, 1)), "beta2": (0.85, number(0, 1)),
              "orth_reg_weight": (0.5, number(0, float("inf")))}
    config_class = "AdaLoraConfig"
    owned = {"init_r": "init_r", "target_r": "target_r", "lora_alpha": "alpha", "lora_dropout": "dropout",
             "tinit": "tinit", "tfinal": "tfinal", "deltaT": "delta_t", "beta1": "beta1", "beta2": "beta2",
             "orth_reg_weight": "orth_reg_weight", "total_step": "the training loop's steps", "r": "init_r",
             "init_lora_weights": "method", "use_dora": "method"}

    def check(self):
        s = self.settings
        if s["target_r"] > s["init_r"]:
            bad("target_r", s["target_r"], f"must be ≤ init_r = {s['init_r']} (AdaLoRA only prunes)", self.name)

    def peft_config(self, targets, head, total_steps):
        s = self.settings
        if total_steps is None:
            raise ValueError("method adalora: prepare needs total_steps (the training loop's optimizer steps)")
        if s["tinit"] >= total_steps - s["tfinal"]:
            bad("tinit", s["tinit"], f"with tfinal = {s['tfinal']} leaves no budgeting phase in {total_steps} "
                f"steps; allowed: tinit < steps - tfinal", self.name)
        alpha = {} if s["alpha"] is None else {"lora_alpha": s["alpha"]}
        return self.peft_config_class()(
            init_r=s["init_r"], target_r=s["target_r"], lora_dropout=s["dropout"], tinit=s["tinit"],
            tfinal=s["tfinal"], deltaT=s["delta_t"], beta1=s["beta1"], beta2=s["beta2"],
            orth_reg_weight=s["orth_reg_weight"], total_step=total_steps, **alpha,
            target_modules=list(targets), modules_to_save=list(head), **self.peft)


class AdaLoraAdapted(PeftAdapted):
    def loss_term(self):
        """peft adds the orthogonality penalty only to a loss the model computes itself (labels passed in); our
        loop computes the loss, so it adds the same penalty here (AdaLoraModel.forward's mean of norms)."""
        import torch

        model, weight = self.model, self.peft_config.orth_reg_weight
        adapter = model.base_model.trainable_adapter_name
        terms = []
        for n, p in model.base_model.model.named_parameters():
            if ("lora_A" in n or "lora_B" in n) and adapter in n:
                cov = p @ p.T if "lora_A" in n else p.T @ p          # (r, r)
                terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
        return weight * torch.stack(terms).mean() if terms else torch.zeros(())

    def after_step(self, step):
        # peft's example order: backward, optimizer.step, scheduler.step, update_and_allocate(global_step),
        # zero_grad, with global_step counted from 0; the allocator reads the gradients, still there then.
        self.model.base_model.update_and_allocate(step - 1)

    # the budget allocator's importance scores (exponential averages over the steps) and the final rank pattern live
    # outside the model's state_dict: a resumed finetune needs them to allocate as an unstopped one would
    ALLOCATOR_STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")

    def training_state(self):
        base = self.model.base_model
        return {"allocator": {k: dict(getattr(base.rankallocator, k)) for k in self.ALLOCATOR_STATE},
                "rank_pattern": base.peft_config[base.trainable_adapter_name].rank_pattern}

    def load_training_state(self, state):
        base = self.model.base_model
        for k in self.ALLOCATOR_STATE:
            setattr(base.rankallocator, k, dict(state["allocator"][k]))
        base.peft_config[base.trainable_adapter_name].rank_pattern = state["rank_pattern"]


AdaLoRA.adapted_class = AdaLoraAdapted


class PSoft(PeftMethod):
    name = "psoft"
    SCHEMA = {"r": (32, integer(1)), "alpha": (None, optional(positive)), "dropout": DROPOUT}
    config_class = "PsoftConfig"
    owned = {"r": "r", "psoft_alpha": "alpha", "psoft_dropout": "dropout", "psoft_orth": "method",
             "psoft_mag_a": "method", "psoft_mag_b": "method"}

    def check_model(self, model, targets):
        for module, key in targets.items():
            rank = min(model.get_submodule(module).weight.shape)
            if self.settings["r"] > rank:
                bad("r", self.settings["r"], f"exceeds the rank {rank} of {key}; allowed: r ≤ {rank}", self.name)

    def peft_config(self, targets, head, total_steps):
        s = self.settings
        # free R (no Cayley orthogonality) and no magnitude vectors: ΔW = (α/r) B (R - I) A on the frozen top-r SVD
        return self.peft_config_class()(
            r=s["r"], psoft_alpha=s["alpha"] if s["alpha"] is not None else s["r"], psoft_dropout=s["dropout"],
            psoft_orth=False, psoft_mag_a=False, psoft_mag_b=False,
            target_modules=list(targets), modules_to_save=list(head), **self.peft)


def jsonable(d):
    if isinstance(d, dict):
        return {str(k): jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple, set)):
        return [jsonable(v) for v in (sorted(d) if isinstance(d, set) else d)]
    if isinstance(d, (str, int, float, bool)) or d is None:
        return d
    return str(d)
