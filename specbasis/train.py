"""Full finetuning of a prepared pretrained model on a labelled data set: the finetuned half of a pair.

Every weight trains (no adapter, nothing frozen): AdamW, linear warm-up then linear decay to 0,
gradient-norm clipping, cross-entropy. Weight decay applies to matrices and conv kernels only (not
to biases and norm scales), as is usual for both BERT and EfficientNet finetuning. Everything is
seeded (python, numpy, torch, the batch order), so a rerun on CPU gives the same loss curve.

The output folder is written atomically (a temporary folder beside it, renamed at the end) and holds
the model in its library's own format, `preprocess.json` (how inputs were made) and `metrics.json`.
Before the rename the saved model is loaded back and must reproduce the trained model's logits.
"""
from __future__ import annotations

import json
import logging
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from specbasis.data import Part, Splits
from specbasis.device import resolve_device
from specbasis.models import PREPROCESS_FILE, load_classifier, logits_of, save_weights, timm_config
from specbasis.store import atomic_dir

log = logging.getLogger(__name__)

GRAD_CLIP = 1.0  # max global grad norm: keeps the first steps of a fresh head from wrecking the backbone
RELOAD_ATOL = 1e-4  # saved-and-reloaded logits must match the trained model's to this
N_LOGITS_RECORDED = 8  # test examples whose final logits go into metrics.json (a reload check for anyone)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_linear(step: int, total: int, warmup: int) -> float:
    """LR multiplier: 0 -> 1 over `warmup` steps, then 1 -> 0 linearly at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def batch_order(n: int, steps: int, batch_size: int, rng: np.random.Generator):
    """Yield `steps` index batches: epochs of seeded permutations, read straight through."""
    buffer = np.zeros(0, np.int64)
    for _ in range(steps):
        while len(buffer) < batch_size:
            buffer = np.concatenate([buffer, rng.permutation(n)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def _to(inputs, device):
    if isinstance(inputs, dict):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)


def _select(x, idx):
    return [x[i] for i in idx] if isinstance(x, list) else x[idx]


@torch.inference_mode()
def predict_logits(model, preprocess, x, device, batch_size: int = 128) -> torch.Tensor:
    """(N, C) logits in eval mode. Texts are batched by length (less padding), then put back in order."""
    model.eval()
    n = len(x)
    order = np.argsort([len(t) for t in x], kind="stable") if isinstance(x, list) else np.arange(n)
    out = torch.empty(n, dtype=torch.float32) if n else torch.zeros(0)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        logits = logits_of(model, _to(preprocess(_select(x, idx)), device)).float().cpu()
        if start == 0:
            out = torch.empty(n, logits.shape[1])
        out[torch.as_tensor(idx)] = logits
    return out


def accuracy(model, preprocess, part: Part, device, batch_size: int = 128) -> float:
    logits = predict_logits(model, preprocess, part.x, device, batch_size)
    return float((logits.argmax(1).numpy() == part.y).mean())


def _optimizer(model, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, foreach=True)


def save_finetuned(model, preprocess, splits: Splits, base_dir: Path, out: Path) -> None:
    """The finetuned model in its library's own format, plus preprocess.json."""
    if splits.modality == "text":
        model.config.id2label = dict(enumerate(splits.classes))
        model.config.label2id = {c: i for i, c in enumerate(splits.classes)}
        model.save_pretrained(out)  # model.safetensors + config.json, transformers names
        preprocess.tokenizer.save_pretrained(out)
    else:
        base = json.loads((Path(base_dir) / "config.json").read_text())
        extra = {k: v for k, v in base.items()
                 if k not in ("library", "architecture", "num_classes", "num_features", "pretrained_cfg",
                              "label_names")}
        config = timm_config(model, base["architecture"], **extra)
        config["pretrained_cfg"] = {**base.get("pretrained_cfg", {}), **config["pretrained_cfg"]}
        config["label_names"] = list(splits.classes)
        save_weights(model.state_dict(), out / "model.safetensors")  # timm names
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / PREPROCESS_FILE).write_text(json.dumps(preprocess.describe(), indent=2) + "\n")


def finetune(base_dir: Path, family: str, splits: Splits, out_dir: Path, *, steps: int, batch_size: int,
             lr: float, weight_decay: float, warmup_frac: float, max_length: int = 128, image_size: int = 64,
             eval_every: int, seed: int, device: str = "auto", threads: int | None = None,
             eval_step0: bool = True, eval_batch_size: int = 128) -> dict:
    """Finetune all weights of the model in base_dir on `splits`; write out_dir; return the metrics.

    max_length applies to text models, image_size to image models. Val accuracy is measured every
    `eval_every` steps and at the end; test accuracy at the end (and at step 0, pretrained backbone
    with a fresh head, when eval_step0). The splits are used as given: cap them in load_splits.
    """
    t_start = time.perf_counter()
    if steps < 1 or batch_size < 1 or lr <= 0 or not 0 <= warmup_frac <= 1 or eval_every < 1:
        raise ValueError(f"bad settings: steps={steps}, batch_size={batch_size}, lr={lr}, "
                         f"warmup_frac={warmup_frac}, eval_every={eval_every}")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if dev.type == "cpu":
        # Adam's second moments and small gradients underflow into denormal floats, which x86 CPUs
        # handle in microcode: measured here, an EfficientNet step went from 0.35 s to over 3 s.
        torch.set_flush_denormal(True)
    seed_everything(seed)  # before building the model: the fresh head's init is seeded too
    model, preprocess = load_classifier(base_dir, family, splits.num_classes, image_size=image_size,
                                        max_length=max_length)
    model.to(dev)
    log.info("finetune %s from %s on %s (%s): %s examples, device %s, %d threads", family, base_dir,
             splits.classes, splits.modality, splits.sizes(), dev, torch.get_num_threads())

    step0 = accuracy(model, preprocess, splits.test, dev, eval_batch_size) if eval_step0 else None
    optimizer = _optimizer(model, lr, weight_decay)
    warmup = int(round(warmup_frac * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_linear(s, steps, warmup))

    rng = np.random.default_rng(seed)
    losses, val_curve = [], []
    t_train, cpu_train = time.perf_counter(), time.process_time()
    bar = tqdm(batch_order(len(splits.train), steps, batch_size, rng), total=steps, desc=f"finetune {family}",
               mininterval=2.0)
    for step, idx in enumerate(bar, start=1):
        model.train()
        inputs = _to(preprocess(_select(splits.train.x, idx)), dev)
        target = torch.as_tensor(splits.train.y[idx], device=dev)
        loss = F.cross_entropy(logits_of(model, inputs), target)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}: lower lr (now {lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        schedule.step()
        losses.append([step, float(loss.item())])
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if step % eval_every == 0 and step < steps:
            val_curve.append([step, accuracy(model, preprocess, splits.val, dev, eval_batch_size)])
            log.info("step %d: loss %.4f, val accuracy %.4f", step, loss.item(), val_curve[-1][1])
    bar.close()
    seconds_train = time.perf_counter() - t_train
    cpu_seconds_train = time.process_time() - cpu_train  # summed over threads; wall time is inflated by other load

    val_acc = accuracy(model, preprocess, splits.val, dev, eval_batch_size)
    val_curve.append([steps, val_acc])
    test_logits = predict_logits(model, preprocess, splits.test.x, dev, eval_batch_size)
    test_acc = float((test_logits.argmax(1).numpy() == splits.test.y).mean())
    counts = np.bincount(splits.test.y, minlength=splits.num_classes)
    metrics = {
        "family": family, "base_dir": str(base_dir), "modality": splits.modality,
        "classes": list(splits.classes), "num_classes": splits.num_classes,
        "test_accuracy": test_acc, "val_accuracy": val_acc, "step0_test_accuracy": step0,
        "chance_accuracy": 1.0 / splits.num_classes,
        "majority_accuracy": float(counts.max() / max(1, counts.sum())),  # always guessing the commonest class
        "loss_curve": losses, "val_curve": val_curve,
        "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "warmup_frac": warmup_frac, "warmup_steps": warmup, "grad_clip": GRAD_CLIP, "eval_every": eval_every,
        **({"max_length": max_length} if splits.modality == "text" else {"image_size": image_size}),
        "seed": seed, "device": str(dev), "threads": torch.get_num_threads(),
        "sizes": splits.sizes(), "full_sizes": dict(splits.full_sizes),
        "seconds_train": seconds_train, "cpu_seconds_train": cpu_seconds_train,
        "versions": _versions(splits.modality),
    }
    model.cpu()
    head = _select(splits.test.x, np.arange(min(N_LOGITS_RECORDED, len(splits.test))))
    expected = predict_logits(model, preprocess, head, torch.device("cpu"))  # on CPU, like the reload
    metrics["test_logits_head"] = expected.tolist()  # first test examples: anyone can check a reload
    with atomic_dir(out_dir) as tmp:
        save_finetuned(model, preprocess, splits, base_dir, tmp)
        metrics["reload_max_abs_diff"] = _reload_check(tmp, family, splits.num_classes, head, expected)
        metrics["seconds"] = time.perf_counter() - t_start
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("test accuracy %.4f (step 0: %s, chance %.3f) in %.0f s -> %s", test_acc, step0,
             1.0 / splits.num_classes, metrics["seconds"], out_dir)
    return metrics


def _reload_check(folder: Path, family: str, num_classes: int, x, expected: torch.Tensor) -> float:
    """Load the saved model back and compare its logits on x with the trained model's."""
    model, preprocess = load_classifier(folder, family, num_classes)
    got = predict_logits(model, preprocess, x, torch.device("cpu"))
    diff = float((got - expected).abs().max()) if len(expected) else 0.0
    if not diff <= RELOAD_ATOL:
        raise AssertionError(f"{folder}: the saved model does not reproduce the trained logits "
                             f"(max abs diff {diff:.3g} > {RELOAD_ATOL})")
    return diff


def _versions(kind: str) -> dict:
    import importlib.metadata as md

    libs = ["torch", "transformers", "tokenizers"] if kind == "text" else ["torch", "timm"]
    return {"python": platform.python_version(), **{lib: md.version(lib) for lib in libs}}
