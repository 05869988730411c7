"""The bottleneck adapters (specbasis.methods.bottleneck): Houlsby's and Pfeiffer's placement, an exact no-op at
step 0, parameter counts against the formula (and, at MiniLM's shapes, in the paper's ratio to LoRA's), training
through the one loop, and a saved folder that is refused as a plain model and loads with its adapters."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_methods import SETTINGS, scaled_dir  # noqa: F401 (fixtures)
from test_train import bert_dir, bert_src, text_splits  # noqa: F401 (fixtures)

from specbasis import methods
from specbasis.evaluate import predict_logits
from specbasis.methods.apply import load_trained, prepare
from specbasis.methods.bottleneck import BOTTLENECK_FILE
from specbasis.models import UNMERGED_FILE, load_classifier
from specbasis.training.finetune import finetune

H, L, HEAD = 32, 2, 32 * 2 + 2  # the tiny BERT of test_train: hidden, layers, its 2-class head


def per_adapter(d: int, b: int) -> int:
    """down (b x d + b) and up (d x b + d)."""
    return 2 * d * b + b + d


def test_default_targets_are_the_papers_placements():
    assert methods.parse("houlsby").targets == {"layers": "all", "kinds": ["attn_o", "ffn_out"]}
    assert methods.parse("pfeiffer").targets == {"layers": "all", "kinds": ["ffn_out"]}
    mine = methods.parse({"method": "pfeiffer", "targets": {"layers": [-1], "kinds": ["ffn_out"]}})
    assert mine.targets == {"layers": [-1], "kinds": ["ffn_out"]}
    assert not methods.parse("houlsby").mergeable and methods.parse({"method": "lora", "targets": {"layers": [0]}}).mergeable
    with pytest.raises(ValueError, match="method houlsby: reduction_factor = 0: must be a number > 0"):
        methods.parse({"method": "houlsby", "reduction_factor": 0})
    with pytest.raises(ValueError, match="nonlinearity = 'swish': must be one of relu, gelu, silu, tanh"):
        methods.parse({"method": "pfeiffer", "nonlinearity": "swish"})


@pytest.mark.parametrize("spec, adapters, b", [
    ({"method": "houlsby", "reduction_factor": 4}, L * 2, 8),      # attn_o and ffn_out of both blocks
    ({"method": "pfeiffer", "reduction_factor": 2}, L, 16),        # ffn_out of both blocks
    ({"method": "pfeiffer", "reduction_factor": 3, "targets": {"layers": [-1], "kinds": ["ffn_out"]}}, 1, 11),
])
def test_counts_follow_the_formula_and_step_0_is_the_pretrained_model(bert_dir, spec, adapters, b):
    torch.manual_seed(0)
    model, preprocess = load_classifier(bert_dir, "bert", 2)
    x = preprocess(text_splits().test.x[:8])
    with torch.no_grad():
        before = model(**x).logits
    adapted = prepare(model, spec, "bert")
    assert len(adapted.targets) == adapters
    assert adapted.counts["adapter"] == adapters * per_adapter(H, b) and adapted.counts["head"] == HEAD
    assert adapted.config["bottleneck"] == dict.fromkeys(adapted.targets, b)
    trainable = {n for n in adapted.trainable() if not n.startswith("classifier.")}
    assert trainable and all(".adapter_down." in n or ".adapter_up." in n for n in trainable)
    with torch.no_grad():
        assert torch.equal(adapted.model(**x).logits, before)  # up-projection zero: exactly the same numbers


@pytest.mark.parametrize("spec, expected, paper", [
    ({"method": "houlsby", "reduction_factor": 12}, 12 * per_adapter(384, 32), 1.22 / 1.33),
    ({"method": "pfeiffer", "reduction_factor": 6}, 6 * per_adapter(384, 64), 1.18 / 1.33),
])
def test_at_minilms_shapes_the_ratio_to_lora_is_the_papers(spec, expected, paper):
    """config.yaml's reduction factors, on a random BERT of MiniLM's shapes (6 blocks, 384 wide): the counts the
    formula gives, within 0.015 of the paper's ratio to LoRA r = 8 on every matrix (1.22M and 1.18M vs 1.33M)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=64, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=32, num_labels=2)
    counts = {}
    for name, s in {"bottleneck": spec, "lora": {"method": "lora", "r": 8, "targets": {
            "layers": "all", "kinds": ["attn_q", "attn_k", "attn_v", "attn_o", "ffn_in", "ffn_out"]}}}.items():
        counts[name] = prepare(BertForSequenceClassification(config), s, "bert").counts["adapter"]
    assert counts["lora"] == 6 * (4 * 8 * (384 + 384) + 2 * 8 * (384 + 1536)) == 331_776
    assert counts["bottleneck"] == expected
    assert abs(counts["bottleneck"] / counts["lora"] - paper) < 0.015


@pytest.fixture(scope="module")
def trained(scaled_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("houlsby") / "model"
    spec = {"method": "houlsby", "reduction_factor": 4}
    return finetune(scaled_dir, "bert", text_splits(), out, **SETTINGS, eval_step0=False, method=spec), out


def test_trains_in_the_one_loop_and_records_its_inference_cost(trained):
    metrics, out = trained
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    cost = metrics["inference"]
    assert cost["mergeable"] is False and cost["reps"] >= 5 and cost["batch"] > 0
    assert cost["forward_ratio"] == pytest.approx(cost["forward_seconds_adapted"] / cost["forward_seconds_base"])
    assert 0 < cost["forward_seconds_base"] and 0 < cost["forward_ratio"]
    assert json.loads((out / "metrics.json").read_text())["inference"] == cost
    assert sorted(metrics["adapter_files"]) == sorted([f"adapter/{BOTTLENECK_FILE}", UNMERGED_FILE])


def test_a_merged_method_costs_the_base_models_forward(scaled_dir, tmp_path):
    settings = {**SETTINGS, "steps": 2}
    metrics = finetune(scaled_dir, "bert", text_splits(), tmp_path / "m", **settings, eval_step0=False,
                       method={"method": "lora", "r": 2, "targets": {"layers": [-1]}})
    assert metrics["inference"] == {"mergeable": True, "forward_ratio": 1.0}
    assert not (tmp_path / "m" / UNMERGED_FILE).exists()


def test_the_saved_folder_is_refused_as_plain_and_loads_with_its_adapters(trained, scaled_dir):
    metrics, out = trained
    with pytest.raises(ValueError, match="its houlsby adapter is not merged into the weights.*load_trained"):
        load_classifier(out, "bert", 2)
    model, preprocess = load_trained(out, "bert", 2)
    splits = text_splits()
    logits = predict_logits(model, preprocess, splits.test.x, "cpu")
    torch.testing.assert_close(logits[:8], torch.tensor(metrics["test_logits_head"]), rtol=0, atol=1e-4)
    assert float((logits.argmax(1).numpy() == splits.test.y).mean()) == pytest.approx(metrics["test_accuracy"])
    # the weights on disk: the pretrained ones, and the trained head; the adapters beside them
    base = {k.removeprefix("bert."): v for k, v in load_file(scaled_dir / "model.safetensors").items()}
    saved = {k.removeprefix("bert."): v for k, v in load_file(out / "model.safetensors").items()}
    assert set(saved) - set(base) == {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(base[k], saved[k]) for k in base)
    adapters = load_file(out / "adapter" / BOTTLENECK_FILE)
    assert len(adapters) == 4 * len(metrics["targets"]) and all(v.abs().max() > 0 for k, v in adapters.items()
                                                                if "adapter_up.weight" in k)
    plain, _ = load_classifier(out, "bert", 2, base_only=True)  # without them: other logits
    assert not torch.allclose(predict_logits(plain, preprocess, splits.test.x[:8], "cpu"), logits[:8], atol=1e-3)


def test_switched_off_the_model_is_the_base_forward(bert_dir):
    torch.manual_seed(0)
    model, preprocess = load_classifier(bert_dir, "bert", 2)
    x = preprocess(text_splits().test.x[:4])
    adapted = prepare(model, {"method": "pfeiffer", "reduction_factor": 4}, "bert")
    with torch.no_grad():
        for name in adapted.targets:  # move the adapters off their no-op start
            torch.nn.init.normal_(adapted.model.get_submodule(name).adapter_up.weight)
        on = adapted.model(**x).logits
        with adapted.disabled():
            off = adapted.model(**x).logits
        plain = adapted.unload()(**x).logits
    assert not torch.allclose(on, off) and torch.equal(off, plain)
