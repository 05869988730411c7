"""Spectra statistics, explained variance, and their figures and table, on spectra with known answers."""
import h5py
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from specbasis.figures.spectra import fig6, fig16, table4
from specbasis.io.tables import to_latex, to_markdown
from specbasis.analysis.spectra import (ENERGY_COLUMNS, MATRIX_COLUMNS, RANK_COLUMNS, Spectrum, effective_rank,
                               energy_table, matrix_stats, read_spectra, relative_change, spectra_tables)
from specbasis.svd import write_svd_store

S = np.array([8.0, 4.0, 2.0, 1.0])


def spec(s, shape=None):
    s = np.asarray(s, dtype=np.float64)
    return Spectrum(s, shape or (len(s) + 2, len(s)))


# (name, s_ft, rsd, mrc, maxrc, t1rc): the finetuned spectrum of the pretrained S and its answers
CASES = [
    ("identical", S, 0.0, 0.0, 0.0, 0.0),
    ("all x1.1", 1.1 * S, 0.1, 0.1, 0.1, 0.1),
    ("all x0.7", 0.7 * S, 0.3, 0.3, 0.3, -0.3),
    # σ1 8 -> 10: ||Δs|| = 2, ||s|| = sqrt(85); rc = (0.25, 0, 0, 0)
    ("σ1 only", np.array([10.0, 4.0, 2.0, 1.0]), 2 / np.sqrt(85), 0.25 / 4, 0.25, 0.25),
]


@pytest.mark.parametrize("name,s_ft,rsd,mrc,maxrc,t1rc", CASES, ids=[c[0] for c in CASES])
def test_known_changes(name, s_ft, rsd, mrc, maxrc, t1rc):
    stats = matrix_stats(spec(S), spec(s_ft))
    assert stats["rsd"] == pytest.approx(rsd, abs=1e-12)
    assert stats["mrc"] == pytest.approx(mrc, abs=1e-12)
    assert stats["maxrc"] == pytest.approx(maxrc, abs=1e-12)
    assert stats["t1rc"] == pytest.approx(t1rc, abs=1e-12)


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_rescaling_keeps_the_effective_rank(c):
    stats = matrix_stats(spec(S), spec(c * S))
    assert stats["d_erank"] == pytest.approx(0, abs=1e-12)
    assert stats["erank_pt"] == pytest.approx(effective_rank(S))


def test_tail_is_the_smallest_tenth_unsigned():
    s_pt = np.arange(20, 0, -1.0)                 # 20 .. 1: the tail is ranks 19, 20 (values 2, 1)
    s_ft = s_pt.copy()
    s_ft[[18, 19]] = [2.5, 0.5]                  # rc = +0.25, -0.5
    s_ft[0] = 30.0                               # outside the tail: rc_1 = +0.5
    stats = matrix_stats(spec(s_pt), spec(s_ft))
    assert stats["tailrc"] == pytest.approx((0.25 + 0.5) / 2)
    assert stats["t1rc"] == pytest.approx(0.5)
    assert stats["mrc"] == pytest.approx((0.5 + 0.25 + 0.5) / 20)


@pytest.mark.parametrize("r,tail", [(1, 1), (9, 1), (10, 1), (11, 2), (30, 3)])
def test_tail_takes_at_least_a_tenth_and_one_value(r, tail):
    s_pt = np.arange(r, 0, -1.0)
    s_ft = s_pt * np.where(np.arange(r) >= r - tail, 2.0, 1.0)  # only the tail doubles
    assert matrix_stats(spec(s_pt), spec(s_ft))["tailrc"] == pytest.approx(1.0)


@pytest.mark.parametrize("s,expected", [
    (np.ones(7), 7.0),                      # flat spectrum of r values: r
    (np.array([3.0, 0, 0, 0]), 1.0),        # rank 1: 1 (zeros contribute 0)
    (np.array([1.0, 1.0, 0, 0]), 2.0),
    (np.array([3.0, 1.0]), np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))),
])
def test_effective_rank(s, expected):
    assert effective_rank(s) == pytest.approx(expected)


def test_zero_pretrained_values_are_left_out_of_relative_changes():
    pt = spec([4.0, 2.0, 1e-9, 0.0], shape=(6, 4))   # the last two are numerically zero
    ft = spec([4.0, 3.0, 0.1, 0.2], shape=(6, 4))
    rc = relative_change(pt, ft)
    np.testing.assert_allclose(rc[:2], [0.0, 0.5])
    assert np.isnan(rc[2:]).all()
    stats = matrix_stats(pt, ft)
    assert stats["mrc"] == pytest.approx(0.25) and stats["maxrc"] == pytest.approx(0.5)
    assert np.isnan(stats["tailrc"])          # the tail (rank 4) has no defined change
    assert np.isfinite(stats["rsd"]) and np.isfinite(stats["d_erank"])


def test_energy_is_monotone_and_ends_at_one():
    rng = np.random.default_rng(0)
    table = energy_table("m", {"00.ffn_in": np.sort(rng.random(30))[::-1], "01.attn_q": np.array([2.0, 1.0])})
    assert list(table.columns) == ENERGY_COLUMNS
    for _, g in table.groupby(["layer", "kind"]):
        assert (np.diff(g["energy"]) >= 0).all()
        assert g["energy"].iloc[-1] == pytest.approx(1.0)
        assert g["rel_rank"].iloc[-1] == 1.0
    small = table[table["kind"] == "attn_q"]
    np.testing.assert_allclose(small["energy"], [0.8, 1.0])
    assert list(small["rank"]) == [1, 2] and list(small["layer"]) == [1, 1]


@pytest.fixture
def tables():
    pt = {"00.ffn_in": spec(S), "01.ffn_in": spec(S), "01.ffn_out": spec(S), "01.attn_q": spec(S),
          "02.ffn_out": spec(S)}
    ft = {"00.ffn_in": spec(S), "01.ffn_in": spec(1.1 * S), "01.ffn_out": spec(0.9 * S), "01.attn_q": spec(S),
          "03.ffn_in": spec(S)}
    return spectra_tables("p", pt, ft)


def test_tables_are_tidy_and_list_ids_in_one_model(tables):
    per_matrix, per_rank, only = tables
    assert list(per_matrix.columns) == MATRIX_COLUMNS and list(per_rank.columns) == RANK_COLUMNS
    assert only == ["02.ffn_out", "03.ffn_in"]
    assert len(per_matrix) == 4 and len(per_rank) == 4 * len(S)
    assert set(per_matrix["layer"]) == {0, 1} and set(per_matrix["kind"]) == {"ffn_in", "ffn_out", "attn_q"}
    assert (per_matrix["m"] == 6).all() and (per_matrix["n"] == 4).all()
    assert list(per_rank["rank"][:4]) == [1, 2, 3, 4]
    np.testing.assert_allclose(per_rank["quantile"][:4], [0.125, 0.375, 0.625, 0.875])
    scaled = per_rank[(per_rank["layer"] == 1) & (per_rank["kind"] == "ffn_in")]
    np.testing.assert_allclose(scaled["rel_change"], 0.1)
    np.testing.assert_allclose(scaled["s_ft"], 1.1 * S)


def test_shape_mismatch_names_the_matrix():
    with pytest.raises(AssertionError, match="00.ffn_in"):
        spectra_tables("p", {"00.ffn_in": spec(S, (6, 4))}, {"00.ffn_in": spec(S, (4, 6))})


def test_read_spectra_gives_the_store_values_and_shapes(tmp_path):
    rng = np.random.default_rng(1)
    weights = {"00.ffn_in": rng.standard_normal((12, 5)), "00.ffn_out": rng.standard_normal((5, 12))}
    with h5py.File(tmp_path / "w.h5", "w") as f:
        for key, W in weights.items():
            f.create_dataset(key, data=W.astype(np.float32))
    write_svd_store(tmp_path / "w.h5", tmp_path / "svd.h5", rank=2)
    spectra = read_spectra(tmp_path / "svd.h5")
    for key, W in weights.items():
        assert spectra[key].shape == W.shape
        np.testing.assert_allclose(spectra[key].S, np.linalg.svd(W, compute_uv=False), rtol=1e-5)


def test_table4_keeps_the_last_blocks_ffn_rows(tables):
    per_matrix = pd.concat([tables[0], tables[0].assign(pair="q")], ignore_index=True)
    table = table4(per_matrix)
    assert list(table.columns) == ["pair", "layer", "matrix", "RSD", "MRC", "MaxRC", "T1RC", "TailRC",
                                   "ER_pt", "ER_ft", "ΔER"]
    assert list(zip(table["pair"], table["layer"], table["matrix"])) == [
        ("p", 1, "ffn_in"), ("p", 1, "ffn_out"), ("q", 1, "ffn_in"), ("q", 1, "ffn_out")]
    np.testing.assert_allclose(table["RSD"], [0.1, 0.1, 0.1, 0.1])


def test_markdown_and_latex_hold_the_numbers(tables):
    table = table4(tables[0]).assign(T1RC=[0.123456, -0.0987654])
    md, tex = to_markdown(table), to_latex(table)
    for text in (md, tex):
        assert "0.1235" in text and "-0.09877" in text and "ffn" in text
    assert md.startswith("|") and "ΔER" in md
    assert r"\begin{tabular}" in tex and r"$\Delta$ER" in tex and r"ffn\_in" in tex and "Δ" not in tex


def test_figures_draw_from_small_tables(tables):
    _, per_rank, _ = tables
    energy = pd.concat([energy_table(model, {k: v.S for k, v in spectra.items()})
                        for model, spectra in (("a", {"01.ffn_in": spec(S), "01.ffn_out": spec(S)}),
                                               ("b", {"00.ffn_in": spec(np.ones(300))}))], ignore_index=True)
    for fig in (fig6(pd.concat([per_rank, per_rank.assign(pair="q")])), fig16(energy)):
        assert isinstance(fig, plt.Figure)
        plt.close(fig)
