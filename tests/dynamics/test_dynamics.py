"""Pretraining dynamics (specbasis.dynamics.train): tiny MAE runs on synthetic images, resumed after kills."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from specbasis.analysis.alignment import random_cos
from specbasis.dynamics.train import (MODES, POST_COLUMNS, SIM_COLUMNS, TrainSettings, epoch_similarity,
                                load_mae, posttrain, pretrain, shuffled_labels)
from specbasis.dynamics.mae import FASHION_MNIST_MEAN, FASHION_MNIST_STD, MAESpec, matrices, to_pixels
from specbasis.training.loop import warmup_cosine

REPO = Path(__file__).resolve().parents[2]
SPEC = MAESpec(image_size=16, patch_size=4, num_channels=1, hidden_size=16, num_layers=2, num_heads=2,
               decoder_hidden_size=8, decoder_layers=1, decoder_heads=2)
SETTINGS = TrainSettings(epochs=4, batch_size=16, lr=3e-3)
N_TRAIN, N_VAL = 192, 64  # 12 steps an epoch
IDS = ["01.ffn_in", "01.ffn_out"]


def _images(n: int, seed: int, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Plane waves of random frequency, direction and phase (uint8), labelled 1 where the wave runs
    more along x than along y."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    f = rng.uniform(0.3, 2.5, (n, 2))[:, :, None, None]
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    img = 127.5 * (1 + np.sin(2 * np.pi * (f[:, 0] * xx + f[:, 1] * yy) + phase))
    return img.astype(np.uint8), (f[:, 0, 0, 0] > f[:, 1, 0, 0]).astype(np.int64)


TRAIN, _ = _images(N_TRAIN, 0)
VAL, _ = _images(N_VAL, 1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run (1 thread, like the subprocesses below)."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("reference")
    try:
        metrics = pretrain(TRAIN, VAL, SPEC, SETTINGS, work_dir=root / "work", out_dir=root / "out", seed=0,
                           threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "out", metrics


# --------------------------------------------------------------------------------------- settings

@pytest.mark.parametrize("change, words", [
    ({"epochs": 0}, "epochs=0"), ({"batch_size": 1.5}, "batch_size=1.5"), ({"lr": 0}, "lr=0"),
    ({"weight_decay": -1}, "weight_decay=-1"), ({"warmup_epochs": 4}, "warmup_epochs=4"),
    ({"grad_clip": 0}, "grad_clip=0"),
])
def test_settings_reject_bad_values(change, words):
    with pytest.raises(ValueError, match=words):
        TrainSettings(**{**SETTINGS.__dict__, **change})
    with pytest.raises(ValueError, match="unknown key"):
        TrainSettings.from_dict({"epoch": 3})


def test_cosine_schedule():
    assert warmup_cosine(0, 100, 0) == 1.0 and warmup_cosine(50, 100, 0) == pytest.approx(0.5) and warmup_cosine(100, 100, 0) == 0
    assert [warmup_cosine(s, 100, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_amp_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="amp .* needs a CUDA device"):
        pretrain(TRAIN, VAL, SPEC, TrainSettings(epochs=1, amp=True), work_dir=tmp_path / "w", out_dir=tmp_path / "o",
                 seed=0, device="cpu", progress=False)


def test_shuffled_labels_are_a_fixed_seeded_permutation():
    y = np.arange(200) % 10
    a, b, c = shuffled_labels(y, 0), shuffled_labels(y, 0), shuffled_labels(y, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, y)
    assert np.array_equal(np.bincount(a), np.bincount(y))
    assert (a == y).mean() < 0.25  # about 1/10 agree by chance


# ------------------------------------------------------------------------------------ pretraining

def test_pretrain_loss_falls_and_outputs(reference):
    out, m = reference
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.epoch) == list(range(SETTINGS.epochs + 1)) and np.isnan(curves.train_loss[0])
    assert curves.train_loss.iloc[-1] < 0.8 * curves.train_loss[1]
    assert curves.val_loss.iloc[-1] < 0.8 * curves.val_loss[0]
    assert m["best_epoch"] == int(curves.val_loss.idxmin()) and m["best_val_loss"] == curves.val_loss.min()
    assert m["images_per_s"] > 0 and len(m["timing"]) == SETTINGS.epochs and m["resumed_after_epochs"] == []
    assert m["matrix_ids"] == IDS and json.loads((out / "metrics.json").read_text())["curves"] == m["curves"]
    assert not (out.parent / "work").exists()  # removed once out_dir is whole (keep_work=False)
    with h5py.File(out / "snapshots.h5", "r") as f:
        assert sorted(f) == [f"{e:04d}" for e in range(SETTINGS.epochs + 1)]
        assert all(sorted(f[e]) == IDS for e in f)
        assert f[f"{SETTINGS.epochs:04d}/01.ffn_in"].shape == (64, 16)  # (out, in)
        best, final = matrices(load_mae(out / "best"), IDS), matrices(load_mae(out / "final"), IDS)
        for key in IDS:
            assert np.array_equal(f[f"{m['best_epoch']:04d}/{key}"][()], best[key].numpy())
            assert np.array_equal(f[f"{SETTINGS.epochs:04d}/{key}"][()], final[key].numpy())
        assert not np.array_equal(f["0000/01.ffn_in"][()], f[f"{SETTINGS.epochs:04d}/01.ffn_in"][()])


def test_state_of_another_run_is_refused_and_a_finished_state_resumes(tmp_path):
    kw = dict(work_dir=tmp_path / "work", out_dir=tmp_path / "out", threads=1, progress=False)
    one = TrainSettings(epochs=1, batch_size=64)
    first = pretrain(TRAIN[:64], VAL[:16], SPEC, one, seed=0, keep_work=True, **kw)
    with pytest.raises(ValueError, match=r"different run \(differs in: \['seed'\]\)"):
        pretrain(TRAIN[:64], VAL[:16], SPEC, one, seed=1, **kw)
    with pytest.raises(ValueError, match=r"differs in: \['n_train', 'train_sha256', 'train_shape'\]"):
        pretrain(TRAIN[:32], VAL[:16], SPEC, one, seed=0, **kw)
    again = pretrain(TRAIN[:64], VAL[:16], SPEC, one, seed=0, **kw)  # killed after the last epoch: outputs only
    assert again["resumed_after_epochs"] == [1] and again["curves"] == first["curves"]
    assert not (tmp_path / "work").exists()


def test_same_seed_same_curves(tmp_path):
    one = TrainSettings(epochs=2, batch_size=32)
    runs = [pretrain(TRAIN[:64], VAL[:16], SPEC, one, seed=seed, work_dir=tmp_path / f"w{i}",
                     out_dir=tmp_path / f"o{i}", threads=1, progress=False)["curves"]
            for i, seed in enumerate((0, 0, 1))]
    assert runs[0] == runs[1] and runs[0] != runs[2]


CHILD = """
import json, sys, time
import specbasis.dynamics.train as d
from specbasis.dynamics.mae import MAESpec
import numpy as np
data, work, out, marker, stop_at, spec, settings = sys.argv[1:]
stop_at = int(stop_at)
if stop_at:  # hang in the stop_at-th training forward pass (mid-epoch) until killed, after writing a marker
    build = d.build_mae
    def build_and_hook(*args):
        model, calls = build(*args), [0]
        def pre(module, a, kw):
            if module.training:
                calls[0] += 1
                if calls[0] == stop_at:
                    open(marker, "w").close()
                    time.sleep(120)
        model.register_forward_pre_hook(pre, with_kwargs=True)
        return model
    d.build_mae = build_and_hook
arrays = np.load(data)
d.pretrain(arrays["train"], arrays["val"], json.loads(spec), json.loads(settings), work_dir=work, out_dir=out,
           seed=0, threads=1, progress=False)
"""


def _child(tmp_path: Path, stop_at: int) -> subprocess.Popen:
    script, data = tmp_path / "child.py", tmp_path / "data.npz"
    script.write_text(CHILD)
    np.savez(data, train=TRAIN, val=VAL)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [data, tmp_path / "work", tmp_path / "out", tmp_path / "marker", stop_at,
            json.dumps(SPEC.to_dict()), json.dumps(SETTINGS.__dict__)]
    return subprocess.Popen([sys.executable, script, *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_mid_epoch_resumes_bit_identical(tmp_path, reference, sig):
    steps = -(-N_TRAIN // SETTINGS.batch_size)
    proc = _child(tmp_path, stop_at=2 * steps + 5)  # the 5th batch of epoch 3
    deadline = time.monotonic() + 240
    while not (tmp_path / "marker").exists():
        assert proc.poll() is None, f"the run ended before it was killed:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "the run never reached epoch 3"
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    rc = proc.wait(60)
    log = proc.stdout.read()
    if sig == signal.SIGTERM:  # a clean exit: status 143, no temporary file left behind
        assert rc == 143, log
        assert "SIGTERM: stopping" in log and not list((tmp_path / "work").rglob(".*.tmp"))
    else:
        assert rc == -signal.SIGKILL
    state = torch.load(tmp_path / "work" / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "work" / "snapshots").glob("*.h5")) == \
        [f"epoch_{e:04d}.h5" for e in range(3)]

    done = _child(tmp_path, stop_at=0)
    assert done.wait(240) == 0, done.stdout.read()
    ref_out, ref = reference
    got = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert got["resumed_after_epochs"] == [2]
    assert got["curves"] == ref["curves"] and got["best_epoch"] == ref["best_epoch"]  # bit-identical floats
    for folder in ("final", "best"):
        a = load_file(ref_out / folder / "model.safetensors")
        b = load_file(tmp_path / "out" / folder / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder
    with h5py.File(ref_out / "snapshots.h5", "r") as f, h5py.File(tmp_path / "out" / "snapshots.h5", "r") as g:
        assert all(np.array_equal(f[e][k][()], g[e][k][()]) for e in f for k in f[e])


# ---------------------------------------------------------------------------------- similarities

def test_epoch_similarity_of_known_matrices():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(40, 30)).astype(np.float32)
    other = rng.normal(size=(40, 30)).astype(np.float32)
    table = epoch_similarity({0: {"00.ffn_in": W}, 1: {"00.ffn_in": W.copy()}, 2: {"00.ffn_in": other}})
    assert list(table.columns) == SIM_COLUMNS
    prev = table[table.reference == "previous"]
    assert sorted(prev.epoch.unique()) == [1, 2]
    same = prev[prev.epoch == 1]
    assert len(same) == 2 * 30 and np.allclose(same.cos, 1, atol=1e-6) and np.allclose(same.subspace, 1, atol=1e-6)
    fresh = prev[prev.epoch == 2]
    for side, dim in (("u", 40), ("v", 30)):
        assert abs(fresh[fresh.side == side].cos.mean() / random_cos(dim) - 1) < 0.35
    final = table[table.reference == "final"]
    assert sorted(final.epoch.unique()) == [0, 1, 2] and np.allclose(final[final.epoch == 2].cos, 1, atol=1e-6)
    # displacement: the matrix's relative change against the same reference (fig4's schedule control)
    assert np.allclose(same.displacement, 0) and np.allclose(final[final.epoch == 2].displacement, 0)
    assert np.allclose(fresh.displacement, np.linalg.norm(other - W) / np.linalg.norm(W), rtol=1e-6)
    scaled = epoch_similarity({0: {"00.ffn_in": W}, 1: {"00.ffn_in": 1.1 * W}})
    moved = scaled[scaled.reference == "previous"]
    assert np.allclose(moved.displacement, 0.1, rtol=1e-5) and np.allclose(moved.cos, 1, atol=1e-6)


def test_epoch_similarity_of_a_pretraining_run(reference):
    out, _ = reference
    table = epoch_similarity(out / "snapshots.h5", max_rank=5)
    E = SETTINGS.epochs
    assert set(table.kind) == {"ffn_in", "ffn_out"} and set(table["rank"]) == set(range(1, 6))
    assert len(table) == 2 * 2 * 5 * (E + E + 1)  # ids × sides × ranks × (previous: 1..E, final: 0..E)
    last = table[(table.reference == "final") & (table.epoch == E)]
    assert np.allclose(last.cos, 1, atol=1e-6)
    assert table.cos.between(0, 1 + 1e-6).all()


# -------------------------------------------------------------------------------- post-training

def test_posttrain_starts_at_one_and_is_seeded(reference):
    out, _ = reference
    images, labels = _images(96, 2)
    settings = TrainSettings(epochs=2, batch_size=16, lr=3e-3)  # 6 steps an epoch
    kw = dict(seed=0, track_every=5, threads=1, progress=False)
    results = {mode: posttrain(out / "best", mode, images, labels, settings, **kw) for mode in MODES}
    for mode, r in results.items():
        t = r.alignment
        assert list(t.columns) == POST_COLUMNS and set(t["mode"]) == {mode}
        assert sorted(t.step.unique()) == [0, 5, 10, 12]
        start = t[t.step == 0]
        assert len(start) == 2 * (16 + 16) and np.allclose(start.cos, 1, atol=1e-6), mode  # every rank, u and v
        assert t[t.step == 12].cos.mean() < 1 - 1e-4, mode  # it did move
        assert len(r.curve) == 12 and np.isfinite(r.curve.loss).all()
    assert "accuracy" in results["classify"].curve and "accuracy" not in results["reconstruct"].curve
    assert type(results["reconstruct"].model).__name__ == "ViTMAEForPreTraining"
    assert type(results["classify"].model).__name__ == "MAEClassifier"

    again = posttrain(out / "best", "reconstruct", images, labels, settings, **kw)
    pd.testing.assert_frame_equal(again.alignment, results["reconstruct"].alignment, check_exact=True)
    pd.testing.assert_frame_equal(again.curve, results["reconstruct"].curve, check_exact=True)
    # classify_shuffled is classify on shuffled_labels(labels, seed): the same run, bit for bit
    by_hand = posttrain(out / "best", "classify", images, shuffled_labels(labels, 0), settings, **kw)
    pd.testing.assert_frame_equal(by_hand.alignment.drop(columns="mode"),
                                  results["classify_shuffled"].alignment.drop(columns="mode"), check_exact=True)
    # fit and fit_shuffled train as classify and classify_shuffled do (the workflow gives them other settings)
    for fit, classify in (("fit", "classify"), ("fit_shuffled", "classify_shuffled")):
        pd.testing.assert_frame_equal(results[fit].alignment.drop(columns="mode"),
                                      results[classify].alignment.drop(columns="mode"), check_exact=True)
        assert results[fit].train_accuracy == results[classify].train_accuracy
    # the final training accuracy: every image against the label it trained on, in eval mode
    model = results["classify_shuffled"].model.eval()
    with torch.no_grad():
        size = load_mae(out / "best").config.image_size
        predicted = model(to_pixels(images, size, FASHION_MNIST_MEAN, FASHION_MNIST_STD)).argmax(1).numpy()
    assert results["classify_shuffled"].train_accuracy == pytest.approx(np.mean(predicted == shuffled_labels(labels, 0)))
    assert results["reconstruct"].train_accuracy is None


def test_posttrain_rejects_bad_arguments(reference):
    out, _ = reference
    images, labels = _images(8, 3)
    with pytest.raises(ValueError, match="allowed classify, reconstruct, classify_shuffled"):
        posttrain(out / "best", "finetune", images, labels, seed=0)
    with pytest.raises(ValueError, match="needs one label per image"):
        posttrain(out / "best", "classify", images, None, seed=0)
