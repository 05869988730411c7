"""specbasis.methods (parse, prepare, each method's Adapted) and the one training loop (specbasis.training.finetune.finetune) for every finetuning method, on the
tiny BERT and the tiny separable text task of tests/test_train.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import TEXT_SETTINGS, bert_dir, bert_src, image_splits, text_splits, timm_dir  # noqa: F401 (fixtures)

from specbasis import methods
from specbasis.methods.apply import head_modules, prepare, resolve_targets
from specbasis.methods.base import ADAPTER_DIR
from specbasis.methods.bitfit import BITFIT_FILE
from specbasis.methods.spectral import SPECTRAL_FILE
from specbasis.training import finetune as train_mod
from specbasis.models import load_classifier, prepare_pretrained
from specbasis.evaluate import predict_logits
from specbasis.training.finetune import finetune

SIX = ["attn_q", "attn_k", "attn_v", "attn_o", "ffn_in", "ffn_out"]
EVERY = {"layers": "all", "kinds": SIX}            # the 12 Linear matrices of the 2-layer BERT
LAST_FFN = {"layers": [-1], "kinds": ["ffn_in", "ffn_out"]}
SPECS = {  # one run each; small ranks: the tiny BERT's matrices are 32 x 32, 64 x 32 and 32 x 64
    "full": None,
    "bitfit": "bitfit",
    "spectral": {"method": "spectral", "k": 1, "m": 9, "targets": EVERY},
    "lora_kaiming": {"method": "lora", "r": 4, "init": "kaiming", "targets": EVERY},
    "lora_gaussian": {"method": "lora", "r": 4, "init": "gaussian", "targets": EVERY},
    "pissa": {"method": "pissa", "r": 4, "targets": EVERY},
    "dora": {"method": "dora", "r": 4, "targets": EVERY},
    "adalora": {"method": "adalora", "init_r": 6, "target_r": 4, "targets": EVERY},
    "psoft": {"method": "psoft", "r": 8, "targets": EVERY},
}
# Adapters train far fewer numbers than full finetuning, so they take a higher rate and more steps (~1 s a run).
SETTINGS = {**TEXT_SETTINGS, "lr": 2e-2, "steps": 120, "eval_every": 1000}
H, I, L = 32, 64, 2  # the tiny BERT of test_train: hidden, intermediate, layers
HEAD = H * 2 + 2     # classifier (2, H) + bias


@pytest.fixture(scope="module")
def scaled_dir(bert_src, tmp_path_factory) -> Path:
    """test_train's tiny BERT with every Linear weight x10 (std 0.2 instead of BERT's init 0.02).

    At BERT's init the pooled features of this task differ between classes by ~1e-3 (std 3e-4), too little for
    a head and biases alone to move the loss in a few hundred steps. Pretrained features are unit-scale; at
    std 0.2 these are too, and every method lowers the loss within 120 steps."""
    from transformers import BertModel

    src = tmp_path_factory.mktemp("scaled_src")
    for p in bert_src.iterdir():
        shutil.copy(p, src / p.name)
    model = BertModel.from_pretrained(bert_src)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(10.0)
    model.save_pretrained(src)
    return prepare_pretrained(src, tmp_path_factory.mktemp("scaled") / "prepared", "bert", "hf")


@pytest.fixture(scope="module")
def runs(scaled_dir, tmp_path_factory):
    """Every method trained once: {name: (metrics, out_dir)}."""
    out = {}
    for name, spec in SPECS.items():
        out_dir = tmp_path_factory.mktemp(name) / "model"
        out[name] = (finetune(scaled_dir, "bert", text_splits(), out_dir, **SETTINGS, eval_step0=False, method=spec),
                     out_dir)
    return out


def _strip(state: dict) -> dict:
    """BertModel's names (the base folder) and BertForSequenceClassification's (bert.*) on one footing."""
    return {k.removeprefix("bert."): v for k, v in state.items()}


# ------------------------------------------------------------------------------------------- training

@pytest.mark.parametrize("name", list(SPECS))
def test_every_method_lowers_the_loss_and_records_its_costs(runs, name):
    metrics, out_dir = runs[name]
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert [s for s, _ in metrics["loss_curve"]] == list(range(1, SETTINGS["steps"] + 1))
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10]), (name, losses[:10], losses[-10:])
    on_disk = json.loads((out_dir / "metrics.json").read_text())
    assert on_disk["method"] == methods.parse(SPECS[name]).to_dict()
    assert on_disk["trainable_parameters"] == on_disk["parameter_counts"]["trainable"] > 0
    assert 0 < on_disk["step_seconds_median"] and 0 < on_disk["step_seconds_mean"] < on_disk["seconds_train"]
    assert on_disk["peak_memory"]["device"] == "cpu" and on_disk["peak_memory"]["measure"]
    assert on_disk["peak_memory"]["peak_above_step_start_bytes"] >= 0
    for f in on_disk["adapter_files"]:
        assert (out_dir / f).is_file()
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    if name != "full":
        assert on_disk["trainable_parameters"] < on_disk["parameter_counts"]["base"] / 2
        assert on_disk["adapter_files"] and all(f.startswith("adapter/") for f in on_disk["adapter_files"])
    if methods.parse(SPECS[name]).targets is not None:  # every method adapted the same 12 matrices
        assert on_disk["targets"] == runs["spectral"][0]["targets"] and len(on_disk["targets"]) == 12


def test_the_default_method_is_full_finetuning(scaled_dir, tmp_path):
    settings = {**TEXT_SETTINGS, "steps": 4, "eval_every": 100}
    default = finetune(scaled_dir, "bert", text_splits(), tmp_path / "a", **settings, eval_step0=False)
    full = finetune(scaled_dir, "bert", text_splits(), tmp_path / "b", **settings, eval_step0=False,
                    method={"method": "full"})
    assert default["method"] == full["method"] == {"method": "full"}
    assert default["loss_curve"] == full["loss_curve"] and default["test_logits_head"] == full["test_logits_head"]
    assert default["trainable_parameters"] == default["parameter_counts"]["base"]
    assert default["adapter_files"] == [] and not (tmp_path / "a" / "adapter").exists()


# ------------------------------------------------------------------------------------------- the saved folder

@pytest.mark.parametrize("name", list(SPECS))
def test_saved_folder_loads_as_a_plain_model_with_the_trained_logits(runs, name):
    metrics, out_dir = runs[name]
    model, preprocess = load_classifier(out_dir, "bert", 2)
    assert not [n for n, _ in model.named_modules() if "lora" in n or "psoft" in n or "modules_to_save" in n]
    splits = text_splits()
    logits = predict_logits(model, preprocess, splits.test.x, "cpu")
    head = torch.tensor(metrics["test_logits_head"])  # the trained model's, before the merge
    torch.testing.assert_close(logits[:len(head)], head, rtol=0, atol=1e-4)
    assert float((logits.argmax(1).numpy() == splits.test.y).mean()) == pytest.approx(metrics["test_accuracy"])


@pytest.mark.parametrize("name", [n for n in SPECS if n != "full"])
def test_weights_change_only_where_the_method_trains(runs, scaled_dir, name):
    metrics, out_dir = runs[name]
    base = _strip(load_file(scaled_dir / "model.safetensors"))
    tuned = _strip(load_file(out_dir / "model.safetensors"))
    assert set(tuned) - set(base) == {"classifier.weight", "classifier.bias"}  # the head, new
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    if name == "bitfit":
        biases = {k for k in base if k.endswith(".bias")}
        # the key bias adds the same number to every score of a query: softmax ignores it, its gradient is 0
        moved = {k for k in biases if "attention.self.key" not in k}
        assert moved <= changed <= biases, sorted(changed ^ moved)
    else:
        targeted = {m.removeprefix("bert.") + ".weight" for m in metrics["targets"]}
        assert changed == targeted, sorted(changed ^ targeted)


def test_spectral_update_lies_in_the_block_of_the_pretrained_svd(runs, scaled_dir):
    metrics, out_dir = runs["spectral"]
    k, m = SPECS["spectral"]["k"], SPECS["spectral"]["m"]
    base = _strip(load_file(scaled_dir / "model.safetensors"))
    tuned = _strip(load_file(out_dir / "model.safetensors"))
    for module in metrics["targets"]:
        key = module.removeprefix("bert.") + ".weight"
        W0, W = base[key].double(), tuned[key].double()
        U, S, Vh = torch.linalg.svd(W0, full_matrices=False)   # W₀ = U diag(S) Vh, (out, in)
        A = U.T @ (W - W0) @ Vh.T                              # the change in W₀'s singular bases
        block = A[k:m, k:m].abs().max()
        outside = A.clone()
        outside[k:m, k:m] = 0
        assert block > 1e-3 and outside.abs().max() <= 1e-4 * block, (key, float(block), float(outside.abs().max()))


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # transformers 5 vs peft 0.21
# AdaLoRA's rank_pattern names parameters (…lora_E), which peft 0.21's generic matching of module names warns
# about before AdaLoRA's own loading resizes the modules by it; the logits below show the load is right
@pytest.mark.filterwarnings("ignore:The following rank_pattern keys did not match:RuntimeWarning")
@pytest.mark.parametrize("name", [n for n in SPECS if n != "full"])
def test_adapter_file_applied_to_the_pretrained_model_gives_the_saved_model(runs, scaled_dir, name):
    """peft's files load with PeftModel.from_pretrained onto the pretrained weights (PiSSA's too: saved as the
    equivalent plain LoRA), ours with load_spectral / as plain tensors; each reproduces the merged folder."""
    metrics, out_dir = runs[name]
    torch.manual_seed(1)  # the fresh head is overwritten by the adapter file's
    model, preprocess = load_classifier(scaled_dir, "bert", 2, max_length=SETTINGS["max_length"])
    folder = out_dir / ADAPTER_DIR
    if name == "spectral":
        from specbasis.methods.spectral_adapter import load_spectral

        load_spectral(model, folder / SPECTRAL_FILE)
    elif name == "bitfit":
        state = load_file(folder / BITFIT_FILE)
        trained = {n for n, _ in model.named_parameters() if n.endswith(".bias") or n.startswith("classifier.")}
        assert set(state) == trained
        model.load_state_dict(state, strict=False)
    else:
        from peft import PeftModel

        config = json.loads((folder / "adapter_config.json").read_text())
        if name == "pissa":
            assert config["init_lora_weights"] is True and config["r"] == 2 * SPECS["pissa"]["r"]
        model = PeftModel.from_pretrained(model, folder)
    logits = predict_logits(model, preprocess, text_splits().test.x, "cpu")
    torch.testing.assert_close(logits[:8], torch.tensor(metrics["test_logits_head"]), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("spec, expected", [
    ({"method": "spectral", "k": 2, "m": 7, "targets": LAST_FFN}, 2 * 5 ** 2 + HEAD),           # r² per matrix
    ({"method": "spectral", "k": 0, "m": 3, "targets": EVERY}, 12 * 3 ** 2 + HEAD),
    ("bitfit", H + L * (4 * H + H + I + H + H) + H + HEAD),  # emb LN; per layer q k v o, LN, ffn in, out, LN; pooler
    ({"method": "lora", "r": 4, "targets": LAST_FFN}, 4 * (H + I) * 2 + HEAD),                # r (in + out)
    ({"method": "lora", "r": 2, "init": "gaussian", "targets": EVERY}, 2 * (4 * 2 * H + 2 * (H + I)) * L + HEAD),
    ({"method": "pissa", "r": 4, "targets": LAST_FFN}, 4 * (H + I) * 2 + HEAD),
    ({"method": "dora", "r": 4, "targets": LAST_FFN}, 4 * (H + I) * 2 + (I + H) + HEAD),      # + a magnitude per row
    ({"method": "adalora", "init_r": 6, "target_r": 4, "targets": LAST_FFN}, 6 * (H + I + 1) * 2 + HEAD),    # P, Q, Λ
    ({"method": "psoft", "r": 5, "targets": LAST_FFN}, 2 * 5 ** 2 + HEAD),                    # R, r x r
    ({"method": "lora", "r": 4, "targets": r"bert\.encoder\.layer\.1\.(intermediate|output)\.dense"},
     4 * (H + I) * 2 + HEAD),                                                                # the same, by regex
])
def test_trainable_parameter_counts_are_exact(bert_dir, spec, expected):
    torch.manual_seed(0)
    model, _ = load_classifier(bert_dir, "bert", 2)
    base = sum(p.numel() for p in model.parameters())
    info = prepare(model, spec, "bert", total_steps=10)
    model = info.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == info.counts["trainable"] == expected
    assert info.counts["head"] == HEAD and info.counts["base"] == base
    assert info.counts["adapter"] == expected - HEAD


def test_targets_are_one_list_of_module_names_for_every_method(bert_dir):
    model, _ = load_classifier(bert_dir, "bert", 2)
    by_ids = resolve_targets(model, {"layers": [-1], "kinds": ["ffn_in", "ffn_out"]}, "bert")
    assert by_ids == {"bert.encoder.layer.1.intermediate.dense": "01.ffn_in",
                      "bert.encoder.layer.1.output.dense": "01.ffn_out"}
    every = resolve_targets(model, EVERY, "bert")
    assert len(every) == 12 and set(every.values()) == {f"0{i}.{kd}" for i in range(2) for kd in SIX}
    assert head_modules(model) == ["classifier"]


def test_a_spec_round_trips_through_its_dict():
    for spec in SPECS.values():
        parsed = methods.parse(spec)
        assert methods.parse(parsed.to_dict()) == parsed
    assert methods.parse({"method": "lora", "targets": EVERY}).settings == \
        {"r": 8, "alpha": None, "dropout": 0.0, "init": "kaiming"}


# ------------------------------------------------------------------------------------------- bad input

BAD = [
    ({"method": "lorax"}, r"method = 'lorax': allowed: full, bitfit, spectral, lora, dora, pissa, adalora, psoft"),
    ({"method": "spectral", "k": 5, "m": 3, "targets": LAST_FFN}, r"m = 3: must exceed k = 5"),
    ({"method": "spectral", "m": 40, "targets": LAST_FFN}, r"m = 40: exceeds the rank 32 of 01.ffn_in .*k < m ≤ 32"),
    ({"method": "spectral", "k": 2, "targets": LAST_FFN}, r"method spectral: m = None: required"),
    ({"method": "lora", "r": 4}, r"targets = None: required for lora"),
    ({"method": "lora", "targets": {"layers": [7]}},
     r"targets.layers = \[7\]: \[7\] not in this bert model; allowed: 0..1"),
    ({"method": "lora", "targets": {"layers": [0], "kinds": ["ffn"]}}, r"targets.kinds = \['ffn'\]: a non-empty list; allowed: ffn_in"),
    ({"method": "lora", "targets": {"layers": [0], "kinds": "ffn_in"}}, r"targets.kinds = 'ffn_in': a non-empty list"),
    ({"method": "lora", "targets": {"layer": [0]}}, r"targets.layer = \[0\]: allowed keys: layers, kinds"),
    ({"method": "lora", "targets": "nothing.*"}, r"targets = 'nothing.\*' matches no module"),
    ({"method": "lora", "targets": r"bert\.encoder\.layer\.1\.output"}, r"BertOutput, not an nn.Linear"),
    ({"method": "lora", "targets": "classifier"}, r"lie in the task head"),
    ({"method": "lora", "rank": 4, "targets": LAST_FFN}, r"rank = 4: not a setting of lora; allowed: r, alpha"),
    ({"method": "lora", "init": "orthogonal", "targets": LAST_FFN},
     r"init = 'orthogonal': must be one of kaiming, gaussian"),
    ({"method": "lora", "r": 0, "targets": LAST_FFN}, r"r = 0: must be an int ≥ 1"),
    ({"method": "lora", "targets": LAST_FFN, "peft": {"no_such_option": 1}},
     r"peft.no_such_option = 1: LoraConfig of the installed peft 0\.21\.2 has no such option; allowed: .*use_rslora"),
    ({"method": "lora", "targets": LAST_FFN, "peft": {"lora_alpha": 4}},
     r"peft.lora_alpha = 4: set by the key `alpha`"),
    ({"method": "psoft", "targets": LAST_FFN, "peft": {"psoft_orth": True}}, r"psoft_orth = True: set by the method"),
    ({"method": "psoft", "r": 40, "targets": LAST_FFN}, r"r = 40: exceeds the rank 32 of 01.ffn_in"),
    ({"method": "adalora", "tinit": 8, "targets": LAST_FFN}, r"tinit = 8: .* no budgeting phase in 8 steps"),
    ({"method": "adalora", "init_r": 4, "target_r": 6, "targets": LAST_FFN}, r"target_r = 6: must be ≤ init_r = 4"),
    ({"method": "bitfit", "targets": LAST_FFN}, r"bitfit takes no targets"),
    ({"method": "full", "peft": {"r": 2}}, r"peft = \{'r': 2\}: only the peft methods"),
]


@pytest.mark.parametrize("spec, message", BAD, ids=[m.split(":")[0][:40] for _, m in BAD])
def test_bad_input_fails_before_training(bert_dir, tmp_path, monkeypatch, spec, message):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train_mod.F, "cross_entropy", no_training)
    with pytest.raises(ValueError, match=message):
        finetune(bert_dir, "bert", text_splits(), tmp_path / "out", **{**TEXT_SETTINGS, "steps": 8},
                 eval_step0=False, method=spec)
    assert not (tmp_path / "out").exists()


def test_a_module_that_is_not_linear_is_refused(timm_dir, tmp_path):
    """EfficientNet's FFN matrices are 1x1 convs: no adapter here wraps them."""
    with pytest.raises(ValueError, match=r"matrix \d+\.ffn_in .* not the weight of a plain nn.Linear.*leave kind "
                                         r"ffn_in out of targets.kinds"):
        finetune(timm_dir, "efficientnet_lite", image_splits(), tmp_path / "out", steps=2, batch_size=8, lr=1e-3,
                 weight_decay=0.0, warmup_frac=0.0, eval_every=10, seed=0, device="cpu", threads=1, image_size=32,
                 eval_step0=False, method={"method": "lora", "targets": {"layers": [-1], "kinds": ["ffn_in"]}})
    assert not (tmp_path / "out").exists()


def test_an_image_model_takes_the_same_methods(tmp_path):
    """timm's test_vit (its MLP matrices are nn.Linear): adapters merge into a timm folder that timm reads."""
    import timm

    from specbasis.models import save_weights, timm_config

    src = tmp_path / "src"
    src.mkdir()
    torch.manual_seed(0)
    vit = timm.create_model("test_vit", pretrained=False, num_classes=7, img_size=32)
    save_weights(vit.state_dict(), src / "model.safetensors")
    config = timm_config(vit, "test_vit", model_args={"img_size": 32})
    del config["library"]
    (src / "config.json").write_text(json.dumps(config))
    base = prepare_pretrained(src, tmp_path / "vit", "vit", "timm")
    splits = image_splits()
    metrics = finetune(base, "vit", splits, tmp_path / "out", steps=20, batch_size=16, lr=3e-3, weight_decay=0.0,
                       warmup_frac=0.1, image_size=32, eval_every=100, seed=0, device="cpu", threads=1,
                       eval_step0=False, method={"method": "lora", "r": 4, "targets": {"layers": [-1]}})
    assert metrics["targets"] == {"blocks.5.mlp.fc1": "05.ffn_in", "blocks.5.mlp.fc2": "05.ffn_out"}
    native = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True).eval()
    _, preprocess = load_classifier(tmp_path / "out", "vit", 2)
    with torch.no_grad():
        logits = native(preprocess(splits.test.x[:8]))
    torch.testing.assert_close(logits, torch.tensor(metrics["test_logits_head"]), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["lora_kaiming", "adalora"])
def test_a_diverging_adapter_run_stops_naming_the_step(scaled_dir, tmp_path, monkeypatch, name):
    calls = []

    def nan_at_3(logits, y):
        calls.append(1)
        return logits.sum() * (float("nan") if len(calls) == 3 else 0.0)

    monkeypatch.setattr(train_mod.F, "cross_entropy", nan_at_3)
    with pytest.raises(FloatingPointError, match="loss is nan at step 3"):
        finetune(scaled_dir, "bert", text_splits(), tmp_path / "out", **{**SETTINGS, "steps": 5}, eval_step0=False,
                 method=SPECS[name])
    assert not (tmp_path / "out").exists()


def test_a_failed_save_leaves_no_folder(scaled_dir, tmp_path, monkeypatch):
    def broken_save(model, preprocess, splits, base_dir, out):
        assert (out / "adapter" / "adapter_model.safetensors").is_file()  # the adapter went first
        raise OSError("disk full")

    monkeypatch.setattr(train_mod, "save_finetuned", broken_save)
    with pytest.raises(OSError, match="disk full"):
        finetune(scaled_dir, "bert", text_splits(), tmp_path / "out", **{**SETTINGS, "steps": 2}, eval_step0=False,
                 method=SPECS["pissa"])
    assert list(tmp_path.iterdir()) == []


def test_spectral_factors_come_from_an_svd_store_when_it_holds_enough_vectors(scaled_dir, tmp_path):
    """The workflow's results/svd store of the base model serves U_r, V_r (StoredSVDs, by matrix id); a store
    holding fewer than m vectors is passed over and the adapter computes its own SVD."""
    from specbasis.svd import StoredSVDs, write_svd_matrices

    model, _ = load_classifier(scaled_dir, "bert", 2)
    targets = resolve_targets(model, LAST_FFN, "bert")
    mats = {key: model.get_submodule(name).weight.detach().numpy() for name, key in targets.items()}
    write_svd_matrices(mats, tmp_path / "svd.h5", device="cpu")
    spec = {"method": "spectral", "k": 0, "m": 8, "targets": LAST_FFN}
    run = finetune(scaled_dir, "bert", text_splits(), tmp_path / "given", **{**SETTINGS, "steps": 10}, eval_step0=False,
                   method=spec, spectral_factors=StoredSVDs(tmp_path / "svd.h5", min_rank=8))
    assert run["adapter_config"]["factors_given"] == sorted(targets)
    own = finetune(scaled_dir, "bert", text_splits(), tmp_path / "own", **{**SETTINGS, "steps": 10}, eval_step0=False,
                   method=spec)
    assert own["adapter_config"]["factors_given"] == []
    np.testing.assert_allclose(run["test_logits_head"], own["test_logits_head"], atol=1e-4)
    assert StoredSVDs(tmp_path / "svd.h5", min_rank=10_000).get(next(iter(targets.values()))) is None
