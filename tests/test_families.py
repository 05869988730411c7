"""The one table of per-family facts (specbasis.families) against the libraries and the name maps."""
import pytest

from specbasis import config, families
from specbasis.families import FAMILIES
from specbasis.io.namemaps import CHECKPOINT_KEYS, FAMILIES as MAPS


def test_every_family_has_a_name_map_and_no_map_lacks_a_family():
    assert set(FAMILIES) == set(MAPS)


@pytest.mark.parametrize("name", [f.name for f in FAMILIES.values() if f.model_type])
def test_model_type_is_a_transformers_config(name):
    from transformers import CONFIG_MAPPING

    fam = FAMILIES[name]
    assert fam.model_type in CONFIG_MAPPING, fam.model_type
    assert families.of_model_type(CONFIG_MAPPING[fam.model_type].model_type) == name


def test_library_decides_the_native_format():
    for fam in FAMILIES.values():
        native = {"transformers": "hf", "timm": "timm", None: None}[fam.library]
        assert (native in fam.formats) if native else fam.formats == ("state_dict",), fam
        assert "state_dict" in fam.formats, fam  # every family's weights can come as one file of tensors


def test_views_read_the_table():
    assert config.FINETUNABLE_FAMILIES == {f for f in FAMILIES if FAMILIES[f].finetunable}
    assert "vit_mae" not in config.FINETUNABLE_FAMILIES and "bert" in config.FINETUNABLE_FAMILIES
    assert config.FAMILY_GROUPS["bart"] == ("ffn", "attn", "xattn") and config.FAMILY_GROUPS["convnext"] == ("ffn",)
    assert CHECKPOINT_KEYS == {"labram": ("model",), "brain_jepa": ("target_encoder", "encoder")}
    assert config.modality("vit") == config.modality("vit_mae") == "image"
    assert config.modality("bert") == config.modality("labram") == "text"


def test_unknown_family_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown architecture family 'nope'; known families: albert, bart"):
        families.family("nope")
    assert families.of_model_type("no-such-type") is None
