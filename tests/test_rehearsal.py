"""benchmarks/rehearsal.py: the paper suite's architectures at their true shapes (built on the meta device here: no
memory), and a tiny pair written as the hub serves it, fetched from the hub stand-in, prepared and extracted."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hubstub import HubStub

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("rehearsal", ROOT / "benchmarks" / "rehearsal.py")
rehearsal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rehearsal)


def test_every_architecture_builds_at_the_size_its_sources_give():
    """Each row of architectures.csv builds with its library (no weights: meta device) and has the parameter count
    written beside it (the model's, or its backbone's: the column says which), to 2%."""
    import timm

    table = rehearsal.architectures()
    assert len(table) >= 20
    for model_id, row in table.items():
        assert row["source"].strip(), f"{model_id}: a fact without its source"
        want = float(re.match(r"[\d.e+]+", row["parameters"]).group(0))
        with torch.device("meta"):
            if row["library"] == "timm":
                model = timm.create_model(model_id, pretrained=False)
                counts = [sum(p.numel() for p in model.parameters())]
            else:
                model = rehearsal.transformers_model(row, finetuned="nli" in model_id.lower())
                counts = [sum(p.numel() for p in m.parameters()) for m in (model, model.base_model)]
        assert min(abs(n / want - 1) for n in counts) < 0.02, (model_id, counts, want)


def test_the_rehearsal_config_is_the_paper_suites_entries():
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    mine = yaml.safe_load((ROOT / "config/rehearsal.yaml").read_text())
    assert mine["name"] == "rehearsal" and set(mine["pairs"]) == set(rehearsal.DEFAULT_PAIRS)
    for pair, names in mine["pairs"].items():
        assert names == paper["pairs"][pair]
        for name in names.values():
            assert mine["models"][name] == paper["models"][name]
    table = rehearsal.architectures()
    for names in mine["pairs"].values():  # every hf: model the build needs has its configuration in the table
        scheme, model_id = rehearsal.source_id(mine["models"][names["pretrained"]]["source"])
        assert scheme == "timm" or model_id in table, model_id


TINY = {"org/tiny": {"model_id": "org/tiny", "library": "transformers", "model_type": "bert", "hidden_size": "32",
                     "num_hidden_layers": "2", "num_attention_heads": "2", "intermediate_size": "64",
                     "vocab_size": "100", "extra": "max_position_embeddings=64;layer_norm_eps=1e-12",
                     "checkpoint_file": "pytorch_model.bin", "checkpoint_dtype": "float16"},
        "org/tiny-mnli": {"model_id": "org/tiny-mnli", "checkpoint_file": "model.safetensors",
                          "checkpoint_dtype": "float32"}}
CONFIG = {"models": {"tiny": {"source": "hf:org/tiny@main"}, "tiny-mnli": {"source": "hf:org/tiny-mnli@main"}},
          "pairs": {"tiny": {"pretrained": "tiny", "finetuned": "tiny-mnli"}}}


def test_a_pair_as_the_hub_serves_it_goes_through_fetch_prepare_and_extract(tmp_path):
    from safetensors import safe_open

    from specbasis.io.extract import extract_weights, read_weights
    from specbasis.models import prepare_pretrained

    hub = tmp_path / "hub"
    done = rehearsal.build(hub, ["tiny"], CONFIG, TINY)
    assert done[0]["perturbed_matrices"] == 2 * 6 + 3 + 1  # 6 a block, 3 embeddings, the pooler (the head: not)
    assert done[0]["fresh_in_finetuned"] == []  # BERT's pretraining checkpoint has the pooler
    pre = torch.load(hub / "org/tiny/pytorch_model.bin", weights_only=True)
    assert {t.dtype for t in pre.values() if t.is_floating_point()} == {torch.float16}
    assert "cls.predictions.decoder.weight" not in pre or "bert.embeddings.word_embeddings.weight" not in pre
    with safe_open(hub / "org/tiny-mnli/model.safetensors", "pt") as f:
        assert f.get_tensor("classifier.weight").shape == (3, 32)
    assert json.loads((hub / "org/tiny-mnli/config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    stores = {}
    with HubStub(rehearsal.repos(hub)) as stub:
        env.update(HF_ENDPOINT=stub.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
                   NO_PROXY="127.0.0.1", PYTHONPATH=str(ROOT))
        for name in ("tiny", "tiny-mnli"):
            run = subprocess.run([sys.executable, "-m", "specbasis.io.fetch", f"hf:org/{name}@main", f"res/{name}"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
            prepare_pretrained(tmp_path / "res" / name, tmp_path / "models" / name, "bert", "hf")
            extract_weights(tmp_path / "models" / name, "bert", tmp_path / f"{name}.h5")
            stores[name] = read_weights(tmp_path / f"{name}.h5")
    assert set(stores["tiny"]) == set(stores["tiny-mnli"]) and len(stores["tiny"]) == 2 * 6
    expected = np.hypot(rehearsal.LOW_RANK, rehearsal.NOISE)  # the two parts are (nearly) orthogonal
    for key, W in stores["tiny"].items():
        change = np.linalg.norm(stores["tiny-mnli"][key] - W) / np.linalg.norm(W)
        assert change == pytest.approx(expected, rel=0.1), key
