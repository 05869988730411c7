"""The pretraining-dynamics stage's pure parts: image readers (CIFAR-10's pickled batches), nested subsets,
its config checks and its figures on small synthetic tables."""
from __future__ import annotations

import copy
import io
import pickle
import tarfile

import numpy as np
import pandas as pd
import pytest
import yaml

from specbasis.config import ConfigError, scale_name, validate_config
from specbasis.dynamics.data import first, last, load_images, nested_subset, read_cifar10
from specbasis.figures.dynamics import fig4, fig9, fig21, top_mean


def _cifar_tarball(path, n_per_batch=4):
    """The canonical layout: cifar-10-batches-py/{data_batch_1..5,test_batch}, python-2 pickles (bytes keys)."""
    rng = np.random.default_rng(0)
    truth = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            images = rng.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
            labels = list(rng.integers(0, 10, n_per_batch))
            truth[name] = (images, labels)
            rows = images.transpose(0, 3, 1, 2).reshape(n_per_batch, -1)  # R plane, G plane, B plane
            raw = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": rows}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return truth


def test_cifar10_batches_are_read_channels_last_in_order(tmp_path):
    truth = _cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    sets = read_cifar10(tmp_path)
    train_x, train_y = sets.train
    assert train_x.shape == (20, 32, 32, 3) and train_x.dtype == np.uint8
    np.testing.assert_array_equal(train_x[:4], truth["data_batch_1"][0])
    np.testing.assert_array_equal(train_x[16:], truth["data_batch_5"][0])
    np.testing.assert_array_equal(train_y[4:8], truth["data_batch_2"][1])
    np.testing.assert_array_equal(sets.test[0], truth["test_batch"][0])
    # the same from the unpacked folder, through load_images
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    again = load_images("cifar10", tmp_path / "unpacked")
    np.testing.assert_array_equal(again.train[0], train_x)


def test_cifar10_missing_batch_is_named(tmp_path):
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as tar:
        raw = pickle.dumps({b"labels": [0], b"data": np.zeros((1, 3072), np.uint8)})
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    with pytest.raises(ValueError, match="data_batch_1"):
        read_cifar10(tmp_path)


def test_scales_are_nested_and_seeded():
    small, large = nested_subset(100, 10, seed=0), nested_subset(100, 40, seed=0)
    np.testing.assert_array_equal(large[:10], small)
    assert len(set(large)) == 40
    assert not np.array_equal(nested_subset(100, 10, seed=1), small)
    with pytest.raises(ValueError, match="scale 101"):
        nested_subset(100, 101, seed=0)


def test_first_and_last_are_disjoint_ends():
    part = (np.arange(10)[:, None], np.arange(10))
    assert list(first(part, 3, "x")[1]) == [0, 1, 2] and list(last(part, 2, "x")[1]) == [8, 9]
    with pytest.raises(ValueError, match="want 11 images"):
        first(part, 11, "x")


@pytest.mark.parametrize("n, name", [(1000, "1k"), (50000, "50k"), (1500, "1500"), (64, "64")])
def test_scale_names(n, name):
    assert scale_name(n) == name


BASE = {"seed": 0, "models": {"m": {"source": "local:m", "format": "hf", "family": "bert", "task": "t"}},
        "pairs": {"p": {"pretrained": "m", "finetuned": "m"}},
        "datasets": {"fm": {"source": "local:x", "format": "idx"}, "mn": {"source": "local:y", "format": "mnist_csv"}},
        "dynamics": {"data": "fm", "new_data": "mn", "scales": [1000, 2000]}}


def _with(**dyn):
    config = copy.deepcopy(BASE)
    config["dynamics"].update(dyn)
    return config


def test_dynamics_defaults_are_filled():
    dyn = validate_config(copy.deepcopy(BASE))["dynamics"]
    assert dyn["pretrain"]["epochs"] == 20 and dyn["pretrain"]["lr"] == 1.5e-3 and dyn["pretrain"]["batch_size"] == 64
    assert dyn["classify"]["images"] == 3000 and dyn["reconstruct"] == {**dyn["reconstruct"], "images": 1000, "lr": 3e-3}
    assert dyn["modes"] == ["classify", "reconstruct", "classify_shuffled"] and dyn["spec"] == {}


@pytest.mark.parametrize("dyn, said", [
    ({"data": "mn"}, "dynamics.data: 'mn' has format 'mnist_csv'; allowed: idx, cifar10"),
    ({"new_data": "nope"}, "dynamics.new_data: 'nope' is not a dataset"),
    ({"spec": {"hidden_size": 36, "num_heads": 5}}, "hidden_size=36 is not divisible by num_heads=5"),
    ({"spec": {"hidden": 30}}, "dynamics.spec"),
    ({"pretrain": {"epochs": 2, "warmup_epochs": 3}}, "warmup_epochs=3"),
    ({"scales": [1000, 1000]}, "dynamics.scales"),
    ({"spec": {"num_channels": 3}}, "dynamics.spec.num_channels=3: data 'fm' (idx) has 1 channel(s)"),
    ({"spec": {"image_size": 24}}, "dynamics.spec.image_size=24: data 'fm' (idx) has 28x28 images"),
    ({"modes": ["classify", "finetune"]}, "dynamics.modes"),
    ({"datasets": {"fm": {"source": "local:z", "format": "idx"}}}, "dynamics.datasets.fm: already a dataset"),
    ({"datasets": {"c10": {"source": "url:https://x/c.tar.gz", "format": "cifar10"}}}, "dynamics.datasets.c10.sha256"),
])
def test_bad_dynamics_sections_are_named(dyn, said):
    with pytest.raises(ConfigError) as err:
        validate_config(_with(**dyn))
    assert said in str(err.value), str(err.value)


@pytest.mark.parametrize("spec", [{"hidden_size": 36, "num_heads": 5}, {"hidden_size": 30, "num_heads": 2},
                                  {"decoder_hidden_size": 12, "decoder_heads": 8}, {"image_size": 30},
                                  {"patch_size": 14, "mask_ratio": 0.8}, {}, {"image_size": 32, "num_channels": 3},
                                  {"hidden_size": 192, "num_heads": 3}])
def test_parse_time_spec_check_agrees_with_maespec(spec):
    from specbasis.config import MAE_SPEC_DEFAULTS, mae_spec_problems
    from specbasis.dynamics.mae import MAESpec

    assert MAESpec().to_dict() == MAE_SPEC_DEFAULTS
    try:
        MAESpec.from_dict(spec)
        refused = False
    except ValueError:
        refused = True
    assert bool(mae_spec_problems(spec)) == refused


def test_a_model_named_like_a_dynamics_model_is_refused():
    config = _with()
    config["models"]["mae-1k"] = {"source": "local:z", "format": "hf", "family": "vit_mae", "task": "t"}
    with pytest.raises(ConfigError, match="results/models/mae-1k is made by the dynamics stage"):
        validate_config(config)


def test_paper_dynamics_section_is_the_papers():
    from specbasis.dynamics.mae import PAPER

    text = (__import__("pathlib").Path(__file__).parents[2] / "config/paper.yaml").read_text()
    dyn = yaml.safe_load(text)["dynamics"]
    assert dyn["spec"] == {k: v for k, v in PAPER.to_dict().items() if k in dyn["spec"]}
    assert {**PAPER.to_dict(), **dyn["spec"]} == PAPER.to_dict()
    assert dyn["pretrain"]["epochs"] == 200 and dyn["val_images"] == 5000
    assert dyn["classify"]["images"] == 3000 and dyn["reconstruct"]["images"] == 1000
    c10 = dyn["datasets"][dyn["data"]]
    assert c10["source"] == "url:https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert c10["sha256"] == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


# ------------------------------------------------------------------------------------------ figures

def _post(scales=(100, 400), modes=("classify", "reconstruct", "classify_shuffled")):
    rows = []
    for n in scales:
        for m in modes:
            for step in range(0, 21, 5):
                for rank in range(1, 6):
                    for side in "uv":
                        drop = 0.0 if step == 0 else step * rank * (0.002 if m == "classify" else 0.004) * 100 / n
                        rows.append({"mode": m, "step": step, "epoch": step / 10, "layer": 0, "kind": "ffn_in",
                                     "side": side, "rank": rank, "cos": 1 - drop, "scale": n})
    return pd.DataFrame(rows)


def _sim(scales=(100, 400)):
    rows = []
    for n in scales:
        for e in range(4):
            for ref in ("previous", "final"):
                if ref == "previous" and e == 0:
                    continue
                for rank in range(1, 6):
                    rows.append({"epoch": e, "reference": ref, "layer": 0, "kind": "ffn_in", "side": "u",
                                 "rank": rank, "cos": 1 - 0.1 / (e + 1) if ref == "previous" else 1 - 0.05 * (3 - e),
                                 "scale": n})
    return pd.DataFrame(rows)


def test_top_mean_averages_ranks_sides_and_matrices():
    post = _post(scales=(100,), modes=("classify",))
    m = top_mean(post, ["scale", "step"], top=2)
    at20 = m[m["step"] == 20]["cos"].item()
    assert at20 == pytest.approx(1 - 20 * 0.002 * np.mean([1, 2]))
    assert (m[m["step"] == 0]["cos"] == 1).all()


def test_figures_render_from_synthetic_tables():
    import matplotlib.pyplot as plt

    for fig, axes in ((fig4(_sim(), _post(), 3), 3), (fig21(_post(), 3), 2), (fig9(_post(scales=(100, 200, 400)), 3), 3)):
        drawn = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
        assert len(drawn) == axes
        plt.close(fig)
    # fig4's D, the schedule control, where the similarity has its displacement column
    sim = _sim().assign(displacement=lambda t: 0.1 / (t["epoch"] + 1))
    fig = fig4(sim, _post(), 3)
    assert len([ax for ax in fig.axes if ax.lines]) == 4 and fig.axes[3].get_xscale() == "log"
    plt.close(fig)
    # fig9's fitted row: fit and fit_shuffled, the final training accuracy in the legend
    post = _post(modes=("classify", "classify_shuffled", "fit", "fit_shuffled"))
    post = post.assign(train_accuracy=post["mode"].map({"classify": 0.8, "classify_shuffled": 0.2, "fit": 1.0,
                                                          "fit_shuffled": 0.95}))
    fig = fig9(post, 3)
    assert len([ax for ax in fig.axes if ax.lines]) == 4   # 2 scales x (matched, fitted)
    legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert legend == ["true labels (train acc. 1.00)", "shuffled labels (train acc. 0.95)"]
    assert "fitted" in fig.axes[3].get_title() and "matched" in fig.axes[0].get_title()
    plt.close(fig)
    # B and C of fig4 keep the smallest and largest scale only
    fig = fig4(_sim(), _post(scales=(100, 200, 400)), 3)
    assert len([ln for ln in fig.axes[1].lines if len(ln.get_xdata()) > 1]) == 2
    plt.close(fig)


def test_figures_say_when_there_is_nothing():
    empty = pd.DataFrame(columns=["scale", "mode", "step", "epoch", "rank", "cos", "reference"])
    for fig in (fig4(empty, empty, 3), fig21(empty, 3), fig9(empty, 3)):
        assert any("No " in t.get_text() for ax in fig.axes for t in ax.texts)


@pytest.mark.parametrize("classifier", [False, True])
def test_saved_models_are_extracted_like_any_vit_mae(tmp_path, classifier):
    import h5py
    import torch

    from specbasis.dynamics.stage import save_posttrained
    from specbasis.io.extract import extract_weights
    from specbasis.dynamics.mae import MAEClassifier, build_mae, matrices

    spec = {"patch_size": 7, "hidden_size": 16, "num_layers": 2, "num_heads": 1, "decoder_hidden_size": 8,
            "decoder_layers": 1, "decoder_heads": 1}
    mae = build_mae(spec, seed=0)
    model = MAEClassifier.from_mae(mae, 10, seed=0) if classifier else mae
    save_posttrained(model, tmp_path / "m", {"mode": "x"})
    summary = extract_weights(tmp_path / "m", "vit_mae", tmp_path / "w.h5")
    assert {"00.ffn_in", "01.ffn_out", "01.attn_q"} <= set(summary["ids"])
    want = matrices(mae, ["01.ffn_in"])["01.ffn_in"]
    with h5py.File(tmp_path / "w.h5") as f:
        torch.testing.assert_close(torch.from_numpy(f["01.ffn_in"][()]), want, rtol=0, atol=0)
    assert (tmp_path / "m/head.safetensors").is_file() == classifier
