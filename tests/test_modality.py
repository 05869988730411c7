"""Modalities and checkpoint formats per family: fig7/fig8's grouping, and what prepare_model accepts."""
import copy

import pytest

from specbasis.config import (FAMILY_FORMATS, FAMILY_MODALITY, MODALITIES, model_modality,
                              validate_config)
from specbasis.io.namemaps import FAMILIES
from test_config import _break


def test_every_family_has_a_modality_and_formats():
    assert set(FAMILY_MODALITY) == set(FAMILIES) and set(FAMILY_FORMATS) == set(FAMILIES)
    assert set(FAMILY_MODALITY.values()) <= set(MODALITIES)


@pytest.mark.parametrize("family, modality", [("bert", "language"), ("bart", "language"), ("vit", "vision"),
                                              ("efficientnet_lite", "vision"), ("vit_mae", "vision"),
                                              ("labram", "eeg"), ("brain_jepa", "fmri")])
def test_family_modality(family, modality):
    assert model_modality({"family": family}) == modality


def test_a_models_modality_overrides_its_familys():  # BrainLM: transformers' ViTMAE layout, trained on fMRI
    assert model_modality({"family": "vit_mae", "modality": "fmri"}) == "fmri"


def brain_suite():
    return {"models": {"labram": {"source": "local:labram-base.pth", "format": "state_dict", "family": "labram",
                                  "task": "EEG pretraining"},
                       "labram-ft": {"source": "local:labram-tuab.pth", "format": "state_dict", "family": "labram",
                                     "task": "TUAB abnormal"},
                       "brainlm": {"source": "local:brainlm/vitmae_111M", "format": "hf", "family": "vit_mae",
                                   "modality": "fmri", "task": "fMRI pretraining"},
                       "brainlm-ft": {"source": "local:brainlm-ft", "format": "hf", "family": "vit_mae",
                                      "modality": "fmri", "task": "age"}},
            "pairs": {"labram": {"pretrained": "labram", "finetuned": "labram-ft"},
                      "brainlm": {"pretrained": "brainlm", "finetuned": "brainlm-ft"}}}


def test_brain_suite_is_valid():
    validate_config(brain_suite())


def _problem(edit):
    return _break(brain_suite(), edit)


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["models"]["labram"].update(format="hf"),
     "models.labram.format: 'hf' does not fit family 'labram'; allowed: state_dict"),
    (lambda c: c["models"]["brainlm"].update(format="timm"),
     "models.brainlm.format: 'timm' does not fit family 'vit_mae'; allowed: hf, state_dict"),
    (lambda c: c["models"]["brainlm-ft"].pop("modality"),
     "pairs.brainlm: pretrained and finetuned modalities differ (fmri, vision)"),
    (lambda c: c["models"]["brainlm"].update(modality="audio"),
     "models.brainlm.modality: 'audio' is not allowed; allowed: vision, language, eeg, fmri"),
    (lambda c: c.update(datasets={"d": {"source": "local:x.csv", "format": "mnist_csv"}}) or c["models"].update(
        {"labram-made": {"finetune": {"from": "labram", "dataset": "d"}, "family": "labram", "task": "t"}}),
     "models.labram-made.finetune: the workflow cannot finetune family 'labram'"),
])
def test_bad_brain_configs_name_the_key(edit, expected):
    assert expected in _problem(edit)
