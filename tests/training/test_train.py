"""specbasis.models and specbasis.training.finetune on tiny random models of the real classes (a 2-layer BERT,
timm's test_efficientnet, timm's efficientnet_lite0 for the checkpoint conversion) and tiny
separable data sets."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from specbasis.training import finetune as train_mod
from specbasis.data import Part, Splits
from specbasis.models import (load_classifier, map_lukemelas_to_timm, prepare_pretrained, save_weights,
                              timm_config)
from specbasis.evaluate import predict_logits
from specbasis.io.metrics import FinetuneMetrics
from specbasis.training.finetune import finetune

CLASS_WORDS = [["good", "great", "fine", "nice", "superb", "lovely"],
               ["bad", "awful", "poor", "dull", "weak", "ugly"]]
NEUTRAL = ["the", "a", "movie", "film", "plot", "story", "was", "is", "and", "it"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXT_SETTINGS = dict(steps=30, batch_size=16, lr=5e-3, weight_decay=0.01, warmup_frac=0.1, max_length=16,
                     eval_every=10, seed=0, device="cpu", threads=1)
IMAGE_SETTINGS = dict(steps=30, batch_size=16, lr=3e-3, weight_decay=0.0, warmup_frac=0.1, image_size=32,
                      eval_every=10, seed=0, device="cpu", threads=1)
METRIC_KEYS = {"test_accuracy", "val_accuracy", "step0_test_accuracy", "chance_accuracy", "majority_accuracy",
               "loss_curve", "val_curve", "lr", "steps", "batch_size", "weight_decay", "warmup_frac", "seconds",
               "device", "seed", "sizes", "full_sizes", "classes", "test_logits_head", "reload_max_abs_diff"}


# ---------------------------------------------------------------------------------------------
# Tiny pretrained models, prepared the way the workflow prepares the real ones


@pytest.fixture(scope="module")
def bert_src(tmp_path_factory) -> Path:
    """A 2-layer BERT base model (no head, like all-MiniLM-L6-v2) + a BERT tokenizer, as a hub snapshot."""
    from transformers import BertConfig, BertModel, BertTokenizer

    src = tmp_path_factory.mktemp("bert_src")
    (src / "vocab.txt").write_text("\n".join(SPECIALS + NEUTRAL + sum(CLASS_WORDS, [])) + "\n")
    BertTokenizer(vocab=str(src / "vocab.txt")).save_pretrained(src)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(SPECIALS + NEUTRAL) + 12, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(src)
    (src / "README.md").write_text("not copied")
    return src


@pytest.fixture(scope="module")
def bert_dir(bert_src, tmp_path_factory) -> Path:
    return prepare_pretrained(bert_src, tmp_path_factory.mktemp("bert") / "prepared", "bert", "hf")


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory) -> Path:
    """timm's test_efficientnet with a 7-class head, as a timm hub snapshot, prepared (timm)."""
    import timm

    src = tmp_path_factory.mktemp("timm_src")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=7)
    save_weights(model.state_dict(), src / "model.safetensors")
    config = timm_config(model, "test_efficientnet")
    del config["library"]  # a hub snapshot's config.json has no such key
    (src / "config.json").write_text(json.dumps(config))
    return prepare_pretrained(src, tmp_path_factory.mktemp("timm") / "prepared", "efficientnet_lite", "timm")


def text_splits(seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)

    def part(n):
        y = np.arange(n) % 2
        x = [" ".join(rng.permutation(list(rng.choice(CLASS_WORDS[c], 2)) + list(rng.choice(NEUTRAL, 4))))
             for c in y]
        return Part(x, y)
    return Splits(part(160), part(40), part(40), ["neg", "pos"], "text")


def image_splits(seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)

    def part(n):
        y = np.arange(n) % 2
        x = rng.integers(0, 60, (n, 16, 16)).astype(np.uint8)
        x[y == 0, :8] += 150  # class 0: bright top half
        x[y == 1, 8:] += 150  # class 1: bright bottom half
        return Part(x, y)
    return Splits(part(160), part(40), part(40), ["top", "bottom"], "image")


CASES = {"text": ("bert", text_splits, TEXT_SETTINGS), "image": ("efficientnet_lite", image_splits, IMAGE_SETTINGS)}


@pytest.fixture(scope="module")
def finetuned(bert_dir, timm_dir, tmp_path_factory):
    """Each case finetuned once: {modality: (metrics, out_dir, splits)}."""
    out = {}
    for kind, base in (("text", bert_dir), ("image", timm_dir)):
        family, make, settings = CASES[kind]
        splits = make()
        out_dir = tmp_path_factory.mktemp(f"ft_{kind}") / "model"
        out[kind] = (finetune(base, family, splits, out_dir, **settings), out_dir, splits)
    return out


# ---------------------------------------------------------------------------------------------
# Finetuning


@pytest.mark.parametrize("kind", ["text", "image"])
def test_finetune_learns_and_writes_its_metrics(finetuned, kind):
    metrics, out_dir, splits = finetuned[kind]
    on_disk = json.loads((out_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(on_disk) and on_disk["test_accuracy"] == metrics["test_accuracy"]
    assert list(FinetuneMetrics.read(out_dir).to_dict().items()) == list(on_disk.items())  # the record, key order too
    assert ("max_length" in on_disk) == (kind == "text") and ("image_size" in on_disk) == (kind == "image")
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert [s for s, _ in metrics["loss_curve"]] == list(range(1, 31))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert metrics["test_accuracy"] >= 0.9 > metrics["chance_accuracy"] == 0.5
    assert [s for s, _ in metrics["val_curve"]] == [10, 20, 30]
    assert metrics["sizes"] == {"train": 160, "val": 40, "test": 40} and metrics["device"] == "cpu"
    files = {p.name for p in out_dir.iterdir()}
    assert {"model.safetensors", "config.json", "metrics.json", "preprocess.json"} <= files
    assert kind == "image" or "tokenizer.json" in files
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


@pytest.mark.parametrize("kind", ["text", "image"])
def test_finetuned_model_loads_back_with_the_same_logits(finetuned, kind):
    metrics, out_dir, splits = finetuned[kind]
    family = CASES[kind][0]
    model, preprocess = load_classifier(out_dir, family, 2)
    logits = predict_logits(model, preprocess, splits.test.x, "cpu")
    head = torch.tensor(metrics["test_logits_head"])
    torch.testing.assert_close(logits[:len(head)], head, rtol=0, atol=1e-5)
    assert float((logits.argmax(1).numpy() == splits.test.y).mean()) == metrics["test_accuracy"]


def test_finetuned_timm_folder_is_timm_readable(finetuned):
    import timm

    metrics, out_dir, splits = finetuned["image"]
    config = json.loads((out_dir / "config.json").read_text())
    assert (config["architecture"], config["num_classes"], config["label_names"]) == ("test_efficientnet", 2,
                                                                                        ["top", "bottom"])
    native = timm.create_model(f"local-dir:{out_dir}", pretrained=True).eval()
    _, preprocess = load_classifier(out_dir, "efficientnet_lite", 2)
    with torch.no_grad():
        logits = native(preprocess(splits.test.x[:8]))
    torch.testing.assert_close(logits, torch.tensor(metrics["test_logits_head"]), rtol=0, atol=1e-5)


def test_finetuned_text_folder_records_labels(finetuned):
    _, out_dir, _ = finetuned["text"]
    config = json.loads((out_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert json.loads((out_dir / "preprocess.json").read_text()) == {"modality": "text", "max_length": 16}


def test_same_seed_same_loss_curve(bert_dir, tmp_path):
    settings = {**TEXT_SETTINGS, "steps": 6, "eval_every": 100}
    runs = [finetune(bert_dir, "bert", text_splits(), tmp_path / f"run{i}", **{**settings, "seed": seed},
                     eval_step0=False)
            for i, seed in enumerate([1, 1, 2])]
    assert runs[0]["loss_curve"] == runs[1]["loss_curve"]
    assert runs[0]["test_logits_head"] == runs[1]["test_logits_head"]
    assert runs[0]["loss_curve"] != runs[2]["loss_curve"]


def test_a_failure_leaves_no_out_dir(bert_dir, tmp_path, monkeypatch):
    def broken_save(model, preprocess, splits, base_dir, out):
        (out / "model.safetensors").write_text("half written")
        raise OSError("disk full")

    monkeypatch.setattr(train_mod, "save_finetuned", broken_save)
    settings = {**TEXT_SETTINGS, "steps": 2, "eval_every": 100}
    with pytest.raises(OSError, match="disk full"):
        finetune(bert_dir, "bert", text_splits(), tmp_path / "new", **settings, eval_step0=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text("{}")  # an earlier result survives a failed rerun
    with pytest.raises(OSError, match="disk full"):
        finetune(bert_dir, "bert", text_splits(), tmp_path / "old", **settings, eval_step0=False)
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["metrics.json"]


def test_a_diverging_run_stops_with_a_clear_error(bert_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod.F, "cross_entropy", lambda logits, y: logits.sum() * float("nan"))
    with pytest.raises(FloatingPointError, match="loss is nan at step 1"):
        finetune(bert_dir, "bert", text_splits(), tmp_path / "out", **{**TEXT_SETTINGS, "steps": 2},
                 eval_step0=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Preparing and loading checkpoints


def test_prepare_hf_links_weights_and_leaves_extras(bert_src, bert_dir):
    assert {p.name for p in bert_dir.iterdir()} == {"model.safetensors", "config.json", "tokenizer.json",
                                                      "tokenizer_config.json", "vocab.txt"}
    assert os.stat(bert_dir / "model.safetensors").st_ino == os.stat(bert_src / "model.safetensors").st_ino


def test_prepare_hf_turns_a_bin_checkpoint_into_safetensors(bert_dir, tmp_path):
    src = tmp_path / "bin"
    src.mkdir()
    state = load_file(bert_dir / "model.safetensors")
    torch.save(state, src / "pytorch_model.bin")
    (src / "config.json").write_bytes((bert_dir / "config.json").read_bytes())
    out = prepare_pretrained(src, tmp_path / "out", "bert", "hf")
    converted = load_file(out / "model.safetensors")
    assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)


def test_prepare_refuses_a_format_that_does_not_fit_the_family(bert_dir, tmp_path):
    with pytest.raises(ValueError, match="allowed: hf, timm, lukemelas, state_dict"):
        prepare_pretrained(bert_dir, tmp_path / "out", "bert", "onnx")
    with pytest.raises(ValueError, match="does not fit family 'vit'"):
        prepare_pretrained(bert_dir, tmp_path / "out", "vit", "hf")
    with pytest.raises(ValueError, match="format 'hf' does not fit family 'labram'; allowed: state_dict"):
        prepare_pretrained(bert_dir, tmp_path / "out", "labram", "hf")
    assert not (tmp_path / "out").exists()


def test_prepare_state_dict_unnests_a_brain_jepa_checkpoint(tmp_path):
    """A Brain-JEPA-style training checkpoint (encoder, target_encoder, predictor, under DDP's `module.`)
    becomes a model.safetensors of the target encoder's tensors, names kept; a folder must hold one file."""
    target = {"module.blocks.0.attn.qkv.weight": torch.randn(12, 4), "module.blocks.0.mlp.fc1.weight": torch.randn(8, 4)}
    ckpt = {"encoder": {k: torch.zeros_like(v) for k, v in target.items()}, "target_encoder": target,
            "predictor": {"module.predictor_blocks.0.mlp.fc1.weight": torch.ones(2, 2)}, "epoch": 7}
    src = tmp_path / "src"
    src.mkdir()
    torch.save(ckpt, src / "jepa-ep300.pth")
    out = prepare_pretrained(src, tmp_path / "out", "brain_jepa", "state_dict")
    state = load_file(out / "model.safetensors")
    assert state.keys() == target.keys() and all(torch.equal(state[k], target[k]) for k in target)
    assert json.loads((out / "config.json").read_text()) == {"family": "brain_jepa", "source_format": "state_dict",
                                                             "source_file": "jepa-ep300.pth"}
    torch.save(ckpt, src / "another.pth")
    with pytest.raises(FileNotFoundError, match="expected exactly one weights file"):
        prepare_pretrained(src, tmp_path / "out2", "brain_jepa", "state_dict")
    assert not (tmp_path / "out2").exists()


def test_load_classifier_is_strict_outside_the_head(bert_dir, timm_dir, tmp_path):
    broken = tmp_path / "bert"
    broken.mkdir()
    for p in bert_dir.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    state = load_file(bert_dir / "model.safetensors")
    lost = next(k for k in state if "attention.self.query.weight" in k)
    save_file({k: v for k, v in state.items() if k != lost}, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match="backbone weights missing"):
        load_classifier(broken, "bert", 2)

    other = tmp_path / "timm"
    other.mkdir()
    (other / "config.json").write_text((timm_dir / "config.json").read_text().replace("test_efficientnet",
                                                                                       "test_resnet"))
    (other / "model.safetensors").write_bytes((timm_dir / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="do not fit timm 'test_resnet'"):
        load_classifier(other, "efficientnet_lite", 2)


def test_load_classifier_keeps_a_head_of_the_right_size(timm_dir):
    model, _ = load_classifier(timm_dir, "efficientnet_lite", 7)
    state = load_file(timm_dir / "model.safetensors")
    assert torch.equal(model.state_dict()["classifier.weight"], state["classifier.weight"])
    fresh, _ = load_classifier(timm_dir, "efficientnet_lite", 3)
    assert fresh.state_dict()["classifier.weight"].shape == (3, state["classifier.weight"].shape[1])
    assert torch.equal(fresh.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


# ---------------------------------------------------------------------------------------------
# EfficientNet-PyTorch (lukemelas) checkpoints -> timm


def lukemelas_like(state: dict) -> dict:
    """timm's state dict under other names, same order (as EfficientNet-PyTorch lists them):
    '_' before every module name, blocks numbered flat, the tensor kind (weight, ...) kept."""
    out, flat = {}, {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            parts = ["_blocks", str(flat.setdefault((parts[1], parts[2]), len(flat)))] + parts[3:]
        out[".".join(p if p.isdigit() or p == parts[-1] else "_" + p.lstrip("_") for p in parts)] = value
    return out


@pytest.fixture(scope="module")
def effnet_state():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    for m in model.modules():  # "trained" BatchNorm statistics, so the conversion can be checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return model.state_dict()


def test_lukemelas_checkpoint_converts_to_timm(effnet_state, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    renamed = lukemelas_like(effnet_state)
    assert "_blocks.15._conv_dw.weight" in renamed and "_conv_stem.weight" in renamed
    torch.save(renamed, src / "efficientnet-lite0.pth")
    out = prepare_pretrained(src, tmp_path / "out", "efficientnet_lite", "lukemelas")
    converted = load_file(out / "model.safetensors")
    assert set(converted) == set(effnet_state)
    assert all(torch.equal(converted[k], effnet_state[k]) for k in effnet_state)
    config = json.loads((out / "config.json").read_text())
    assert (config["library"], config["architecture"], config["num_classes"], config["source_format"]) == \
        ("timm", "efficientnet_lite0", 1000, "lukemelas")
    model, preprocess = load_classifier(out, "efficientnet_lite", 10, image_size=32)
    assert torch.equal(model.state_dict()["bn2.running_var"], effnet_state["bn2.running_var"])


@pytest.mark.parametrize("damage, message", [
    ("swap", "breaks at position 0: '_bn1.weight'"),  # two tensors of different shapes change places
    ("drop", "295 tensors, timm model has 296"),
    ("kind", "breaks at position 2: '_bn1.running_mean'"),  # in the place of bn1.bias: same shape, other kind
])
def test_lukemelas_mapping_names_the_first_mismatch(effnet_state, damage, message):
    renamed = list(lukemelas_like(effnet_state).items())
    if damage == "swap":
        renamed[0], renamed[1] = renamed[1], renamed[0]
    elif damage == "drop":
        renamed = renamed[1:]
    else:
        renamed[2], renamed[3] = renamed[3], renamed[2]
    with pytest.raises(ValueError, match=message):
        map_lukemelas_to_timm(dict(renamed), effnet_state)


def test_lukemelas_conversion_refuses_untrained_batchnorm(tmp_path):
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)  # running stats still 0 and 1
    src = tmp_path / "src"
    src.mkdir()
    torch.save(lukemelas_like(model.state_dict()), src / "x.pth")
    with pytest.raises(AssertionError, match="initial running stats"):
        prepare_pretrained(src, tmp_path / "out", "efficientnet_lite", "lukemelas")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not os.environ.get("SPECBASIS_EFFNET_PTH"),
                    reason="set SPECBASIS_EFFNET_PTH to the real efficientnet-lite0-57934424.pth")
def test_real_lukemelas_checkpoint_sees_grace_hopper_in_uniform(tmp_path):
    """The real checkpoint, converted, classifies matplotlib's photo of Grace Hopper (in US Navy
    uniform) as ImageNet's 'military uniform' (652) within its top 5."""
    import matplotlib
    from PIL import Image

    pth = Path(os.environ["SPECBASIS_EFFNET_PTH"])
    src = torch.load(pth, map_location="cpu", weights_only=True)
    assert len(src) == 296 and next(iter(src)) == "_conv_stem.weight"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / pth.name).symlink_to(pth)
    out = prepare_pretrained(tmp_path / "src", tmp_path / "out", "efficientnet_lite", "lukemelas")
    model, preprocess = load_classifier(out, "efficientnet_lite", 1000, image_size=224)
    photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    with torch.no_grad():
        top5 = model(preprocess(np.asarray(photo.resize((224, 224)))[None])).topk(5).indices[0].tolist()
    assert 652 in top5, top5


def test_text_preprocess_takes_sentence_pairs(bert_dir):
    """MNLI/QNLI give (text, text_pair): segment ids 0 then 1, as the tokenizer's own pair call."""
    from transformers import AutoTokenizer

    from specbasis.models import TextPreprocess

    tok = AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
    pre = TextPreprocess(tok, 16)
    got = pre([("the film is great", "a movie"), ("dull", "the film was very bad")])
    want = tok(["the film is great", "dull"], ["a movie", "the film was very bad"], padding=True, truncation=True,
               max_length=16, return_tensors="pt")
    assert torch.equal(got["input_ids"], want["input_ids"]) and torch.equal(got["token_type_ids"], want["token_type_ids"])
    assert got["token_type_ids"][0].max() == 1  # the second sentence has its own segment
    single = pre(["the film is great"])
    assert single["token_type_ids"].max() == 0


def test_a_validation_only_run_never_sees_the_test_split(bert_dir, tmp_path):
    """The lr selection's runs: the test part withheld, the validation part in its place, and the run says so."""
    from specbasis.io.metrics import read_predictions

    splits = text_splits()
    held = splits.validation_only()
    assert held.test is held.val and held.test_withheld and held.full_sizes["test"] == 0
    assert not splits.test_withheld and splits.test is not splits.val
    metrics = finetune(bert_dir, "bert", held, tmp_path / "m", **{**TEXT_SETTINGS, "steps": 3, "eval_every": 100},
                       eval_step0=False)
    assert metrics["validation_only"] is True and metrics["test_metric"] == metrics["val_metric"]
    predictions = read_predictions(tmp_path / "m")
    np.testing.assert_array_equal(predictions["label"].to_numpy(), splits.val.y)
    plain = finetune(bert_dir, "bert", splits, tmp_path / "p", **{**TEXT_SETTINGS, "steps": 3, "eval_every": 100},
                     eval_step0=False)
    assert "validation_only" not in plain
    np.testing.assert_array_equal(read_predictions(tmp_path / "p")["label"].to_numpy(), splits.test.y)
