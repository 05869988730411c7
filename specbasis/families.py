"""Every fact specbasis knows about an architecture family, in one table.

Torch-free: the config checks read it when the workflow is parsed. The name maps (specbasis.io.namemaps, one
map function per family) must cover exactly these families; models, extraction, the spectral adapter and the
config checks read everything else from here.

    field             meaning
    modality          what the family's models see, for fig7/fig8's grouping and table2 (vision) / table3
                      (language); a model's own `modality:` overrides it (BrainLM is a vit_mae trained on fMRI)
    library           whose classes run its checkpoints: transformers (a folder with config.json, format hf),
                      timm (a timm hub snapshot), or None (weights only: the brain-signal models)
    formats           checkpoint layouts prepare_model reads: hf, timm, lukemelas (an EfficientNet-PyTorch .pth),
                      state_dict (one torch/safetensors file of tensors, maybe nested: `checkpoint_keys`)
    groups            matrix groups of the interventions (specbasis.interventions.edits.GROUPS) its name map
                      yields: ConvNeXt and EfficientNet have no attention; only BART's decoder cross-attends
    finetunable       the workflow can finetune it (a classifier class and a data reader exist)
    checkpoint_keys   keys under which its training code nests the state dict, before the generic ones
    model_type        transformers' config.model_type of its models (None: not a transformers family), by which
                      the spectral adapter tells a model's family when it is not given
"""
from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("vision", "language", "eeg", "fmri")
LIBRARIES = ("transformers", "timm", None)


@dataclass(frozen=True)
class Family:
    name: str
    modality: str
    library: str | None
    formats: tuple[str, ...]
    groups: tuple[str, ...] = ("ffn", "attn")
    finetunable: bool = False
    checkpoint_keys: tuple[str, ...] = ()
    model_type: str | None = None

    def __post_init__(self):
        assert self.modality in MODALITIES, (self.name, self.modality)
        assert self.library in LIBRARIES, (self.name, self.library)

    @property
    def sees(self) -> str:
        """What a finetune feeds the model: 'image' or 'text' (picks the suite's finetune settings)."""
        return "image" if self.modality == "vision" else "text"


def _text(name: str, **kw) -> Family:
    return Family(name, "language", "transformers", ("hf", "state_dict"), finetunable=True,
                  model_type=kw.pop("model_type", name), **kw)


def _timm(name: str, formats=("timm", "state_dict"), **kw) -> Family:
    return Family(name, "vision", "timm", formats, finetunable=True, **kw)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    _text("bert"),  # also MiniLM
    _text("roberta"),
    _text("xlnet"),
    _text("deberta"),
    _text("deberta_v2", model_type="deberta-v2"),  # v2 and v3
    _text("distilbert"),
    _text("bigbird", model_type="big_bird"),
    _text("mobilebert"),
    _text("electra"),
    _text("albert"),
    _text("bart", groups=("ffn", "attn", "xattn")),
    _text("gpt2"),
    _timm("convnext", groups=("ffn",)),
    _timm("vit"),
    _timm("swin"),
    _timm("efficientnet_lite", formats=("timm", "lukemelas", "state_dict"), groups=("ffn",)),
    # transformers' ViTMAE (and BrainLM): analysed, not finetuned by the workflow
    Family("vit_mae", "vision", "transformers", ("hf", "state_dict"), model_type="vit_mae"),
    # Brain-signal models of the paper's Appendix C: weights only
    Family("labram", "eeg", None, ("state_dict",), checkpoint_keys=("model",)),  # LaBraM's save_model: 'model'
    Family("brain_jepa", "fmri", None, ("state_dict",), checkpoint_keys=("target_encoder", "encoder")),
)}


def family(name: str) -> Family:
    """The family's facts; an unknown name is refused with the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown architecture family {name!r}; known families: "
                         f"{', '.join(sorted(FAMILIES))}") from None


def of_model_type(model_type: str | None) -> str | None:
    """The family whose transformers models have this config.model_type, or None."""
    for f in FAMILIES.values():
        if f.model_type is not None and f.model_type == model_type:
            return f.name
    return None


def names(**where) -> tuple[str, ...]:
    """The families whose fields equal the given values, e.g. names(finetunable=True), names(library='timm')."""
    return tuple(f.name for f in FAMILIES.values() if all(getattr(f, k) == v for k, v in where.items()))
