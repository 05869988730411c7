"""Cumulative gradient ΔW = W_ft − W_pt: the delta store, the rank-by-rank table and its figures."""
import importlib.util
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ortho_group

from specbasis.analysis.cumgrad import COLUMNS, cumgrad_ranks, cumgrad_table, write_delta_store
from specbasis.io.extract import FORMAT_VERSION
from specbasis.figures.cumgrad import fig3, fig19, fig20, matrix_id
from specbasis.svd import SVD, read_svd, reconstruction_error, svd_all, svd_batch, write_svd_store

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
STYLE = Path(__file__).resolve().parents[2] / "workflow" / "style" / "specbasis.mplstyle"


def svd_of(W):
    (_, svd), = svd_all({"w": np.asarray(W, dtype=np.float32)}, progress=False)
    return svd


@pytest.fixture
def base():
    """U (30, 20), S well separated (every singular pair is well defined), Vh (20, 20)."""
    U, Vh = ortho_group.rvs(30, random_state=1)[:, :20], ortho_group.rvs(20, random_state=2)
    return U, np.linspace(10, 1, 20), Vh


def build(U, S, Vh):
    return (U * S) @ Vh


# ------------------------------------------------------------------------------ known answers

@pytest.mark.parametrize("c", [0.5, 2.0, -0.3])
def test_multiple_of_w_is_aligned_with_ratio_abs_c(base, c):
    W = build(*base)
    res = cumgrad_ranks(svd_of(c * W), svd_of(W), max_rank=200)
    assert len(res["ratio"]) == 20  # fewer than max_rank: all ranks
    np.testing.assert_allclose(res["ratio"], abs(c), rtol=1e-5)
    np.testing.assert_allclose(res["align_u"], 1, atol=1e-5)
    np.testing.assert_allclose(res["align_v"], 1, atol=1e-5)


@pytest.mark.parametrize("j,expected", [(0, 1.0), (2, 0.0), (19, 0.0)])
def test_rank_one_delta_along_a_pretrained_pair(base, j, expected):
    U, S, Vh = base
    eps = 0.05
    dW = eps * np.outer(U[:, j], Vh[j])  # ε u_j v_jᵀ: its top pair is W_pt's j-th
    res = cumgrad_ranks(svd_of(dW), svd_of(build(U, S, Vh)), max_rank=5)
    assert res["ratio"][0] == pytest.approx(eps / S[0], rel=1e-5)
    assert res["align_u"][0] == pytest.approx(expected, abs=1e-5)
    assert res["align_v"][0] == pytest.approx(expected, abs=1e-5)
    assert res["ratio"][1:].max() < 1e-5  # the other σ_i(ΔW) are 0 up to round-off


def test_reversed_spectrum_has_ratio_of_spectra_and_is_unaligned(base):
    U, S, Vh = base
    dW = build(U, S[::-1], Vh)  # the same vectors with the order of σ reversed
    res = cumgrad_ranks(svd_of(dW), svd_of(build(U, S, Vh)), max_rank=200)
    np.testing.assert_allclose(res["ratio"], 1, rtol=1e-5)  # the same singular values
    np.testing.assert_allclose(res["align_u"], 0, atol=1e-4)  # u_i(ΔW) = u_{21-i}(W_pt)
    np.testing.assert_allclose(res["align_v"], 0, atol=1e-4)


def test_unchanged_matrix_has_ratio_zero_and_no_alignment(base):
    res = cumgrad_ranks(svd_of(np.zeros((30, 20))), svd_of(build(*base)), max_rank=10)
    np.testing.assert_array_equal(res["s_delta"], 0)
    np.testing.assert_array_equal(res["ratio"], 0)
    assert np.isnan(res["align_u"]).all() and np.isnan(res["align_v"]).all()


@pytest.mark.parametrize("method", ["gram", "gesdd"])
@pytest.mark.parametrize("shape", [(7, 4), (4, 7)])
def test_svd_of_zero_matrix_is_finite_and_orthonormal(method, shape):
    U, S, Vh = (t[0].numpy() for t in svd_batch(torch.zeros(1, *shape), method=method))
    assert np.all(S == 0) and np.isfinite(U).all() and np.isfinite(Vh).all()
    np.testing.assert_allclose(U.T @ U, np.eye(4), atol=1e-6)
    np.testing.assert_allclose(Vh @ Vh.T, np.eye(4), atol=1e-6)


def test_ranks_stop_at_the_vectors_both_stores_hold(base):
    W = build(*base)
    delta, pt = svd_of(0.1 * W), svd_of(W)
    truncated = SVD(pt.U[:, :7], pt.S, pt.Vh[:7])
    assert len(cumgrad_ranks(delta, truncated, max_rank=200)["ratio"]) == 7
    assert len(cumgrad_ranks(delta, pt, max_rank=3)["ratio"]) == 3


# ------------------------------------------------------------------------------------- table

def test_table_is_tidy(base):
    W = build(*base)
    pt, delta = svd_of(W), svd_of(0.1 * W)
    table = cumgrad_table("p", {"00.ffn_in": delta, "dec.03.xattn_q": delta},
                          {"00.ffn_in": pt, "dec.03.xattn_q": pt, "01.ffn_out": pt}, max_rank=5)
    assert list(table.columns) == COLUMNS
    assert len(table) == 2 * 5
    assert set(table["layer"]) == {0, "dec.03"} and set(table["kind"]) == {"ffn_in", "xattn_q"}
    assert table["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    np.testing.assert_allclose(table["ratio"], 0.1, rtol=1e-5)


def test_table_names_a_matrix_missing_from_the_pretrained_store(base):
    svd = svd_of(build(*base))
    with pytest.raises(KeyError, match="02.attn_q"):
        cumgrad_table("p", {"02.attn_q": svd}, {"00.attn_q": svd}, 5)


def test_table_names_a_matrix_of_another_shape(base):
    with pytest.raises(AssertionError, match="00.ffn_in"):
        cumgrad_table("p", {"00.ffn_in": svd_of(build(*base))}, {"00.ffn_in": svd_of(np.ones((4, 3)))}, 5)


# -------------------------------------------------------------------------------- delta store

def _weights(path, mats):
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        for k, v in mats.items():
            f.create_dataset(k, data=np.asarray(v, dtype=np.float32))


@pytest.fixture
def pair_stores(tmp_path):
    rng = np.random.default_rng(0)
    pt = {"00.ffn_in": rng.standard_normal((24, 8)), "00.ffn_out": rng.standard_normal((8, 24)),
          "01.attn_q": rng.standard_normal((8, 8)), "01.attn_k": rng.standard_normal((8, 8))}
    ft = {k: v + 0.01 * rng.standard_normal(v.shape) for k, v in pt.items() if k != "01.attn_k"}
    ft["01.attn_q"] = pt["01.attn_q"]  # frozen: ΔW == 0
    ft["02.attn_v"] = rng.standard_normal((8, 8))
    _weights(tmp_path / "pt.h5", pt)
    _weights(tmp_path / "ft.h5", ft)
    return tmp_path, pt, ft


def test_delta_store_has_the_svd_layout_and_reconstructs_delta(pair_stores, caplog):
    tmp, pt, ft = pair_stores
    with caplog.at_level(logging.WARNING):
        summary = write_delta_store(tmp / "pt.h5", tmp / "ft.h5", tmp / "delta.h5", device="cpu")
    assert summary["only_pretrained"] == ["01.attn_k"] and summary["only_finetuned"] == ["02.attn_v"]
    assert "01.attn_k" in caplog.text and "02.attn_v" in caplog.text
    back = read_svd(tmp / "delta.h5")
    assert set(back) == {"00.ffn_in", "00.ffn_out", "01.attn_q"}
    with h5py.File(tmp / "delta.h5") as f:
        assert "largest" in f.attrs["sign_convention"] and f.attrs["matrix"] == "ΔW = W_ft - W_pt"
        assert tuple(f["00.ffn_out"].attrs["shape"]) == (8, 24)
        assert {name: f["00.ffn_in"][name].dtype for name in ("U", "S", "Vh")} == dict.fromkeys(("U", "S", "Vh"),
                                                                                                 np.float32)
    for key in ("00.ffn_in", "00.ffn_out"):
        dW = np.float32(ft[key]) - np.float32(pt[key])  # (out, in)
        assert reconstruction_error(dW, back[key]) < 1e-5
    frozen = back["01.attn_q"]
    assert np.all(frozen.S == 0) and np.isfinite(frozen.U).all() and np.isfinite(frozen.Vh).all()


def test_delta_store_refuses_shape_mismatch_naming_the_matrix(tmp_path):
    _weights(tmp_path / "pt.h5", {"00.ffn_in": np.ones((4, 3))})
    _weights(tmp_path / "ft.h5", {"00.ffn_in": np.ones((3, 4))})
    with pytest.raises(ValueError, match="matrix 00.ffn_in is"):
        write_delta_store(tmp_path / "pt.h5", tmp_path / "ft.h5", tmp_path / "delta.h5", device="cpu")
    assert not (tmp_path / "delta.h5").exists()


# ------------------------------------------------------------------------------------ figures

def _tables(ratios: dict[tuple[str, str], float], ranks=3):
    """Synthetic cumgrad and alignment tables: matrix (pair, id) has r_i = ratio / i."""
    cum, ali = [], []
    for (pair, key), r1 in ratios.items():
        layer, kind = int(key[:2]), key[3:]
        for i in range(1, ranks + 1):
            cum.append({"pair": pair, "layer": layer, "kind": kind, "rank": i, "s_delta": r1, "s_pt": float(i),
                        "ratio": r1 / i, "align_u": 0.5, "align_v": 0.4})
            ali += [{"pair": pair, "layer": layer, "kind": kind, "side": s, "rank": i, "cos": 0.9, "dim": d}
                    for s, d in (("u", 12), ("v", 8))]
    return pd.DataFrame(cum), pd.DataFrame(ali)


RATIOS = {("a", "00.ffn_in"): 0.2, ("a", "01.attn_q"): 0.01, ("b", "00.ffn_in"): 0.7, ("b", "03.ffn_out"): 0.05,
          ("b", "02.attn_v"): 0.0}  # unchanged: not a candidate for the smallest r_1


def test_fig3_picks_smallest_and_largest_r1():
    cum, ali = _tables(RATIOS)
    fig, details = fig3(cum, ali)
    assert details == {"smallest_r1": {"pair": "a", "id": "01.attn_q", "r1": 0.01},
                       "largest_r1": {"pair": "b", "id": "00.ffn_in", "r1": 0.7}}
    titles = [ax.get_title() for ax in fig.axes]
    assert any("a 01.attn_q" in t for t in titles) and any("b 00.ffn_in" in t for t in titles)
    from specbasis.analysis.alignment import random_cos
    dashed = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]  # the random reference
    assert [line.get_xdata()[0] for line in dashed] == pytest.approx([(random_cos(12) + random_cos(8)) / 2])
    levels = sorted(line.get_ydata()[0] for line in fig.axes[1].lines if line.get_linestyle() == "--")
    assert levels == pytest.approx(sorted([random_cos(12), random_cos(8)]))


@pytest.mark.parametrize("layer,kind,expected", [(3, "ffn_in", "03.ffn_in"), ("dec.01", "xattn_q", "dec.01.xattn_q"),
                                                 (2, "ffn_in.1", "02.ffn_in.1")])
def test_matrix_id_inverts_the_id_columns(layer, kind, expected):
    assert matrix_id(layer, kind) == expected


def test_fig19_has_a_panel_per_rank_present():
    cum, ali = _tables(RATIOS, ranks=12)
    fig = fig19(cum, ali)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["rank 1", "rank 5", "rank 10"]  # no rank 100


def test_fig20_renders_a_panel_per_pair():
    cum, _ = _tables(RATIOS)
    assert [ax.get_title() for ax in fig20(cum).axes if ax.get_title()] == ["a", "b"]


# -------------------------------------------------------------------- the scripts, by hand

def _script(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scripts_run_by_hand(pair_stores):
    tmp, _, _ = pair_stores
    write_svd_store(tmp / "pt.h5", tmp / "svd_pt.h5", device="cpu")
    _script("delta_svd").main(str(tmp / "pt.h5"), str(tmp / "ft.h5"), str(tmp / "delta.h5"), "all", "auto", "cpu", 1)
    _script("cumgrad").main("p", str(tmp / "delta.h5"), str(tmp / "svd_pt.h5"), str(tmp / "cumgrad.csv"), 5)
    table = pd.read_csv(tmp / "cumgrad.csv")
    assert list(table.columns) == COLUMNS and table.groupby(["layer", "kind"]).ngroups == 3
    cum, ali = _tables(RATIOS)
    cum.to_csv(tmp / "c.csv", index=False)
    ali.to_csv(tmp / "a.csv", index=False)
    out = {k: str(tmp / f"fig3.{k}") for k in ("pdf", "png", "json")}
    _script("fig3").main([str(tmp / "c.csv")], [str(tmp / "a.csv")], str(STYLE), out["pdf"], out["png"], out["json"])
    assert json.loads(Path(out["json"]).read_text())["largest_r1"]["id"] == "00.ffn_in"
    _script("fig19").main([str(tmp / "c.csv")], [str(tmp / "a.csv")], str(STYLE), str(tmp / "19.pdf"),
                          str(tmp / "19.png"))
    _script("fig20").main([str(tmp / "c.csv")], str(STYLE), str(tmp / "20.pdf"), str(tmp / "20.png"))
    assert all((tmp / f).stat().st_size > 0 for f in ("fig3.pdf", "fig3.png", "19.pdf", "19.png", "20.pdf", "20.png"))
