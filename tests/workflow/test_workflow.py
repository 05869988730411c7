"""The workflow end to end on a tiny suite (tests/tiny_suite.py), checking numbers in its outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

import tiny_suite
from specbasis.config import load_config
from workflow_helpers import ROOT, job_stats, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Build the tiny suite and run `snakemake all` on it once."""
    work = tmp_path_factory.mktemp("tiny")
    config = tiny_suite.build(work)
    snakemake(work, "all", "--configfile", str(config))
    return work


def svd64(W):
    return np.linalg.svd(W.astype(np.float64), full_matrices=False)


def test_finetunes_learn_the_separable_tasks(run):
    for model, chance in (("bert-rt", 0.5), ("effnet-digits", 0.1)):
        metrics = json.loads((run / "results/models" / model / "metrics.json").read_text())
        assert metrics["test_accuracy"] > chance + 0.3, (model, metrics["test_accuracy"])
        losses = [row["loss"] if isinstance(row, dict) else row[1] for row in metrics["loss_curve"]]
        assert np.mean(losses[-5:]) < np.mean(losses[:5]), f"{model}: loss did not go down"


def test_weights_are_the_checkpoint_in_linear_orientation(run):
    from safetensors.numpy import load_file

    state = load_file(run / "fixtures/tiny-bert/model.safetensors")
    with h5py.File(run / "results/weights/bert.h5") as f:
        ids = sorted(f)
        assert ids == sorted(f"{l:02d}.{k}" for l in range(2)
                             for k in ("attn_q", "attn_k", "attn_v", "attn_o", "ffn_in", "ffn_out"))
        np.testing.assert_array_equal(f["01.attn_q"][:], state["encoder.layer.1.attention.self.query.weight"])
        assert f["00.ffn_in"].shape == (64, 32) and f["00.ffn_out"].shape == (32, 64)  # (out, in)
        assert json.loads(f["00.ffn_in"].attrs["source"]) == ["encoder.layer.0.intermediate.dense.weight"]
    with h5py.File(run / "results/weights/effnet.h5") as f:
        kinds = {k.split(".")[1] for k in f}
        assert kinds == {"ffn_in", "ffn_out"}  # EfficientNet has no attention


def test_svd_store_reconstructs_and_matches_float64(run):
    with h5py.File(run / "results/weights/bert-rt.h5") as w, h5py.File(run / "results/svd/bert-rt.h5") as s:
        assert sorted(w) == sorted(s)
        for key in w:
            W = w[key][:]
            U, S, Vh = s[key]["U"][:], s[key]["S"][:], s[key]["Vh"][:]
            assert U.dtype == np.float32 and U.shape == (W.shape[0], min(W.shape))
            rec = np.linalg.norm(W - (U * S) @ Vh) / np.linalg.norm(W)
            assert rec < 1e-5, (key, rec)
            np.testing.assert_allclose(S, svd64(W)[1], rtol=1e-4, atol=1e-6)


def test_alignment_matches_an_independent_computation(run):
    table = pd.read_csv(run / "results/alignment/bert-rt.csv")
    assert list(table.columns) == ["pair", "layer", "kind", "side", "rank", "cos", "subspace", "gap_pt", "gap_ft", "dim"]
    assert set(table["pair"]) == {"bert-rt"} and table["rank"].min() == 1 and table["rank"].max() == 32
    assert len(table) == 12 * 2 * 32  # 12 matrices, u and v, 32 ranks each
    assert table["cos"].between(0, 1 + 1e-6).all()
    with h5py.File(run / "results/weights/bert.h5") as pt, h5py.File(run / "results/weights/bert-rt.h5") as ft:
        for key in ("00.attn_q", "01.ffn_out"):
            U0, S0, Vh0 = svd64(pt[key][:])
            U1, _, Vh1 = svd64(ft[key][:])
            layer, kind = int(key[:2]), key[3:]
            rows = table[(table["layer"] == layer) & (table["kind"] == kind)]
            gap = np.minimum(np.r_[np.inf, -np.diff(S0)], np.r_[-np.diff(S0), np.inf]) / S0
            well = gap > 0.05  # only where the singular vectors are well defined
            for side, expected in (("u", np.abs(np.sum(U0 * U1, 0))), ("v", np.abs(np.sum(Vh0 * Vh1, 1)))):
                got = rows[rows["side"] == side].sort_values("rank")["cos"].to_numpy()
                np.testing.assert_allclose(got[well], expected[well], atol=2e-3)
    assert table["cos"].mean() < 0.99, "finetuning moved the weights, so some vectors must have turned"


def test_a_model_aligned_with_itself_is_one_everywhere(run):
    table = pd.read_csv(run / "results/alignment/bert-self.csv")
    assert len(table) == 12 * 2 * 32
    np.testing.assert_allclose(table["cos"], 1, atol=1e-5)
    np.testing.assert_allclose(table["subspace"], 1, atol=1e-5)
    np.testing.assert_allclose(table["gap_pt"], table["gap_ft"])


def test_subspace_and_gaps_match_an_independent_computation(run):
    table = pd.read_csv(run / "results/alignment/bert-rt.csv")
    with h5py.File(run / "results/weights/bert.h5") as pt, h5py.File(run / "results/weights/bert-rt.h5") as ft:
        U0, S0, _ = svd64(pt["01.ffn_in"][:])   # (64, 32)
        U1, _, _ = svd64(ft["01.ffn_in"][:])
    rows = table[(table["layer"] == 1) & (table["kind"] == "ffn_in") & (table["side"] == "u")].sort_values("rank")
    k = np.arange(1, 33)
    expected = np.array([np.sum((U0[:, :j].T @ U1[:, :j]) ** 2) / j for j in k])
    np.testing.assert_allclose(rows["subspace"], expected, atol=1e-4)  # subspaces are well defined at any gap
    np.testing.assert_allclose(rows["gap_pt"], (S0 - np.r_[S0[1:], 0]) / S0, rtol=1e-4, atol=1e-6)
    assert (rows["dim"] == 64).all()


def spectra_row(run, pair, key):
    table = pd.read_csv(run / f"results/spectra/{pair}.csv")
    return table[(table["layer"] == int(key[:2])) & (table["kind"] == key[3:])].iloc[0]


def test_spectra_match_an_independent_computation(run):
    self_table = pd.read_csv(run / "results/spectra/bert-self.csv")
    np.testing.assert_allclose(self_table[["rsd", "mrc", "maxrc", "t1rc", "tailrc", "d_erank"]], 0, atol=1e-7)
    with h5py.File(run / "results/weights/bert.h5") as pt, h5py.File(run / "results/weights/bert-rt.h5") as ft:
        s0, s1 = svd64(pt["01.ffn_out"][:])[1], svd64(ft["01.ffn_out"][:])[1]
    row = spectra_row(run, "bert-rt", "01.ffn_out")
    assert (row["m"], row["n"]) == (32, 64)
    rc = (s1 - s0) / s0
    p0, p1 = s0 / s0.sum(), s1 / s1.sum()
    expected = {"rsd": np.linalg.norm(s1 - s0) / np.linalg.norm(s0), "mrc": np.abs(rc).mean(),
                "maxrc": np.abs(rc).max(), "t1rc": rc[0], "tailrc": np.abs(rc[-4:]).mean(),  # ceil(32/10) = 4
                "erank_pt": np.exp(-np.sum(p0 * np.log(p0))), "erank_ft": np.exp(-np.sum(p1 * np.log(p1)))}
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-3, abs=1e-6), name
    assert row["rsd"] > 1e-3  # finetuning changed the spectrum
    energy = pd.read_csv(run / "results/energy/bert.csv")
    e = energy[(energy["layer"] == 1) & (energy["kind"] == "ffn_out")].sort_values("rank")["energy"].to_numpy()
    np.testing.assert_allclose(e, np.cumsum(s0 ** 2) / np.sum(s0 ** 2), rtol=1e-5)


def test_cumulative_gradient_matches_an_independent_computation(run):
    table = pd.read_csv(run / "results/cumgrad/bert-rt.csv")
    assert set(table["pair"]) == {"bert-rt"} and len(table) == 12 * 32
    with h5py.File(run / "results/weights/bert.h5") as pt, h5py.File(run / "results/weights/bert-rt.h5") as ft:
        W0, W1 = pt["00.attn_v"][:].astype(np.float64), ft["00.attn_v"][:].astype(np.float64)
    Ud, Sd, Vhd = svd64(W1 - W0)
    U0, S0, Vh0 = svd64(W0)
    rows = table[(table["layer"] == 0) & (table["kind"] == "attn_v")].sort_values("rank")
    np.testing.assert_allclose(rows["s_delta"], Sd, rtol=1e-3)
    np.testing.assert_allclose(rows["ratio"], Sd / S0, rtol=1e-3)
    gap = lambda S: np.minimum(np.r_[np.inf, -np.diff(S)], np.r_[-np.diff(S), np.inf]) / S  # noqa: E731
    well = (gap(Sd) > 0.05) & (gap(S0) > 0.05)
    np.testing.assert_allclose(rows["align_u"].to_numpy()[well], np.abs(np.sum(Ud * U0, 0))[well], atol=2e-3)
    with h5py.File(run / "results/delta/bert-self.h5") as delta:  # an unchanged model: ΔW = 0 exactly
        assert all(np.all(delta[key]["S"][:] == 0) for key in delta)
    assert (pd.read_csv(run / "results/cumgrad/bert-self.csv")["ratio"] == 0).all()
    chosen = json.loads((run / "results/fig3.json").read_text())
    r1 = pd.concat([pd.read_csv(run / f"results/cumgrad/{p}.csv") for p in ("bert-rt", "effnet-digits", "jepa")])
    r1 = r1[r1["rank"] == 1]
    assert chosen["largest_r1"]["r1"] == pytest.approx(r1["ratio"].max(), rel=1e-6)
    assert chosen["smallest_r1"]["r1"] == pytest.approx(r1["ratio"].min(), rel=1e-6)


def test_generalization_states_its_power(run):
    tests = pd.read_csv(run / "results/generalization.csv")
    made = tests[tests["p"].notna()]
    assert not made.empty and (made["n_pairs"] == 3).all()
    np.testing.assert_allclose(made["min_attainable_p"], 2 / 6)  # 3 pairs: 2/3! two-sided
    assert not tests["significant"].any()
    log = (run / "logs/generalization.log").read_text()
    assert "no test can be significant" in log
    cells = pd.read_csv(run / "results/generalization.pairs.csv")
    measured = json.loads((run / "results/models/bert-rt/metrics.json").read_text())["test_accuracy"]
    assert (cells.loc[cells["pair"] == "bert-rt", "accuracy"] == measured).all()
    assert (cells.loc[cells["pair"] == "bert-self", "accuracy"] == 0.5).all()  # the config's accuracy of bert
    assert cells["mean_cos"].between(0, 1 + 1e-6).all() and (cells.loc[cells["pair"] == "bert-self", "mean_cos"] > 1 - 1e-5).all()


def test_table4_is_the_last_block(run):
    table = pd.read_csv(run / "results/table4.csv")
    assert set(table["layer"]) == {1, 15} and set(table["matrix"]) == {"ffn_in", "ffn_out"}
    row = table[(table["pair"] == "bert-rt") & (table["matrix"] == "ffn_out")].iloc[0]
    assert row["RSD"] == pytest.approx(spectra_row(run, "bert-rt", "01.ffn_out")["rsd"], rel=1e-3)
    assert "bert-rt" in (run / "results/table4.md").read_text()
    assert "\\begin{tabular}" in (run / "results/table4.tex").read_text()


def test_brain_checkpoints_are_unnested_and_aligned(run):
    """The Brain-JEPA-style pair: weights come from target_encoder (not encoder), DDP's `module.` prefix
    and timm's fused qkv handled; alignment matches an independent SVD; fig7 has an fMRI column."""
    import torch

    ckpt = torch.load(run / "fixtures/jepa/jepa-pretrain.pth", weights_only=True)
    target = {k.removeprefix("module."): v.numpy() for k, v in ckpt["target_encoder"].items()}
    with h5py.File(run / "results/weights/jepa.h5") as f:
        assert sorted(f) == sorted(f"{l:02d}.{k}" for l in range(2)
                                   for k in ("attn_q", "attn_k", "attn_v", "attn_o", "ffn_in", "ffn_out"))
        np.testing.assert_array_equal(f["01.attn_k"][:], target["blocks.1.attn.qkv.weight"][32:64])
        np.testing.assert_array_equal(f["00.ffn_in"][:], target["blocks.0.mlp.fc1.weight"])
    with h5py.File(run / "results/weights/jepa-ft.h5") as f:
        W_ft = f["00.ffn_in"][:]
    table = pd.read_csv(run / "results/alignment/jepa.csv")
    rows = table[(table["layer"] == 0) & (table["kind"] == "ffn_in") & (table["side"] == "u")].sort_values("rank")
    U0, S0, _ = svd64(target["blocks.0.mlp.fc1.weight"])
    U1 = svd64(W_ft)[0]
    gap = np.minimum(np.r_[np.inf, -np.diff(S0)], np.r_[-np.diff(S0), np.inf]) / S0
    well = gap > 0.05
    np.testing.assert_allclose(rows["cos"].to_numpy()[well], np.abs(np.sum(U0 * U1, 0))[well], atol=2e-3)
    assert rows["cos"].iloc[0] > 0.9  # 2% noise leaves the top vector in place
    assert "EEG/fMRI pairs: ['jepa']" in (run / "logs/figures/fig7.log").read_text()
    cells = pd.read_csv(run / "results/generalization.pairs.csv")
    assert "jepa" not in set(cells["pair"])  # no accuracy: left out of fig18's tests


@pytest.mark.parametrize("fig", ["fig2", "fig3", "fig6", "fig7", "fig8", "fig10", "fig11", "fig12", "fig13", "fig14",
                                 "fig15", "fig16", "fig17", "fig18", "fig19", "fig20", "fig4", "fig9", "fig21", "fig5"])
def test_figure_is_rendered(run, fig):
    pdf, png = run / f"results/{fig}.pdf", run / f"results/{fig}.png"
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 5_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_fetch_is_recorded(run):
    record = json.loads((run / "resources/models/bert/fetched.json").read_text())
    assert record["source"] == "local:fixtures/tiny-bert"
    assert any(name.endswith("model.safetensors") for name in record["files"])


def test_rerun_has_nothing_to_do(run):
    out = snakemake(run, "-n", "all", "--configfile", str(run / "config.yaml"))
    assert "Nothing to be done" in out.stdout + out.stderr


def test_one_figure_builds_only_what_it_needs(run, tmp_path):
    config = tiny_suite.build(tmp_path)
    out = snakemake(tmp_path, "-n", "results/weights/bert.h5", "--configfile", str(config))
    jobs = job_stats(out.stdout + out.stderr)
    assert jobs == {"fetch_model": 1, "prepare_model": 1, "extract_weights": 1, "total": 3}, jobs


def test_bad_config_stops_before_any_job(tmp_path):
    config = tiny_suite.build(tmp_path)
    text = config.read_text().replace("family: bert", "family: bret", 1)
    config.write_text(text)
    out = snakemake(tmp_path, "-n", "all", "--configfile", str(config), check=False)
    assert out.returncode != 0
    assert "models.bert.family: 'bret' is not allowed; allowed: bert" in out.stdout + out.stderr
    assert not (tmp_path / "resources").exists()


def test_paper_suite_plans_offline():
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile=config/paper.yaml", "all"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    config = load_config(ROOT / "config/paper.yaml")
    stats = job_stats(out.stdout)
    assert stats["fetch_model"] == len(config["models"]) == 77  # hub finetunes; the workflow finetunes the peft grid only
    # spectral finetuning and the PEFT methods: DeBERTa-v3-base x 11 methods x 8 GLUE tasks, fig5's points (MNLI)
    from specbasis.plan import peft as peft_grid

    runs = peft_grid.table_runs(config) + peft_grid.sweep_runs(config)
    assert stats["finetune"] == len(runs) == 11 * 8 + 14 + 5 + 10
    assert stats["method_basis"] == 11 * 8  # every table1 run against deberta-v3-base (fig22, table6)
    assert stats["table1"] == stats["table5"] == stats["fig5"] == stats["fig22"] == stats["table6"] == 1
    assert "prefix_cache" not in stats
    # the paper suite writes to a folder of its own, results/paper/ (its config file's name)
    assert "results/paper/models/peft-glue-stsb-spectral-s42" in out.stdout
    assert "results/paper/models/fig5-L10_11-k0-m700-s42" in out.stdout
    assert "results/paper/fig2.pdf" in out.stdout and " results/fig2.pdf" not in out.stdout
    assert stats["alignment"] == len(config["pairs"]) == 41  # Tables 2 and 3 (32) + 4 extras + 5 interventions
    # the interventions: bert-base-uncased on five GLUE tasks (CoLA by Matthews, STS-B by Pearson), evaluated on
    # GLUE validation from the hub
    assert stats["swap"] == stats["mask"] == 5 and stats["fetch_dataset"] == 8  # GLUE's eight tasks
    assert all(stats[f] == 1 for f in ("fig12", "fig13", "fig14", "fig15", "fig17"))
    assert stats["table2"] == stats["table3"] == stats["fig18"] == stats["generalization"] == stats["fig7"] == 1
    assert all(f"results/paper/alignment/{p}.csv" in out.stdout for p in config["pairs"])
    # the pretraining dynamics: one MAE per CIFAR-10 scale, three post-trainings each, fig4/9/21
    scales = len(config["dynamics"]["scales"])
    assert stats["fetch_dynamics_dataset"] == 1 and stats["pretrain_mae"] == stats["epoch_similarity"] == scales
    assert stats["posttrain_mae"] == 3 * scales and stats["fig4"] == stats["fig9"] == stats["fig21"] == 1
    # the extras have no reported accuracy: fig18 tests the 32 table pairs and says which it leaves out
    assert ("fig18 leaves out pairs without a held-out accuracy: albert-base, bart-large, bert-base-uncased-ta-cola, "
            "bert-base-uncased-ta-mnli, bert-base-uncased-ta-qnli, bert-base-uncased-ta-sst2, bert-base-uncased-ta-stsb, convnext-base, "
            "deberta-base") in out.stdout + out.stderr


# The one lint we take: rules declare no conda environment (docs/development.md: one environment for every rule,
# made by setup.sh or pip; conda cannot be installed from the package indexes, so an environment file could not
# be tested).
ACCEPTED_LINTS = ("Specify a conda environment or container for each rule.",)


def test_lint_is_clean():
    out = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True)
    text = out.stdout + out.stderr
    lints = [line.strip().removeprefix("* ").removesuffix(":") for line in text.splitlines()
             if line.strip().startswith("* ")]
    assert "Congratulations" in text or lints, text
    assert [lint for lint in lints if lint not in ACCEPTED_LINTS] == [], text


def test_pair_tables_put_measured_beside_reported(run):
    vision = pd.read_csv(run / "results/table2.csv")
    language = pd.read_csv(run / "results/table3.csv").set_index("pair")
    assert vision["pair"].tolist() == ["effnet-digits"] and sorted(language.index) == ["bert-rt", "bert-self"]
    measured = json.loads((run / "results/models/bert-rt/metrics.json").read_text())["test_accuracy"]
    assert language.loc["bert-rt", "measured_accuracy"] == pytest.approx(measured)
    assert np.isnan(language.loc["bert-rt", "reported_accuracy"])
    assert language.loc["bert-self", "reported_accuracy"] == 0.5  # the config's accuracy of bert
    assert language.loc["bert-self", "top10_cos"] == pytest.approx(1, abs=1e-5)
    assert "effnet-digits" in (run / "results/table2.md").read_text()


# -- interventions -------------------------------------------------------------------------------

EDITED = {"bert-rt": ("bert", "rotten_tomatoes", ["ffn", "attn"]), "effnet-digits": ("efficientnet_lite", "mnist_csv", ["ffn"])}


def test_unedited_points_are_the_finetunes_measured_accuracy(run):
    """k = 0 and fraction 0 are the unedited model; on the whole test split (max_eval 100 exceeds it) its
    accuracy is the one the finetune measured and wrote to metrics.json."""
    for model, (_, _, groups) in EDITED.items():
        metrics = json.loads((run / "results/models" / model / "metrics.json").read_text())
        swap = pd.read_csv(run / f"results/swap/{model}.csv")
        mask = pd.read_csv(run / f"results/mask/{model}.csv")
        for table in (swap, mask):
            assert (table["n"] == metrics["sizes"]["test"]).all()
            assert table["base_accuracy"].to_numpy() == pytest.approx(metrics["test_accuracy"], abs=1e-12)
        unedited = pd.concat([swap[swap["k"] == 0], mask[mask["fraction"] == 0]])
        assert len(unedited) == len(groups) * (4 + 2)  # 4 sources, 2 orders
        assert (unedited["accuracy"] == metrics["test_accuracy"]).all() and (unedited["p_mcnemar"] == 1).all()
        assert sorted(set(swap["group"])) == sorted(groups) and sorted(set(mask["group"])) == sorted(groups)
        assert sorted(set(swap["k"])) == [0, 1, 4]  # 40 exceeds the smallest rank: left out, and said
        assert "k = 40 left out: above the group's smallest rank" in (run / f"logs/swap/{model}.log").read_text()
        lo, hi = swap[["ci_low", "ci_high"]].to_numpy().T
        assert ((lo <= swap["accuracy"]) & (swap["accuracy"] <= hi)).all()
        for table in (swap, mask):  # neither task is GLUE's: the task's metric is accuracy, its test McNemar's
            assert (table["metric"] == "accuracy").all() and (table["score"] == table["accuracy"]).all()
            assert (table["p_score"] == table["p_mcnemar"]).all() and (table["delta_score"] == table["delta"]).all()
            assert ((table["delta_ci_low"] <= table["delta"] + 1e-12) & (table["delta"] <= table["delta_ci_high"] + 1e-12)).all()


def test_masking_everything_is_the_same_in_both_orders(run):
    for model in EDITED:
        mask = pd.read_csv(run / f"results/mask/{model}.csv")
        whole = mask[mask["fraction"] == 1].pivot(index="group", columns="order", values="accuracy")
        assert (whole["top_down"] == whole["bottom_up"]).all()
        assert (mask.loc[mask["fraction"] == 1, "removed"] == mask.loc[mask["fraction"] == 1, "components"]).all()


def _edited_test_accuracy(run, model, family, fmt, key_filter, edit):
    """Load the finetuned model, write edit(W̃, U, S, Vh, U_pt, Vh_pt) into every matrix the weights store
    lists (its `source` names), evaluate on the finetune's test split: (per-example correctness, unedited's)."""
    import torch

    from specbasis.data import load_splits
    from specbasis.models import load_classifier
    from specbasis.evaluate import predict_logits

    model_obj, preprocess = load_classifier(run / "results/models" / model, family, 2 if family == "bert" else 10)
    splits = load_splits(fmt, run / "resources/datasets" / ("reviews" if family == "bert" else "digits"), 0)
    base = predict_logits(model_obj, preprocess, splits.test.x, torch.device("cpu")).numpy().argmax(1) == splits.test.y
    state = model_obj.state_dict()
    with h5py.File(run / f"results/weights/{model}.h5") as w, h5py.File(run / f"results/svd/{model}.h5") as s, \
            h5py.File(run / f"results/svd/{'bert' if family == 'bert' else 'effnet'}.h5") as p:
        keys = [k for k in w if key_filter(k)]
        for key in keys:
            (name,) = json.loads(w[key].attrs["source"])
            tensor = state[name]
            W = tensor.reshape(tensor.shape[0], -1).double().numpy()  # (out, in); 1x1 convs squeezed
            new = edit(W, s[key]["U"][:], s[key]["S"][:], s[key]["Vh"][:], p[key]["U"][:], p[key]["Vh"][:])
            with torch.no_grad():
                tensor.copy_(torch.as_tensor(new, dtype=torch.float32).reshape(tensor.shape))
    edited = predict_logits(model_obj, preprocess, splits.test.x, torch.device("cpu")).numpy().argmax(1) == splits.test.y
    return edited, base, len(keys)


@pytest.mark.parametrize("model,source,k", [("bert-rt", "pretrained", 4), ("effnet-digits", "zero", 4),
                                            ("effnet-digits", "pretrained", 1)])
def test_a_swap_point_matches_an_independent_computation(run, model, source, k):
    from scipy import stats

    family, fmt, _ = EDITED[model]

    def swap(W, U, S, Vh, U_pt, Vh_pt):  # the top-k pairs (u, v) -> the pretrained ones or nothing, σ kept
        X, Yh = (U_pt[:, :k], Vh_pt[:k]) if source == "pretrained" else (0 * U[:, :k], 0 * Vh[:k])
        return W - (U[:, :k] * S[:k]) @ Vh[:k] + (X * S[:k]) @ Yh

    edited, base, count = _edited_test_accuracy(run, model, family, fmt, lambda key: "ffn" in key, swap)
    table = pd.read_csv(run / f"results/swap/{model}.csv")
    row = table[(table["group"] == "ffn") & (table["source"] == source) & (table["k"] == k)].iloc[0]
    assert row["matrices"] == count
    assert row["base_accuracy"] == pytest.approx(base.mean(), abs=1e-12)
    assert row["accuracy"] == pytest.approx(edited.mean(), abs=1e-12)
    only_base, only_edited = int((base & ~edited).sum()), int((~base & edited).sum())
    assert (row["only_base_correct"], row["only_edited_correct"]) == (only_base, only_edited)
    p = stats.binomtest(only_base, only_base + only_edited, 0.5).pvalue if only_base + only_edited else 1.0
    assert row["p_mcnemar"] == pytest.approx(p, rel=1e-9)
    z = stats.norm.ppf(0.975)
    n, acc = len(edited), edited.mean()
    center = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((max(0, center - half), min(1, center + half)), abs=1e-12)


def test_a_figure_of_interventions_builds_everything_it_needs_from_nothing(tmp_path):
    config = tiny_suite.build(tmp_path)
    out = snakemake(tmp_path, "-n", "results/fig12.pdf", "--configfile", str(config))
    jobs = job_stats(out.stdout + out.stderr)
    assert jobs == {"fetch_model": 2, "fetch_dataset": 2, "prepare_model": 2, "finetune": 2, "extract_weights": 4,
                    "svd": 4, "swap": 2, "fig12": 1, "total": 19}, jobs


@pytest.mark.parametrize("edit,said", [
    (lambda c: c["interventions"].update(models=["bert"]), "interventions.models: 'bert' has no test data"),
    (lambda c: c["interventions"].update(cross={"bert-rt": "effnet-digits"}),
     "interventions.cross.bert-rt: donor 'effnet-digits' is finetuned from 'effnet', 'bert-rt' from 'bert'"),
])
def test_bad_interventions_stop_before_any_job(tmp_path, edit, said):
    import yaml

    config = tiny_suite.build(tmp_path)
    spec = yaml.safe_load(config.read_text())
    edit(spec)
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = snakemake(tmp_path, "-n", "all", "--configfile", str(config), check=False)
    assert out.returncode != 0 and said in out.stdout + out.stderr
    assert not (tmp_path / "resources").exists()


# ------------------------------------------------------------------------------ pretraining dynamics

DYN_SCALES = {"64": 64, "128": 128}
DYN_MODES = ("classify", "reconstruct", "classify_shuffled")


def test_pretraining_snapshots_every_epoch_and_records_throughput(run):
    for name, n in DYN_SCALES.items():
        metrics = json.loads((run / f"results/dynamics/pretrain/{name}/metrics.json").read_text())
        assert metrics["n_train"] == n and metrics["images_per_s"] > 0 and len(metrics["timing"]) == 2
        assert "images/s" in (run / f"logs/dynamics/pretrain/{name}.log").read_text()
        with h5py.File(run / f"results/dynamics/pretrain/{name}/snapshots.h5") as f:
            assert sorted(f) == ["0000", "0001", "0002"] and sorted(f["0002"]) == ["00.ffn_in", "00.ffn_out"]
        assert not (run / f"results/dynamics/.work/{name}").exists()  # the resumable state is removed at the end


def test_epoch_similarity_of_the_final_epoch_with_itself_is_one(run):
    for name in DYN_SCALES:
        sim = pd.read_csv(run / f"results/dynamics/pretrain/{name}.csv")
        final = sim[(sim["reference"] == "final") & (sim["epoch"] == 2)]
        assert len(final) == 2 * 2 * 8 and np.abs(final["cos"] - 1).max() < 1e-6  # 2 matrices x u, v x 8 ranks
        prev = sim[sim["reference"] == "previous"]
        assert sorted(prev["epoch"].unique()) == [1, 2] and (prev["cos"] <= 1 + 1e-6).all()


def test_fig9s_fitted_runs_record_their_final_training_accuracy(run):
    for name in DYN_SCALES:
        for mode in ("fit", "fit_shuffled", "classify"):
            table = pd.read_csv(run / f"results/dynamics/posttrain/{name}-{mode}.csv")
            accuracy = table["train_accuracy"].unique()
            metrics = json.loads((run / f"results/models/mae-{name}-{mode}/metrics.json").read_text())
            assert len(accuracy) == 1 and 0 <= accuracy[0] <= 1 and metrics["train_accuracy"] == pytest.approx(accuracy[0])
        fit = pd.read_csv(run / f"results/dynamics/posttrain/{name}-fit.csv")
        assert sorted(fit["step"].unique()) == [0, 2, 4, 6]  # 32 images, one batch an epoch, 6 epochs
        assert "train_accuracy" not in pd.read_csv(run / f"results/dynamics/posttrain/{name}-reconstruct.csv")


def test_epoch_similarity_matches_an_independent_computation(run):
    with h5py.File(run / "results/dynamics/pretrain/128/snapshots.h5") as f:
        W1, W2 = f["0001/00.ffn_in"][()], f["0002/00.ffn_in"][()]
    (U1, _, V1), (U2, _, V2) = svd64(W1), svd64(W2)
    sim = pd.read_csv(run / "results/dynamics/pretrain/128.csv")
    rows = sim[(sim["reference"] == "previous") & (sim["epoch"] == 2) & (sim["kind"] == "ffn_in")]
    u = rows[rows["side"] == "u"].sort_values("rank")["cos"].to_numpy()
    v = rows[rows["side"] == "v"].sort_values("rank")["cos"].to_numpy()
    np.testing.assert_allclose(u[:4], np.abs(np.sum(U1[:, :4] * U2[:, :4], axis=0)), atol=2e-4)
    np.testing.assert_allclose(v[:4], np.abs(np.sum(V1[:4] * V2[:4], axis=1)), atol=2e-4)


def test_posttraining_starts_at_one_and_ends_where_the_saved_model_is(run):
    from specbasis.io.extract import extract_weights

    for name in DYN_SCALES:
        pretrained = run / f"results/models/mae-{name}"
        extract_weights(pretrained, "vit_mae", run / f"pt-{name}.h5")  # a model like any other
        with h5py.File(run / f"pt-{name}.h5") as f:
            W0 = f["00.ffn_in"][()]
        best = json.loads((pretrained / "metrics.json").read_text())["best_epoch"]
        with h5py.File(run / f"results/dynamics/pretrain/{name}/snapshots.h5") as f:
            np.testing.assert_array_equal(W0, f[f"{best:04d}/00.ffn_in"][()])  # the best checkpoint's matrix
        for mode in DYN_MODES:
            table = pd.read_csv(run / f"results/dynamics/posttrain/{name}-{mode}.csv")
            start = table[table["step"] == 0]
            assert len(start) == 2 * 2 * 8 and np.abs(start["cos"] - 1).max() < 1e-6
            assert sorted(table["step"].unique()) == [0, 2, 4]  # 64 images / 32 a batch x 2 epochs, every 2 steps
            summary = extract_weights(run / f"results/models/mae-{name}-{mode}", "vit_mae", run / f"{name}-{mode}.h5")
            assert "00.ffn_in" in summary["ids"]
            with h5py.File(run / f"{name}-{mode}.h5") as f:
                W1 = f["00.ffn_in"][()]
            (U0, _, _), (U1, _, _) = svd64(W0), svd64(W1)
            last = table[(table["step"] == 4) & (table["kind"] == "ffn_in") & (table["side"] == "u")].sort_values("rank")
            np.testing.assert_allclose(last["cos"].to_numpy()[:3], np.abs(np.sum(U0[:, :3] * U1[:, :3], axis=0)),
                                       atol=2e-4)
            assert not np.array_equal(W0, W1)  # post-training moved the weights


def test_shuffled_labels_are_other_labels_from_the_same_checkpoint(run):
    for name in DYN_SCALES:
        true = json.loads((run / f"results/models/mae-{name}-classify/metrics.json").read_text())
        shuffled = json.loads((run / f"results/models/mae-{name}-classify_shuffled/metrics.json").read_text())
        assert true["labels_changed"] == 0 and shuffled["labels_changed"] > 0.5
        assert (run / f"results/models/mae-{name}-classify/head.safetensors").is_file()
        a = pd.read_csv(run / f"results/dynamics/posttrain/{name}-classify.curve.csv")
        b = pd.read_csv(run / f"results/dynamics/posttrain/{name}-classify_shuffled.curve.csv")
        assert not np.allclose(a["loss"], b["loss"])


# ------------------------------------------------------------------------------------------- spectral finetuning, PEFT

def _metrics(run, model):
    return json.loads((run / "results/models" / model / "metrics.json").read_text())


def test_table1_holds_every_method_measured_in_this_run(run):
    table = pd.read_csv(run / "results/table1.csv")
    measured = table[table["source"] == "measured"].set_index("method")
    assert {"full", "spectral", "psoft", "bitfit", "lora_kaiming"} <= set(measured.index)
    full = _metrics(run, "peft-reviews-full-s0")
    assert measured.loc["full", "reviews"] == pytest.approx(100 * full["test_accuracy"], abs=0.01)
    assert measured.loc["full", "parameters"] == full["trainable_parameters"]
    spectral = _metrics(run, "peft-reviews-spectral-s0")
    assert measured.loc["spectral", "reviews"] == pytest.approx(100 * spectral["test_accuracy"], abs=0.01)
    assert measured.loc["spectral", "parameters"] == spectral["parameter_counts"]["adapter"] == 2 * 8 ** 2
    assert measured.loc["psoft", "parameters"] == 2 * 8 ** 2  # peft's PSOFT: r x r per matrix, as ours
    for method in ("spectral", "psoft", "bitfit", "lora_kaiming"):
        assert measured.loc[method, "step seconds"] > 0 and measured.loc[method, "reviews"] > 60, method
    hadapter = _metrics(run, "peft-reviews-hadapter-s0")  # Houlsby's adapters: not merged, their cost timed
    assert measured.loc["hadapter", "parameters"] == hadapter["parameter_counts"]["adapter"] == 4 * (2 * 32 * 8 + 8 + 32)
    assert hadapter["inference"]["mergeable"] is False and measured.loc["hadapter", "reviews"] > 60
    assert measured.loc["hadapter", "inference x base"] == pytest.approx(hadapter["inference"]["forward_ratio"], abs=0.01)
    assert measured.loc["spectral", "inference x base"] == 1.0
    assert "paper, Table 1" not in set(table["source"])
    for suffix in ("md", "tex"):
        assert "spectral" in (run / f"results/table1.{suffix}").read_text()


def test_every_table1_run_is_analysed_against_its_pretrained_basis(run):
    """results/peft/basis/<run>.csv for each table1 run, no pair written by hand: the matrices a method changed,
    their alignment and intruders; table6 per method."""
    changed = {m: len(pd.read_csv(run / f"results/peft/basis/peft-reviews-{m}-s0.csv"))
               for m in ("full", "spectral", "psoft", "bitfit", "lora_kaiming", "hadapter")}
    assert changed == {"full": 12, "spectral": 2, "psoft": 2, "bitfit": 0, "lora_kaiming": 8, "hadapter": 0}
    spectral = pd.read_csv(run / "results/peft/basis/peft-reviews-spectral-s0.csv")
    assert set(spectral["kind"]) == {"ffn_in", "ffn_out"} and set(spectral["layer"]) == {1}
    assert spectral[[c for c in spectral if c.startswith("intruders_")]].to_numpy().max() <= 10
    table = pd.read_csv(run / "results/table6.csv").set_index("method")
    assert table.loc["bitfit", "note"] == "changes no weight matrix" and table.loc["full", "matrices changed"] == 12
    assert 0 < table.loc["full", "alignment"] <= 1 and (run / "results/fig22.pdf").stat().st_size > 0


def test_the_lr_selection_target_trains_each_candidate_on_validation_alone(run):
    """Not part of `all` (nothing of it was built); its own target trains spectral's two candidates with the test
    split withheld and writes every validation score and the choice."""
    assert not list((run / "results/models").glob("lrsel-*")) and not (run / "results/peft/lr_selection.csv").exists()
    snakemake(run, "results/peft/lr_selection.csv", "--configfile", str(run / "config.yaml"))
    table = pd.read_csv(run / "results/peft/lr_selection.csv")
    assert list(table["lr"]) == [2e-3, 2e-2] and set(table["method"]) == {"spectral"} and table["chosen"].sum() == 1
    for row in table.itertuples():
        metrics = _metrics(run, row.model)
        assert metrics["validation_only"] is True and metrics["sizes"]["test"] == metrics["sizes"]["val"]
        assert row.val_score == pytest.approx(100 * metrics["val_metric"]["value"])
    assert table.loc[table["chosen"], "val_score"].iloc[0] == table["val_score"].max()


def test_a_spectral_finetune_changes_only_its_block_of_the_pretrained_svd(run):
    """U^T (W - W0) V is zero outside [k, m) x [k, m) for the adapted matrices; every other matrix is unchanged."""
    from safetensors.numpy import load_file

    pre = {k.removeprefix("bert."): v for k, v in load_file(run / "results/models/bert-x10/model.safetensors").items()}
    ft = {k.removeprefix("bert."): v for k, v in
          load_file(run / "results/models/peft-reviews-spectral-s0/model.safetensors").items()}
    adapted = {"encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.output.dense.weight"}
    for name, w0 in pre.items():
        if name not in ft:
            continue
        if name in adapted:
            U, S, Vh = np.linalg.svd(w0.astype(np.float64), full_matrices=False)
            D = U.T @ (ft[name].astype(np.float64) - w0) @ Vh.T
            outside = D.copy()
            outside[:8, :8] = 0
            assert np.abs(outside).max() < 1e-5 * S[0], (name, np.abs(outside).max())
            assert np.abs(D[:8, :8]).max() > 1e-3, name  # the block did train
        else:
            np.testing.assert_array_equal(ft[name], w0, err_msg=name)


def test_fig5_points_have_every_seed_and_cached_runs_match_the_whole_model(run):
    table = pd.read_csv(run / "results/peft/fig5.csv")
    assert len(table) == 6 * 2  # (2 rank + 2 layer + 2 block points) x 2 seeds
    assert set(table.groupby(["sweep", "x"]).size()) == {2}
    shared = table[table["model"] == "fig5-L1-k0-m8-s0"]
    assert set(shared["sweep"]) == {"rank", "layers", "block"} and shared["score"].nunique() == 1
    for row in table.drop_duplicates("model").itertuples():
        metrics = _metrics(run, row.model)
        assert metrics["method"]["k"] == row.k and metrics["method"]["m"] == row.m and metrics["seed"] == row.seed
        if str(row.layers) == "1":  # starts from the cache of block 0's outputs
            assert row.prefix_cache_start == 1 and metrics["prefix_cache"]["max_abs_diff_vs_uncached"] < 1e-4
        else:
            assert np.isnan(row.prefix_cache_start) and "prefix_cache" not in metrics
    assert not list((run / "results/peft/cache").glob("*"))  # temporary: deleted once its runs are done
    seeds = table[table["model"].str.endswith("-s1")]
    assert (seeds["score"].to_numpy() != table[table["model"].str.endswith("-s0")]["score"].to_numpy()).any()


def test_table5_lists_the_settings_used(run):
    table = pd.read_csv(run / "results/table5.csv").set_index("task")
    assert table.loc["reviews", "steps"] == 120 and table.loc["reviews", "batch size"] == 16
    assert "0.02 (spectral, psoft, bitfit)" in table.loc["reviews", "lr"]

