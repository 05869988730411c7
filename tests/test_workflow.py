"""The workflow end to end on a tiny suite (tests/tiny_suite.py), checking numbers in its outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import tiny_suite

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Build the tiny suite and run `snakemake all` on it once."""
    work = tmp_path_factory.mktemp("tiny")
    config = tiny_suite.build(work)
    snakemake(work, "--configfile", str(config), "all")
    return work


def job_stats(text: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry-run, as {rule: count}."""
    lines = text[text.index("Job stats:"):].splitlines()[3:]
    stats = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        stats[parts[0]] = int(parts[1])
    return stats


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
    assert list(table.columns) == ["pair", "layer", "kind", "side", "rank", "cos"]
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


def test_figure_is_rendered(run):
    pdf, png = run / "results/fig2.pdf", run / "results/fig2.png"
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000


def test_fetch_is_recorded(run):
    record = json.loads((run / "resources/models/bert/fetched.json").read_text())
    assert record["source"] == "local:fixtures/tiny-bert"
    assert any(name.endswith("model.safetensors") for name in record["files"])


def test_rerun_has_nothing_to_do(run):
    out = snakemake(run, "--configfile", str(run / "config.yaml"), "-n", "all")
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
    out = snakemake(tmp_path, "--configfile", str(config), "-n", "all", check=False)
    assert out.returncode != 0
    assert "models.bert.family: 'bret' is not allowed; allowed: bert" in out.stdout + out.stderr
    assert not (tmp_path / "resources").exists()


def test_paper_suite_plans_offline():
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/paper.yaml", "all"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    assert "fetch_model" in out.stdout and "alignment" in out.stdout and "finetune" not in out.stdout


def test_lint_is_clean():
    out = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "Congratulations" in out.stdout + out.stderr, out.stdout + out.stderr
