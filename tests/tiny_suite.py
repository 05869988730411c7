"""A tiny suite for the end-to-end workflow test: two tiny pretrained models built from the
libraries' own classes (random init), two tiny separable datasets in the real files' formats, and a
config that finetunes one pair of each modality; plus a brain-signal (fMRI) pair brought as user
checkpoints: a Brain-JEPA-style training checkpoint (timm ViT blocks under `target_encoder`, DDP's
`module.` prefix) and a "finetuned" flat state dict of slightly moved weights. Everything is written
under one folder.
"""
from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import numpy as np
import torch
import yaml

WORDS = {1: ["great", "wonderful", "moving", "superb", "fun"], 0: ["awful", "dull", "boring", "bad", "mess"]}
FILLER = ["the", "film", "is", "a", "movie", "and", "very", "quite", "this", "was"]


def tiny_bert(folder: Path, scale: float = 1.0) -> None:
    """A 2-block BERT, random init; `scale` multiplies every Linear weight (see TINY_PEFT)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILLER + WORDS[0] + WORDS[1]
    BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    model = BertModel(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(scale)
    model.save_pretrained(folder)


def tiny_effnet(folder: Path) -> None:
    import timm
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=10)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(
        {"architecture": "efficientnet_lite0", "num_classes": 10, "num_features": model.num_features,
         "pretrained_cfg": {"num_classes": 10, "input_size": [3, 224, 224]}}))


JEPA_NOISE = 0.02  # the "finetuned" brain model: pretrained weights + this x their std of noise


def tiny_jepa(folder: Path) -> dict[str, torch.Tensor]:
    """jepa-pretrain.pth (nested as Brain-JEPA saves it) and jepa-finetuned.pth (flat); returns the
    target encoder's tensors (the ones the workflow must take) without the prefix."""
    from timm.models.vision_transformer import VisionTransformer

    folder.mkdir(parents=True)
    torch.manual_seed(2)
    target = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0).state_dict()
    online = {k: torch.randn_like(v) for k, v in target.items()}  # the online encoder differs from the EMA one
    torch.save({"encoder": {f"module.{k}": v for k, v in online.items()},
                "target_encoder": {f"module.{k}": v for k, v in target.items()},
                "predictor": {"module.predictor_embed.weight": torch.randn(16, 32)}, "epoch": 3, "lr": 1e-3},
               folder / "jepa-pretrain.pth")
    moved = {k: v + JEPA_NOISE * v.std() * torch.randn_like(v) if v.ndim == 2 else v for k, v in target.items()}
    sub = folder / "jepa-finetuned"
    sub.mkdir()
    torch.save(moved, sub / "checkpoint.pt")
    return target


def tiny_reviews(path: Path, n: int = 240) -> None:
    """rotten_tomatoes format: category (fresh/rotten/plot), text; the label shows in the words."""
    rng = np.random.default_rng(0)
    rows = ["category,text"]
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, 4)) + list(rng.choice(WORDS[label], 2))
        rng.shuffle(words)
        rows.append(f"{'fresh' if label else 'rotten'},{' '.join(words)}")
    rows += ["plot,a synopsis of the film is not a review"] * 5
    with bz2.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")


def tiny_digits(path: Path, n: int = 300) -> None:
    """mnist_csv format: 784 pixels then the label; class c lights up a bar at row 2c..2c+4."""
    rng = np.random.default_rng(1)
    lines = []
    for i in range(n):
        label = i % 10
        img = rng.integers(0, 40, (28, 28))
        img[2 * label + 2: 2 * label + 6, 4:24] = 255
        lines.append(",".join(map(str, img.ravel())) + f",{label}")
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def _idx(path: Path, array: np.ndarray) -> None:
    """One gzipped IDX file of unsigned bytes (the format specbasis.data.read_idx reads)."""
    import struct

    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def tiny_fashion(folder: Path, n_train: int = 160, n_test: int = 100) -> None:
    """Fashion-MNIST's four IDX files: 28x28 grey, class c lights up a column band at 2c..2c+4."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 4:24, 2 * label + 2: 2 * label + 6] = 255
        _idx(folder / f"{prefix}-images-idx3-ubyte.gz", images.astype(np.uint8))
        _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))


# The pretraining-dynamics stage, tiny: a 1-block MAE (16 wide, 16 patches of 7x7), 2 scales, 2 epochs;
# post-training on 64 images for 2 epochs, |cos| every 2 steps. MNIST-format digits are its new data.
TINY_DYNAMICS = {
    "datasets": {"fashion": {"source": "local:fixtures/fashion", "format": "idx"}},
    "data": "fashion", "new_data": "digits", "scales": [64, 128], "val_images": 32,
    "spec": {"patch_size": 7, "hidden_size": 16, "num_layers": 1, "num_heads": 1, "decoder_hidden_size": 8,
             "decoder_layers": 1, "decoder_heads": 1},
    "pretrain": {"epochs": 2, "batch_size": 32},
    "classify": {"images": 64, "epochs": 2, "batch_size": 32},
    "reconstruct": {"images": 64, "epochs": 2, "batch_size": 32, "lr": 3e-3},
    "fit": {"images": 32, "epochs": 6, "batch_size": 32, "lr": 1e-2},   # fig9's fitted runs
    "modes": ["classify", "reconstruct", "classify_shuffled", "fit", "fit_shuffled"],
    "track_every": 2, "max_rank": 8, "top": 4,
}


# Spectral finetuning and PEFT, tiny: a 2-block BERT on the reviews. At BERT's init (std 0.02) a random BERT's pooled
# features hardly differ between the classes, and nothing but full finetuning learns in 40 steps; with every Linear
# weight x10 they are unit-scale as pretrained features are, and every method does (tests/test_methods.py: same).
_LAST_FFN = {"layers": [-1], "kinds": ["ffn_in", "ffn_out"]}
TINY_PEFT = {
    "base": "bert-x10",
    "tasks": {"reviews": {"steps": 120}},
    "methods": {"full": {"method": "full"},
                "spectral": {"method": "spectral", "k": 0, "m": 8, "targets": _LAST_FFN, "lr": 2e-2,
                             "lr_candidates": [2e-3, 2e-2]},   # results/peft/lr_selection.csv (not part of all)
                "psoft": {"method": "psoft", "r": 8, "targets": _LAST_FFN, "lr": 2e-2},
                "bitfit": {"method": "bitfit", "lr": 2e-2},
                "lora_kaiming": {"method": "lora", "r": 2, "targets": {"layers": "all", "kinds": ["attn_q", "attn_v", "ffn_in", "ffn_out"]},
                                 "lr": 1e-2},
                "hadapter": {"method": "houlsby", "reduction_factor": 4, "lr": 1e-2}},
    # fig5: 2 seeds (the default suite runs 3); block 1 runs start from the prefix cache of block 0's outputs
    "sweeps": {"task": "reviews", "seeds": [0, 1], "lr": 2e-2, "train": {"steps": 120}, "cache_prefix": True,
               "rank": {"layers": [1], "k": 0, "m": [4, 8]},
               "layers": {"m": 8, "layers": [[0], [1]]},
               "block": {"layers": [1], "width": 8, "k": [0, 8]}},
}


def build(root: Path) -> Path:
    """Write the fixtures and config.yaml under root; return the config's path."""
    fx = root / "fixtures"
    tiny_bert(fx / "tiny-bert")
    tiny_bert(fx / "tiny-bert-x10", scale=10.0)
    tiny_effnet(fx / "tiny-effnet")
    tiny_reviews(fx / "reviews.csv.bz2")
    tiny_digits(fx / "digits.csv.gz")
    tiny_jepa(fx / "jepa")
    tiny_fashion(fx / "fashion")
    config = {
        "seed": 0,
        "device": "cpu",
        "models": {
            # accuracy: what a hub model's config gives fig18 (bert-self's "finetuned" model is bert)
            "bert": {"source": "local:fixtures/tiny-bert", "format": "hf", "family": "bert", "task": "tiny",
                     "accuracy": 0.5},
            "bert-rt": {"finetune": {"from": "bert", "dataset": "reviews"}, "family": "bert", "task": "reviews"},
            "bert-x10": {"source": "local:fixtures/tiny-bert-x10", "format": "hf", "family": "bert",
                         "task": "tiny, for the PEFT stage"},
            "effnet": {"source": "local:fixtures/tiny-effnet", "format": "timm", "family": "efficientnet_lite",
                       "task": "tiny"},
            "effnet-digits": {"finetune": {"from": "effnet", "dataset": "digits"}, "family": "efficientnet_lite",
                              "task": "digits"},
            # user checkpoints (a file, and a folder holding one file); no accuracy: fig18 leaves the pair out
            "jepa": {"source": "local:fixtures/jepa/jepa-pretrain.pth", "format": "state_dict",
                     "family": "brain_jepa", "task": "tiny fMRI pretraining"},
            "jepa-ft": {"source": "local:fixtures/jepa/jepa-finetuned", "format": "state_dict",
                        "family": "brain_jepa", "task": "tiny fMRI downstream"},
        },
        "pairs": {"bert-rt": {"pretrained": "bert", "finetuned": "bert-rt"},
                  "bert-self": {"pretrained": "bert", "finetuned": "bert"},  # must align perfectly
                  "effnet-digits": {"pretrained": "effnet", "finetuned": "effnet-digits"},
                  "jepa": {"pretrained": "jepa", "finetuned": "jepa-ft"}},
        "datasets": {"reviews": {"source": "local:fixtures/reviews.csv.bz2", "format": "rotten_tomatoes"},
                     "digits": {"source": "local:fixtures/digits.csv.gz", "format": "mnist_csv"}},
        "finetune": {
            "text": {"steps": 40, "batch_size": 16, "lr": 3e-3, "weight_decay": 0.0, "warmup_frac": 0.1,
                     "max_length": 16, "eval_every": 20},
            "image": {"steps": 60, "batch_size": 16, "lr": 3e-3, "weight_decay": 0.0, "warmup_frac": 0.1,
                      "image_size": 32, "eval_every": 15},
        },
        "svd": {"rank": "all"},
        "alignment": {"max_rank": 200},
        # every test example (48 reviews, 60 digits); k = 40 exceeds every group's smallest rank (bert 32,
        # effnet 16): left out, and logged. No cross donors: the suite finetunes one model per base.
        "interventions": {"models": ["bert-rt", "effnet-digits"], "groups": ["ffn", "attn"],
                          "sources": ["pretrained", "random", "random_orthogonal", "zero"], "k": [0, 1, 4, 40],
                          "fractions": [0, 0.5, 1], "max_eval": 100, "batch_size": 64},
        "dynamics": TINY_DYNAMICS,
        "peft": TINY_PEFT,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


if __name__ == "__main__":
    import sys

    print(build(Path(sys.argv[1])))
