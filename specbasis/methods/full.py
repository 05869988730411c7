"""Full finetuning: every weight trains (the paper's Full FT; the suite's own finetunes)."""
from __future__ import annotations

from specbasis.methods.base import Adapted, Method


class Full(Method):
    name = "full"
    targeted = False
    trains_every_weight = True
    untargeted_trains = "every weight"

    def apply(self, model, targets, head, *, total_steps=None, factors=None) -> Adapted:
        return Adapted(self, model, targets, head)
