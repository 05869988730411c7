"""specbasis.training.prefix_cache: the frozen blocks' outputs computed once, and runs that start from them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_train import TEXT_SETTINGS, bert_src, text_splits  # noqa: F401 (fixtures)

from specbasis import methods
from specbasis.models import load_classifier, logits_of, prepare_pretrained
from specbasis.training.prefix_cache import PrefixCache, build
from specbasis.training.finetune import finetune

LAST = {"method": "spectral", "k": 0, "m": 8, "targets": {"layers": [1], "kinds": ["ffn_in", "ffn_out"]}}
SETTINGS = {**TEXT_SETTINGS, "lr": 2e-2, "steps": 40, "eval_every": 20}


@pytest.fixture(scope="module")
def nodrop_dir(bert_src, tmp_path_factory) -> Path:
    """test_train's tiny BERT (2 blocks) without dropout: a cached run must then train exactly as an uncached one."""
    src = tmp_path_factory.mktemp("nodrop_src")
    for p in bert_src.iterdir():
        shutil.copy(p, src / p.name)
    config = json.loads((src / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (src / "config.json").write_text(json.dumps(config))
    return prepare_pretrained(src, tmp_path_factory.mktemp("nodrop") / "prepared", "bert", "hf")


def _texts():
    s = text_splits()
    return list(s.train.x) + list(s.val.x) + list(s.test.x)


def test_attached_model_gives_the_whole_models_logits_and_lets_go(nodrop_dir, tmp_path):
    model, pre = load_classifier(nodrop_dir, "bert", 2, max_length=16)
    texts = _texts()
    cache = build(model, pre, texts, start=1)
    cache.save(tmp_path / "c.safetensors")
    cache = PrefixCache.load(tmp_path / "c.safetensors")
    assert len(cache) == len(set(texts)) and cache.start == 1
    with torch.no_grad():
        whole = logits_of(model, pre(texts[:20]))
        with cache.attached(model, pre) as cached_pre:
            assert len(model.bert.encoder.layer) == 1
            cached = logits_of(model, cached_pre(texts[:20]))
        after = logits_of(model, pre(texts[:20]))
    assert len(model.bert.encoder.layer) == 2
    torch.testing.assert_close(cached, whole, atol=1e-5, rtol=0)
    assert torch.equal(after, whole)


def test_pairs_of_texts_are_keys_too(nodrop_dir):
    model, pre = load_classifier(nodrop_dir, "bert", 2, max_length=16)
    pairs = [("great good fine", "bad awful"), ("bad awful", "great good fine")]
    cache = build(model, pre, pairs, start=1)
    with torch.no_grad():
        whole = logits_of(model, pre(pairs))
        with cache.attached(model, pre) as cached_pre:
            torch.testing.assert_close(logits_of(model, cached_pre(pairs)), whole, atol=1e-5, rtol=0)


def test_a_text_not_cached_or_cut_otherwise_is_refused(nodrop_dir):
    model, pre = load_classifier(nodrop_dir, "bert", 2, max_length=16)
    cache = build(model, pre, _texts()[:10], start=1)
    with cache.attached(model, pre) as cached_pre, pytest.raises(KeyError, match="no cached states"):
        cached_pre(["a text the cache never saw"])
    _, short = load_classifier(nodrop_dir, "bert", 2, max_length=4)  # another max_length: other token counts
    long_text = [t for t in _texts()[:10] if len(pre([t])["input_ids"][0]) > 4][:1]
    with cache.attached(model, short) as cached_pre, pytest.raises(ValueError, match="cached tokens"):
        cached_pre(long_text)
    with pytest.raises(ValueError, match="outside 1..1"):
        build(model, pre, _texts()[:4], start=2)


def test_a_cached_run_trains_as_the_uncached_one_without_dropout(nodrop_dir, tmp_path):
    splits = text_splits()
    model, pre = load_classifier(nodrop_dir, "bert", 2, max_length=SETTINGS["max_length"])
    cache = build(model, pre, _texts(), start=1)
    plain = finetune(nodrop_dir, "bert", splits, tmp_path / "plain", **SETTINGS, method=LAST)
    cached = finetune(nodrop_dir, "bert", splits, tmp_path / "cached", **SETTINGS, method=LAST, prefix_cache=cache)
    assert cached["prefix_cache"]["start"] == 1 and cached["prefix_cache"]["max_abs_diff_vs_uncached"] < 1e-4
    assert "prefix_cache" not in plain
    losses = torch.tensor([l for _, l in plain["loss_curve"]]), torch.tensor([l for _, l in cached["loss_curve"]])
    torch.testing.assert_close(losses[1], losses[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(cached["test_logits_head"]), torch.tensor(plain["test_logits_head"]),
                               atol=1e-4, rtol=0)
    assert cached["test_accuracy"] == plain["test_accuracy"]
    # the saved folder is the whole model (nothing of the cache in it)
    model, _ = load_classifier(tmp_path / "cached", "bert", 2)
    assert len(model.bert.encoder.layer) == 2


def test_a_method_that_trains_before_the_cache_is_refused(nodrop_dir, tmp_path):
    model, pre = load_classifier(nodrop_dir, "bert", 2, max_length=16)
    cache = build(model, pre, _texts(), start=1)
    every = {**LAST, "targets": {"layers": [0, 1], "kinds": ["ffn_in", "ffn_out"]}}
    with pytest.raises(ValueError, match="trains .* there"):
        finetune(nodrop_dir, "bert", text_splits(), tmp_path / "m", **SETTINGS, method=every, prefix_cache=cache)
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="trains"):
        finetune(nodrop_dir, "bert", text_splits(), tmp_path / "f", **SETTINGS, method=None, prefix_cache=cache)
    assert methods.parse(every).name == "spectral"
