"""The paper's spectral method: train M, the r x r block [k, m) of U (Σ + A) Vh, with the task head.

The adapter itself is specbasis.methods.spectral_adapter (usable on its own); this is the finetuning method
that applies it to the shared targets. It reads the pretrained model's SVDs where they are given (the
workflow's SVD store: `reads_svd_store`) and computes the rest (float64 SVD).
"""
from __future__ import annotations

from specbasis.methods.base import REQUIRED, Adapted, Method, bad, integer, one_of

SPECTRAL_FILE = "spectral_adapter.safetensors"  # save_spectral's file


class Spectral(Method):
    name = "spectral"
    SCHEMA = {"k": (0, integer(0)), "m": (REQUIRED, integer(1)),
              "dtype": ("float32", one_of("float32", "float64", "bfloat16", "float16")),
              "path": ("auto", one_of("auto", "factored", "dense"))}
    reads_svd_store = True

    def check(self):
        s = self.settings
        if s["k"] >= s["m"]:
            bad("m", s["m"], f"must exceed k = {s['k']}: the block [k, m) needs r = m - k ≥ 1", self.name)

    def svd_rank(self) -> int:
        return self.settings["m"]  # the block [k, m) needs the top m vectors

    def apply(self, model, targets, head, *, total_steps=None, factors=None) -> Adapted:
        from specbasis.methods.spectral_adapter import SpectralConfig, apply_spectral, spectral_layers

        s = self.settings
        for module, key in targets.items():
            weight = model.get_submodule(module).weight
            rank = min(weight.shape)
            if s["m"] > rank:
                bad("m", s["m"], f"exceeds the rank {rank} of {key} (weight {tuple(weight.shape)}); allowed: "
                    f"k < m ≤ {rank}", self.name)
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
        return SpectralAdapted(self, model, targets, head, record)


class SpectralAdapted(Adapted):
    def write_adapter(self, folder):
        from specbasis.methods.spectral_adapter import save_spectral

        folder.mkdir(exist_ok=True)
        save_spectral(self.model, folder / SPECTRAL_FILE)
        return [SPECTRAL_FILE]

    def unload(self):
        from specbasis.methods.spectral_adapter import merge_and_unload

        model = merge_and_unload(self.model, safe=True)
        del model.spectral_config
        return model
