"""Pretraining dynamics: pretrain a ViTMAE (specbasis.dynamics.mae) on N images, snapshot the analysed matrices
every epoch, then post-train from the best checkpoint and follow how far its singular vectors move.

    pretrain(train, val, spec, settings, work_dir=, out_dir=, seed=)   -> metrics (dict); writes out_dir
    posttrain(checkpoint, mode, images, labels, settings, seed=)       -> Posttrain(alignment, curve, model)
    epoch_similarity(out_dir / "snapshots.h5")                           -> tidy |cos| table, epoch vs e−1 / final

Conventions
-----------
Matrices: W in torch Linear orientation (out, in), ids from namemaps (family vit_mae), e.g. "03.ffn_in"
(`vit.layers.3.mlp.fc1.weight`, (4d, d)); `analysed` = "last_ffn" (the encoder's last block's ffn_in and
ffn_out, the paper's) or "encoder" (every encoder matrix). SVD W = U diag(S) Vh with svd.fix_signs'
sign convention; |cos| of the i-th u (columns of U, output space) and the i-th v (rows of Vh, input
space), as specbasis.analysis.alignment does, plus the top-k subspace similarity.

Seeds: the model init uses `seed` (mae.build_mae); every other draw has its own stream derived from
(seed, k) (`STREAMS`): data order (numpy Generator, one permutation per epoch), training masks
(torch.Generator feeding ViTMAE's `noise`), validation masks (re-seeded at each evaluation, so every
epoch is validated on the same masks), the shuffled labels of classify_shuffled. Nothing draws from
torch's global generator after init (no dropout), so on CPU a rerun gives the same curves bit for bit.

Optimisation (`TrainSettings`, the paper's): AdamW (weight decay on matrices only, not on biases, norms,
tokens), per-step cosine decay to 0 after an optional linear warm-up, global grad-norm clipping; fp16
autocast + GradScaler only with amp on CUDA. Batches: a seeded permutation per epoch, the last batch
may be short.

What is resumable (`pretrain`): after the initial evaluation (epoch 0) and after every epoch, work_dir/
state.pt is replaced atomically by: model, optimizer, scheduler and grad-scaler states; the RNG states of
python, numpy, torch (and CUDA) and of the data-order and mask generators; the epoch; the best-so-far
(epoch, val loss, weights); the curves. The matrices of each epoch go to their own file, work_dir/
snapshots/epoch_EEEE.h5, also atomically, before the state. A run stopped at any moment (SIGKILL;
SIGTERM is turned into a clean exit with status 143) and started again with the same arguments resumes
after its last complete epoch and, on CPU, ends bit-identical to an uninterrupted one. A state written
by other arguments (spec, settings, seed, data) is refused. out_dir is written atomically at the end:
best/ and final/ (save_pretrained folders), snapshots.h5 (dataset /EEEE/<id> per epoch × matrix, float32,
epoch 0 = the initialisation), curves.csv, metrics.json; work_dir is then removed unless keep_work.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from specbasis.analysis.alignment import matched_cos, relative_change, subspace_similarity
from specbasis.dynamics.mae import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, LAST_FFN, MAEClassifier, MAESpec, analysed_ids,
                           as_spec, build_mae, from_mapping, mask_noise, matrices, to_pixels)
from specbasis.io.store import atomic_dir, atomic_path
from specbasis.svd import svd_batch
from specbasis.io.tables import id_columns
from specbasis.training.loop import Optimization, epoch_batches, setup_torch
from specbasis.training.loop import progress as progress_bar
from specbasis.training.settings import optimisation_problems

log = logging.getLogger(__name__)

STATE_VERSION = 1
STREAMS = {"order": 1, "mask": 2, "val_mask": 3, "shuffle": 4}  # (seed, k): one stream per kind of draw
MODES = ("classify", "reconstruct", "classify_shuffled", "fit", "fit_shuffled")  # fit*: classify on few images, long
SIM_COLUMNS = ["epoch", "reference", "layer", "kind", "side", "rank", "cos", "subspace", "dim", "displacement"]
POST_COLUMNS = ["mode", "step", "epoch", "layer", "kind", "side", "rank", "cos", "subspace", "dim"]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation of one training run; validated on construction (defaults: the paper's pretraining)."""

    epochs: int = 200               # the paper's pretraining; post-training: 10
    batch_size: int = 64
    lr: float = 1.5e-3              # peak AdamW lr (post-training reconstruct: 3e-3)
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0      # linear warm-up before the cosine (the paper states none)
    grad_clip: float = 1.0          # max global grad norm
    amp: bool = False               # fp16 autocast + GradScaler (the paper's mixed precision): CUDA only

    def __post_init__(self):
        problems = []
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs={self.epochs!r}: want an integer >= 1")
        problems += optimisation_problems(self)
        if not 0 <= self.warmup_epochs < self.epochs:
            problems.append(f"warmup_epochs={self.warmup_epochs!r}: want 0 <= warmup_epochs < epochs={self.epochs}")
        if problems:
            raise ValueError("training settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainSettings":
        return from_mapping(cls, d, "training settings")


def _settings(s: TrainSettings | Mapping) -> TrainSettings:
    return s if isinstance(s, TrainSettings) else TrainSettings.from_dict(s)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named stream of draws of a run (see STREAMS)."""
    return int(np.random.SeedSequence([seed, STREAMS[stream]]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def shuffled_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """classify_shuffled's labels: labels[perm], perm a fixed permutation drawn from (seed, "shuffle").
    The label counts are kept; which image has which label is random, and the same for every scale."""
    labels = np.asarray(labels)
    return labels[np.random.default_rng(stream_seed(seed, "shuffle")).permutation(len(labels))]


def optimization(model, s: TrainSettings, steps_per_epoch: int, dev: torch.device) -> Optimization:
    """The loop's Optimization for one run: AdamW, per-step cosine decay to 0 after `warmup_epochs` of linear
    warm-up, clipping, fp16 autocast with amp; no weight decay on the CLS and mask tokens. The fixed sin-cos
    position embeddings do not train (requires_grad False) and are left out."""
    return Optimization(model, lr=s.lr, weight_decay=s.weight_decay, total_steps=s.epochs * steps_per_epoch,
                        warmup_steps=int(round(s.warmup_epochs * steps_per_epoch)), schedule="cosine",
                        grad_clip=s.grad_clip, device=dev, amp=s.amp, no_decay_suffixes=("token",))


@torch.inference_mode()
def mae_loss(model, images: np.ndarray, seed: int, *, batch_size: int = 256, mean: float = FASHION_MNIST_MEAN,
             std: float = FASHION_MNIST_STD) -> float:
    """Mean masked-patch MSE of a ViTMAEForPreTraining over `images`, masks drawn from (seed, "val_mask")
    anew at each call (the same masks every epoch). Each batch's loss is weighted by its image count."""
    model.eval()
    dev = next(model.parameters()).device
    spec_size, num_patches = model.config.image_size, model.vit.embeddings.patch_embeddings.num_patches
    gen = torch.Generator().manual_seed(stream_seed(seed, "val_mask"))
    total = 0.0
    for idx in epoch_batches(np.arange(len(images)), batch_size):
        x = to_pixels(images[idx], spec_size, mean, std).to(dev)
        out = model(pixel_values=x, noise=mask_noise(len(idx), num_patches, gen).to(dev))
        total += float(out.loss) * len(idx)
    return total / max(1, len(images))


# ----------------------------------------------------------------------------------- pretraining

def _fingerprint(train: np.ndarray, val: np.ndarray, spec: MAESpec, s: TrainSettings, seed: int, analysed: str,
                 mean: float, std: float) -> dict:
    digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()  # noqa: E731
    return {"spec": spec.to_dict(), "settings": asdict(s), "seed": seed, "analysed": analysed, "mean": mean,
            "std": std, "n_train": len(train), "n_val": len(val), "train_sha256": digest(train),
            "val_sha256": digest(val), "train_shape": list(train.shape)}


def _rng_state(order: np.random.Generator, mask: torch.Generator) -> dict:
    st = np.random.get_state(legacy=False)
    key = torch.from_numpy(st["state"]["key"].astype(np.int64))  # a tensor: torch.load(weights_only) takes it
    return {"python": random.getstate(), "numpy": {**st, "state": {**st["state"], "key": key}},
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "order": order.bit_generator.state, "mask": mask.get_state()}


def _set_rng_state(st: dict, order: np.random.Generator, mask: torch.Generator) -> None:
    random.setstate(st["python"])
    np_state = st["numpy"]
    key = np_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**np_state, "state": {**np_state["state"], "key": key}})
    torch.set_rng_state(st["torch"])
    if st["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
    order.bit_generator.state = st["order"]
    mask.set_state(st["mask"])


def _cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _write_snapshot(path: Path, mats: Mapping[str, torch.Tensor], epoch: int) -> None:
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["epoch"] = epoch
        for key, W in mats.items():
            f.create_dataset(key, data=W.numpy())  # (out, in) float32


@contextlib.contextmanager
def _sigterm_exits():
    """While inside: SIGTERM raises SystemExit(143) in the main thread, so atomic writes clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        log.warning("SIGTERM: stopping; run again with the same arguments to resume after the last complete epoch")
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def pretrain(train_images: np.ndarray, val_images: np.ndarray, spec: MAESpec | Mapping,
             settings: TrainSettings | Mapping, *, work_dir: str | os.PathLike, out_dir: str | os.PathLike,
             seed: int, analysed: str = LAST_FFN, mean: float = FASHION_MNIST_MEAN, std: float = FASHION_MNIST_STD,
             device: str = "auto", threads: int | None = None, keep_work: bool = False,
             progress: bool = True) -> dict:
    """Pretrain a ViTMAE on uint8 `train_images` (N, H, W[, C]), validating on `val_images` every epoch;
    resume from work_dir/state.pt if a previous run with the same arguments left one. Returns the metrics
    (also out_dir/metrics.json). See the module docstring for what is written and what is resumable."""
    spec, s = as_spec(spec), _settings(settings)
    train_images, val_images = np.asarray(train_images), np.asarray(val_images)
    if len(train_images) == 0 or len(val_images) == 0:
        raise ValueError(f"pretrain needs training and validation images; got {len(train_images)} and "
                         f"{len(val_images)}")
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    dev = setup_torch(device, threads)
    t_start = time.perf_counter()
    fingerprint = _fingerprint(train_images, val_images, spec, s, seed, analysed, mean, std)

    model = build_mae(spec, seed).to(dev)
    ids = analysed_ids(model, analysed)
    steps_per_epoch = math.ceil(len(train_images) / s.batch_size)
    trainer = optimization(model, s, steps_per_epoch, dev)
    order_rng = np.random.default_rng(stream_seed(seed, "order"))
    mask_gen = torch.Generator().manual_seed(stream_seed(seed, "mask"))
    state_path, snap_dir = work_dir / "state.pt", work_dir / "snapshots"
    pix = lambda idx: to_pixels(train_images[idx], spec.image_size, mean, std).to(dev)  # noqa: E731

    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("version") != STATE_VERSION or state.get("fingerprint") != fingerprint:
            changed = sorted(k for k in fingerprint if state.get("fingerprint", {}).get(k) != fingerprint[k])
            raise ValueError(f"{state_path} is the state of a different run (differs in: {changed or ['version']}); "
                             f"delete {work_dir} to start afresh, or rerun with that run's arguments")
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        _set_rng_state(state["rng"], order_rng, mask_gen)
        epoch, best, curves, timing = state["epoch"], state["best"], state["curves"], state["timing"]
        resumed = state["resumed"] + [epoch]
        for stale in snap_dir.glob("epoch_*.h5"):  # written after the state we resume from
            if int(stale.stem.split("_")[1]) > epoch:
                stale.unlink()
        log.info("resuming %s after epoch %d of %d (best so far: epoch %d, val loss %.5f)", work_dir, epoch,
                 s.epochs, best["epoch"], best["val_loss"])
    else:
        epoch, resumed, timing = 0, [], []
        val0 = mae_loss(model, val_images, seed, mean=mean, std=std)
        curves = [{"epoch": 0, "train_loss": None, "val_loss": val0, "lr": trainer.lr()}]
        best = {"epoch": 0, "val_loss": val0, "model": _cpu_state(model)}
        _write_snapshot(snap_dir / "epoch_0000.h5", matrices(model, ids), 0)

    def save_state():
        state = {"version": STATE_VERSION, "fingerprint": fingerprint, "epoch": epoch, "model": _cpu_state(model),
                 "trainer": trainer.state_dict(), "rng": _rng_state(order_rng, mask_gen), "best": best,
                 "curves": curves, "timing": timing, "resumed": resumed}
        with atomic_path(state_path) as tmp:
            torch.save(state, tmp)

    log.info("pretrain MAE %s on %d images (val %d), %d epochs x %d steps, device %s, %d threads", spec.to_dict(),
             len(train_images), len(val_images), s.epochs, steps_per_epoch, dev, torch.get_num_threads())
    with _sigterm_exits():
        if not resumed:
            save_state()
        bar = progress_bar(range(epoch + 1, s.epochs + 1), desc=f"MAE pretrain N={len(train_images)}", unit="epoch",
                           initial=epoch, total=s.epochs, disable=not progress, mininterval=0.1)
        for epoch in bar:
            model.train()
            t0, total = time.perf_counter(), 0.0
            order = order_rng.permutation(len(train_images))
            for i, idx in enumerate(epoch_batches(order, s.batch_size)):
                noise = mask_noise(len(idx), spec.num_patches, mask_gen).to(dev)
                with trainer.autocast():
                    loss = model(pixel_values=pix(idx), noise=noise).loss
                total += trainer.step(loss, f"epoch {epoch}, batch {i}") * len(idx)
            seconds = time.perf_counter() - t0
            val = mae_loss(model, val_images, seed, mean=mean, std=std)
            curves.append({"epoch": epoch, "train_loss": total / len(train_images), "val_loss": val,
                           "lr": trainer.lr()})
            timing.append({"epoch": epoch, "seconds": seconds, "images_per_s": len(train_images) / seconds})
            if val < best["val_loss"]:
                best = {"epoch": epoch, "val_loss": val, "model": _cpu_state(model)}
            _write_snapshot(snap_dir / f"epoch_{epoch:04d}.h5", matrices(model, ids), epoch)
            save_state()
            bar.set_postfix(train=f"{curves[-1]['train_loss']:.4f}", val=f"{val:.4f}",
                            img_s=f"{timing[-1]['images_per_s']:.0f}", refresh=False)
            log.info("epoch %d/%d: train loss %.5f, val loss %.5f, %.0f images/s", epoch, s.epochs,
                     curves[-1]["train_loss"], val, timing[-1]["images_per_s"])
        bar.close()
        train_s = sum(t["seconds"] for t in timing)
        metrics = {
            "spec": spec.to_dict(), "settings": asdict(s), "seed": seed, "analysed": analysed, "matrix_ids": ids,
            "n_train": len(train_images), "n_val": len(val_images), "steps_per_epoch": steps_per_epoch,
            "best_epoch": best["epoch"], "best_val_loss": best["val_loss"], "final_val_loss": curves[-1]["val_loss"],
            "curves": curves, "timing": timing,
            "images_per_s": len(train_images) * len(timing) / train_s if train_s else None,
            "resumed_after_epochs": resumed, "device": str(dev), "threads": torch.get_num_threads(),
            "seconds_this_call": time.perf_counter() - t_start, "data_sha256": fingerprint["train_sha256"],
            "versions": _versions(),
        }
        _write_pretrain_outputs(out_dir, model, best, snap_dir, ids, metrics)
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    log.info("pretrained: best epoch %d (val loss %.5f), final val loss %.5f, %.0f images/s -> %s",
             best["epoch"], best["val_loss"], metrics["final_val_loss"], metrics["images_per_s"] or 0, out_dir)
    return metrics


def _write_pretrain_outputs(out_dir: Path, model, best: dict, snap_dir: Path, ids: list[str], metrics: dict) -> None:
    import h5py

    final = copy.deepcopy(model).cpu()
    with atomic_dir(out_dir) as tmp:
        final.save_pretrained(tmp / "final")
        final.load_state_dict(best["model"])
        final.save_pretrained(tmp / "best")
        with h5py.File(tmp / "snapshots.h5", "w") as dst:
            dst.attrs.update(convention="W in torch Linear orientation (out, in); group EEEE = after epoch EEEE "
                                        "(0000: the initialisation)",
                             matrix_ids=json.dumps(ids), best_epoch=best["epoch"], seed=metrics["seed"],
                             n_train=metrics["n_train"],
                             spec=json.dumps(metrics["spec"]))
            for e in range(len(metrics["curves"])):
                with h5py.File(snap_dir / f"epoch_{e:04d}.h5", "r") as src:
                    g = dst.create_group(f"{e:04d}")
                    for key in ids:
                        g.create_dataset(key, data=src[key][()])
        pd.DataFrame(metrics["curves"]).to_csv(tmp / "curves.csv", index=False)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def load_mae(folder: str | os.PathLike):
    """A ViTMAEForPreTraining saved by `pretrain` (out_dir/best or out_dir/final), on CPU, in eval mode."""
    from transformers import ViTMAEForPreTraining

    return ViTMAEForPreTraining.from_pretrained(folder).eval()


def _versions() -> dict:
    import importlib.metadata as md

    return {"python": platform.python_version(), **{lib: md.version(lib) for lib in ("torch", "transformers")}}


# ---------------------------------------------------------------------------------- similarity

def _svds(stack: np.ndarray, max_rank: int | None):
    """Float32 U (B, m, K), S, Vh (B, K, n) of a (B, m, n) stack, sign-fixed (svd.fix_signs), as numpy."""
    U, S, Vh = svd_batch(torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)), max_rank, "gram")
    return U.numpy(), S.numpy(), Vh.numpy()


def _compare(key: str, U0, Vh0, U1, Vh1, **cols) -> list[pd.DataFrame]:
    """Rows of matched |cos| and top-k subspace similarity of u (columns of U) and v (rows of Vh)."""
    r = U0.shape[1]
    out = []
    for side, A, B in (("u", U0, U1), ("v", Vh0.T, Vh1.T)):  # (dim, r)
        out.append(pd.DataFrame({**cols, **id_columns(key), "side": side, "rank": np.arange(1, r + 1),
                                 "cos": matched_cos(A, B, axis=0), "subspace": subspace_similarity(A, B),
                                 "dim": A.shape[0]}))
    return out


def epoch_similarity(snapshots, max_rank: int | None = None) -> pd.DataFrame:
    """Tidy table of how the analysed matrices' singular vectors move between pretraining epochs.

    snapshots: the snapshots.h5 that `pretrain` writes, or a mapping {epoch: {id: W (out, in)}}.
    For every matrix id, epoch e >= 1 and side (u, v) and rank 1..max_rank: reference "previous"
    compares epoch e with e − 1; reference "final" compares every epoch e >= 0 with the last one (1 at
    the last). Columns: SIM_COLUMNS (cos = matched |cos|, subspace = top-k subspace similarity, displacement = the
    matrix's relative change ‖W_e − W_ref‖_F / ‖W_ref‖_F against the same reference: fig4's schedule control, since
    a learning rate going to zero shrinks the step between epochs whether or not the basis settles)."""
    import h5py

    with contextlib.ExitStack() as stack:
        if isinstance(snapshots, Mapping):
            data = {int(e): mats for e, mats in snapshots.items()}
        else:
            f = stack.enter_context(h5py.File(snapshots, "r"))
            data = {int(e): f[e] for e in f.keys()}
        epochs = sorted(data)
        if not epochs:
            return pd.DataFrame(columns=SIM_COLUMNS)
        ids = list(data[epochs[0]].keys())
        frames = []
        for key in ids:
            W = np.stack([np.asarray(data[e][key], dtype=np.float64) for e in epochs])
            U, _, Vh = _svds(W, max_rank)  # (E, m, K), (E, K, n)
            last = len(epochs) - 1
            for i, e in enumerate(epochs):
                if i > 0:
                    frames += _compare(key, U[i - 1], Vh[i - 1], U[i], Vh[i], epoch=e, reference="previous",
                                       displacement=relative_change(W[i - 1], W[i]))
                frames += _compare(key, U[last], Vh[last], U[i], Vh[i], epoch=e, reference="final",
                                   displacement=relative_change(W[last], W[i]))
    return pd.concat(frames, ignore_index=True)[SIM_COLUMNS]


# --------------------------------------------------------------------------------- post-training

class Posttrain(NamedTuple):
    alignment: pd.DataFrame  # POST_COLUMNS: |cos| to the checkpoint's singular vectors over the steps
    curve: pd.DataFrame      # step, epoch, loss (and accuracy of the batch, when classifying)
    model: torch.nn.Module   # the post-trained model (ViTMAEForPreTraining or MAEClassifier), on CPU
    train_accuracy: float | None = None  # classifying: accuracy on every training image and its label, at the end


def posttrain(checkpoint, mode: str, images: np.ndarray, labels: np.ndarray | None = None,
              settings: TrainSettings | Mapping = TrainSettings(epochs=10), *, seed: int,
              analysed: str = LAST_FFN, track_every: int = 10, max_rank: int | None = None,
              num_classes: int | None = None, mean: float = FASHION_MNIST_MEAN, std: float = FASHION_MNIST_STD,
              device: str = "auto", threads: int | None = None, progress: bool = True) -> Posttrain:
    """Train on from a pretrained MAE and track |cos| of the analysed matrices' singular vectors to the
    checkpoint's, at step 0 (where it is 1), every `track_every` steps and at the last step.

    checkpoint: a folder `pretrain` wrote (out_dir/best) or a ViTMAEForPreTraining (copied, not changed).
    mode: "reconstruct" (the MAE objective on `images`, decoder kept, masks from (seed, "mask")),
    "classify" (MAEClassifier: the encoder's weights, a fresh linear head from `seed`, cross-entropy
    on `labels`), "classify_shuffled" (the same with `shuffled_labels(labels, seed)`); "fit" and "fit_shuffled"
    train as classify and classify_shuffled do (the workflow gives them few images and many epochs, so that the
    labels, shuffled ones too, are fitted). Classifying, `train_accuracy` is measured after the last step, in eval
    mode, on every image against the label it trained on."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: allowed {', '.join(MODES)}")
    if not (isinstance(track_every, int) and track_every >= 1):
        raise ValueError(f"track_every={track_every!r}: want an integer >= 1")
    s = _settings(settings)
    images = np.asarray(images)
    dev = setup_torch(device, threads)
    mae = load_mae(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else copy.deepcopy(checkpoint)
    mae = mae.cpu()
    ids = analysed_ids(mae, analysed)
    ref = {k: _svds(W.numpy()[None], max_rank) for k, W in matrices(mae, ids).items()}
    if mode == "reconstruct":
        model = mae
        y = None
    else:
        if labels is None or len(labels) != len(images):
            raise ValueError(f"mode {mode} needs one label per image; got {None if labels is None else len(labels)} "
                             f"labels for {len(images)} images")
        y = np.asarray(labels, dtype=np.int64)
        y = shuffled_labels(y, seed) if is_shuffled(mode) else y
        num_classes = num_classes or int(y.max()) + 1
        model = MAEClassifier.from_mae(mae, num_classes, seed)
    model.to(dev)
    spec_size = mae.config.image_size
    num_patches = mae.vit.embeddings.patch_embeddings.num_patches
    steps_per_epoch = math.ceil(len(images) / s.batch_size)
    trainer = optimization(model, s, steps_per_epoch, dev)
    order_rng = np.random.default_rng(stream_seed(seed, "order"))
    mask_gen = torch.Generator().manual_seed(stream_seed(seed, "mask"))
    rows: list[pd.DataFrame] = []
    curve: list[dict] = []

    def track(step: int):
        for key, W in matrices(model, ids).items():
            U0, _, Vh0 = ref[key]
            U1, _, Vh1 = _svds(W.numpy()[None], max_rank)
            rows.extend(_compare(key, U0[0], Vh0[0], U1[0], Vh1[0], mode=mode, step=step,
                                 epoch=step / steps_per_epoch))

    track(0)
    step, total = 0, s.epochs * steps_per_epoch
    bar = progress_bar(total=total, desc=f"post-train {mode}", unit="step", disable=not progress)
    for epoch in range(1, s.epochs + 1):
        model.train()
        for idx in epoch_batches(order_rng.permutation(len(images)), s.batch_size):
            x = to_pixels(images[idx], spec_size, mean, std).to(dev)
            with trainer.autocast():
                if mode == "reconstruct":
                    loss = model(pixel_values=x, noise=mask_noise(len(idx), num_patches, mask_gen).to(dev)).loss
                    acc = None
                else:
                    logits = model(x)
                    target = torch.as_tensor(y[idx], device=dev)
                    loss = F.cross_entropy(logits.float(), target)
                    acc = float((logits.argmax(1) == target).float().mean())
            step += 1
            value = trainer.step(loss, f"{mode} step {step}")
            curve.append({"step": step, "epoch": step / steps_per_epoch, "loss": value,
                          **({} if acc is None else {"accuracy": acc})})
            if step % track_every == 0 or step == total:
                track(step)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", refresh=False)
    bar.close()
    table = pd.concat(rows, ignore_index=True)[POST_COLUMNS]
    accuracy = None
    if y is not None:
        model.eval()
        with torch.no_grad():
            right = sum(int((model(to_pixels(images[idx], spec_size, mean, std).to(dev)).argmax(1).cpu().numpy()
                             == y[idx]).sum()) for idx in epoch_batches(np.arange(len(images)), s.batch_size))
        accuracy = right / len(images)
    return Posttrain(table, pd.DataFrame(curve), model.cpu().eval(), accuracy)


def is_shuffled(mode: str) -> bool:
    """A post-training mode that trains on shuffled labels (classify_shuffled, fit_shuffled)."""
    return mode.endswith("_shuffled")
