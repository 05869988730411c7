"""BitFit: every bias trains (LayerNorm's too, as BitFit does), with the task head; nothing else."""
from __future__ import annotations

from specbasis.methods.base import Adapted, Method

BITFIT_FILE = "bitfit_adapter.safetensors"  # the trained biases and head


class BitFit(Method):
    name = "bitfit"
    targeted = False
    untargeted_trains = "every bias"

    def apply(self, model, targets, head, *, total_steps=None, factors=None) -> Adapted:
        prefixes = tuple(h + "." for h in head)
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".bias") or n.startswith(prefixes))
        return BitFitAdapted(self, model, targets, head, {"trains": "every *.bias + the head"})


class BitFitAdapted(Adapted):
    def write_adapter(self, folder):
        from specbasis.models import save_weights

        folder.mkdir(exist_ok=True)
        save_weights(self.trainable(), folder / BITFIT_FILE, metadata={"method": "bitfit"})
        return [BITFIT_FILE]
