"""The settings of one finetune, in one dataclass: the config's training keys (finetune.<modality>, a model's
finetune.train, the peft grid's overrides) are its CONFIG_KEYS, which the schema's `train_settings` lists
(tests/training/test_settings.py checks the two agree), the PEFT grid expands and the loop reads.

Torch-free: the workflow reads it when it parses the config.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

CONFIG = {"config": True}  # field metadata: a key of the config's train_settings
GRAD_CLIP = 1.0  # max global grad norm: keeps a fresh head's first steps from wrecking the backbone


@dataclass(frozen=True, kw_only=True)
class FinetuneSettings:
    """How one finetune trains and is evaluated: optimisation settings have no defaults (a suite sets them)."""

    steps: int | None = field(default=None, metadata=CONFIG)    # optimizer steps (or epochs)
    epochs: float | None = field(default=None, metadata=CONFIG)  # instead of steps: passes over the training split
    batch_size: int = field(metadata=CONFIG)
    lr: float = field(metadata=CONFIG)                        # peak AdamW lr
    weight_decay: float = field(metadata=CONFIG)              # on matrices and kernels only
    warmup_frac: float = field(metadata=CONFIG)               # linear warm-up, then linear decay to 0
    max_length: int = field(default=128, metadata=CONFIG)       # text models: tokens per example
    image_size: int = field(default=64, metadata=CONFIG)        # image models: side of the resized image
    eval_every: int | None = field(default=None, metadata=CONFIG)  # val metric every n steps (None: at the end)
    eval_step0: bool = field(default=True, metadata=CONFIG)     # test metric of the fresh head on the backbone
    max_train: int | None = field(default=None, metadata=CONFIG)  # caps of the splits (data.load_splits)
    max_eval: int | None = field(default=None, metadata=CONFIG)
    seed: int = 0                  # the head's init, the batch order, dropout
    device: str = "auto"
    threads: int | None = None
    eval_batch_size: int = 128
    grad_clip: float = GRAD_CLIP

    def __post_init__(self):
        problems = []
        if (self.steps is None) == (self.epochs is None):
            problems.append(f"steps={self.steps}, epochs={self.epochs}: give exactly one")
        if self.steps is not None and not (isinstance(self.steps, int) and self.steps >= 1):
            problems.append(f"steps={self.steps!r}: want an integer >= 1")
        if self.epochs is not None and not self.epochs > 0:
            problems.append(f"epochs={self.epochs!r}: want > 0")
        problems += optimisation_problems(self)
        if not 0 <= self.warmup_frac <= 1:
            problems.append(f"warmup_frac={self.warmup_frac!r}: want 0 <= warmup_frac <= 1")
        if self.eval_every is not None and not (isinstance(self.eval_every, int) and self.eval_every >= 1):
            problems.append(f"eval_every={self.eval_every!r}: want an integer >= 1")
        if problems:
            raise ValueError("bad settings: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> "FinetuneSettings":
        """From a mapping of field names (the config's keys among them); an unknown key is refused by name.
        `epochs`, where given, replaces `steps` (a model's override in epochs of a suite's steps)."""
        names = {f.name for f in dataclasses.fields(cls)}
        settings = dict(settings)
        if settings.get("epochs") is not None:
            settings.pop("steps", None)
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"training settings: unknown key(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(sorted(names))}")
        return cls(**settings)

    def for_train_split(self, n_train: int) -> "FinetuneSettings":
        """Steps fixed: `epochs` passes over a training split of n_train examples become optimizer steps (and
        evaluation, unless set, at the end)."""
        if self.epochs is None:
            return self if self.eval_every is not None else dataclasses.replace(self, eval_every=self.steps)
        steps = max(1, math.ceil(self.epochs * n_train / self.batch_size))
        return dataclasses.replace(self, steps=steps, epochs=None,
                                   eval_every=self.eval_every if self.eval_every is not None else steps)

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_frac * self.steps))


def optimisation_problems(s) -> list[str]:
    """What is wrong with the optimisation fields every training run has (batch_size, lr, weight_decay, grad_clip),
    each naming the field, its value and what is wanted."""
    problems = []
    if isinstance(s.batch_size, bool) or not isinstance(s.batch_size, int) or s.batch_size < 1:
        problems.append(f"batch_size={s.batch_size!r}: want an integer >= 1")
    if not s.lr > 0:
        problems.append(f"lr={s.lr!r}: want > 0")
    if not s.weight_decay >= 0:
        problems.append(f"weight_decay={s.weight_decay!r}: want >= 0")
    if not s.grad_clip > 0:
        problems.append(f"grad_clip={s.grad_clip!r}: want > 0")
    return problems


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(FinetuneSettings) if f.metadata.get("config"))
