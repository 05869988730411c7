"""The registry of methods: parsing into objects, what a method says of itself, and that a new method plugs into
the one training loop without any code outside its own file knowing its name."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_train import TEXT_SETTINGS, bert_dir, bert_src, text_splits  # noqa: F401 (fixtures)

from specbasis import methods
from specbasis.methods import METHODS, Adapted, Method
from specbasis.methods.apply import prepare
from specbasis.models import load_classifier
from specbasis.training.finetune import finetune

EVERY = {"layers": "all", "kinds": ["ffn_in", "ffn_out"]}


def test_every_registered_method_parses_into_its_class():
    for name, cls in METHODS.items():
        spec = {"method": name}
        if cls.targeted:
            spec["targets"] = EVERY
        if name == "spectral":
            spec["m"] = 4
        method = methods.parse(spec)
        assert type(method) is cls and method.name == name
        assert methods.parse(method) is method  # a parsed method travels as it is
        assert methods.parse(method.to_dict()) == method


def test_what_a_method_says_of_itself():
    assert [n for n, c in METHODS.items() if c.reads_svd_store] == ["spectral"]
    assert [n for n, c in METHODS.items() if not c.targeted] == ["full", "bitfit"]
    assert sorted(n for n, c in METHODS.items() if c.takes_peft) == ["adalora", "dora", "lora", "pissa", "psoft"]
    assert all(c.libraries == ("peft",) for c in METHODS.values() if c.takes_peft)
    assert methods.parse(None) == methods.parse("full") == methods.parse({"method": "full"})


def test_parsing_a_method_imports_no_torch():
    """The workflow parses every method of a suite when it reads the config: that must not cost torch's import."""
    code = ("import sys; from specbasis import methods; "
            "m = methods.parse({'method': 'spectral', 'm': 8, 'targets': {'layers': [0]}}); "
            "assert m.reads_svd_store; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class LayerNormOnly(Method):
    """A method this test adds: only the LayerNorm scales and shifts train, and a loss term counts its calls."""

    name = "layernorm"
    targeted = False
    untargeted_trains = "every LayerNorm"

    def apply(self, model, targets, head, *, total_steps=None, factors=None):
        for n, p in model.named_parameters():
            p.requires_grad_("LayerNorm" in n or n.startswith(tuple(h + "." for h in head)))
        return Counting(self, model, targets, head)


class Counting(Adapted):
    terms = steps = 0

    def loss_term(self):
        Counting.terms += 1
        return torch.zeros(())

    def after_step(self, step):
        Counting.steps = step


def test_a_new_method_is_one_class_and_one_registry_line(bert_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "layernorm", LayerNormOnly)
    model, _ = load_classifier(bert_dir, "bert", 2)
    adapted = prepare(model, "layernorm", "bert")
    assert adapted.counts["adapter"] == 2 * 32 * (1 + 2 * 2)  # embeddings' LN, 2 per layer, weight + bias of 32
    settings = {**TEXT_SETTINGS, "steps": 3, "eval_every": 100}
    metrics = finetune(bert_dir, "bert", text_splits(), tmp_path / "out", **settings, eval_step0=False,
                       method={"method": "layernorm"})
    assert Counting.terms == 3 and Counting.steps == 3
    assert metrics["method"] == {"method": "layernorm"} and metrics["adapter_files"] == []
    with pytest.raises(ValueError, match="method layernorm: targets = .*takes no targets \\(every LayerNorm trains\\)"):
        methods.parse({"method": "layernorm", "targets": EVERY})
