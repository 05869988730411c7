"""Alignment of matched singular vectors, on matrices with known answers."""
import numpy as np
import pytest
from scipy.stats import ortho_group

from specbasis.analysis.alignment import (COLUMNS, align_pair, alignment_table, matched_cos, random_cos, random_subspace,
                                 relative_gap, subspace_similarity)
from specbasis.svd import SVD, svd_all


def svd_of(W):
    (_, svd), = svd_all({"w": W.astype(np.float32)}, progress=False)
    return svd


def build(U, S, Vh):
    return (U * S) @ Vh


@pytest.fixture
def base():
    rng = np.random.default_rng(0)
    U, Vh = ortho_group.rvs(30, random_state=1)[:, :20], ortho_group.rvs(20, random_state=2)
    S = np.linspace(10, 1, 20)  # well separated: every singular pair is well defined
    return U, S, Vh


def test_matrix_aligned_with_itself_is_one_at_every_rank(base):
    svd = svd_of(build(*base))
    cos = align_pair(svd, svd, max_rank=200)
    assert len(cos["u"]) == 20 and len(cos["v"]) == 20  # fewer than max_rank: all ranks
    np.testing.assert_allclose(cos["u"], 1, atol=1e-6)
    np.testing.assert_allclose(cos["v"], 1, atol=1e-6)


def test_sign_flips_change_nothing(base):
    U, S, Vh = base
    pt = SVD(U, S, Vh)
    signs = np.where(np.arange(20) % 3 == 0, -1.0, 1.0)
    ft = SVD(U * signs, S, Vh * signs[:, None])  # the same matrix, other signs
    np.testing.assert_allclose(build(ft.U, ft.S, ft.Vh), build(U, S, Vh), atol=1e-10)
    cos = align_pair(pt, ft, 200)
    np.testing.assert_allclose(cos["u"], 1, atol=1e-12)
    np.testing.assert_allclose(cos["v"], 1, atol=1e-12)


def test_known_rotation_gives_its_cosine(base):
    U, S, Vh = base
    theta = 0.3
    u1, u2 = U[:, :1], U[:, 1:2]
    # rotate the output space by theta within span(u1, u2): u1 -> cos u1 + sin u2, u2 -> -sin u1 + cos u2
    R = (np.eye(30) + (np.cos(theta) - 1) * (u1 @ u1.T + u2 @ u2.T) + np.sin(theta) * (u2 @ u1.T - u1 @ u2.T))
    cos = align_pair(svd_of(build(U, S, Vh)), svd_of(build(R @ U, S, Vh)), 200)
    np.testing.assert_allclose(cos["u"][:2], np.cos(theta), atol=1e-4)
    np.testing.assert_allclose(cos["u"][2:], 1, atol=1e-4)  # the rest of the basis is untouched
    np.testing.assert_allclose(cos["v"], 1, atol=1e-4)      # and so is the input side


def test_independent_random_bases_give_the_random_vector_value():
    d = 300
    A, B = ortho_group.rvs(d, random_state=3), ortho_group.rvs(d, random_state=4)
    cos = matched_cos(A, B, axis=0)
    assert abs(cos.mean() - random_cos(d)) < 0.1 * random_cos(d)  # ≈ 0.046 ± 5σ of the mean


@pytest.mark.parametrize("d,expected", [(1, 1.0), (2, 2 / np.pi), (3, 0.5)])
def test_random_cos_known_values(d, expected):
    assert random_cos(d) == pytest.approx(expected)


def test_random_cos_matches_monte_carlo():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 20000, 64))
    mc = np.abs(np.sum(x * y, 1)) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert random_cos(64) == pytest.approx(mc.mean(), rel=0.02)
    assert random_cos(64) == pytest.approx(np.sqrt(2 / (np.pi * 64)), rel=0.01)


def test_table_is_tidy_and_lists_ids_in_one_model(base):
    svd = svd_of(build(*base))
    table, only = alignment_table("p", {"00.ffn_in": svd, "03.attn_q": svd, "01.ffn_out": svd},
                                  {"00.ffn_in": svd, "03.attn_q": svd, "02.ffn_out": svd}, max_rank=5)
    assert list(table.columns) == COLUMNS
    assert only == ["01.ffn_out", "02.ffn_out"]
    assert len(table) == 2 * 2 * 5  # two ids, two sides, five ranks
    assert set(table["layer"]) == {0, 3} and set(table["kind"]) == {"ffn_in", "attn_q"}
    assert table["rank"].min() == 1 and table["rank"].max() == 5
    np.testing.assert_allclose(table["cos"], 1, atol=1e-6)


def test_shape_mismatch_names_the_matrix(base):
    a, b = svd_of(build(*base)), svd_of(np.ones((4, 3)))
    with pytest.raises(AssertionError, match="00.ffn_in"):
        alignment_table("p", {"00.ffn_in": a}, {"00.ffn_in": b}, 5)


def test_rotation_within_a_near_degenerate_pair_keeps_the_subspace(base):
    """σ_2 ≈ σ_3, and the finetuned u_2, u_3 rotated by 45° in their plane: matched |cos| drops to
    cos 45° at ranks 2 and 3, but the top-3 subspace is unchanged (similarity 1)."""
    U, S, Vh = base
    S = S.copy()
    S[2] = S[1] * (1 - 1e-3)
    theta = np.pi / 4
    R = np.eye(20)
    R[1:3, 1:3] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    pt, ft = SVD(U, S, Vh), SVD(U @ R, S, R.T @ Vh)  # same S: the pair is rotated on both sides
    table, _ = alignment_table("p", {"00.ffn_in": pt}, {"00.ffn_in": ft}, max_rank=20)
    u = table[table["side"] == "u"].set_index("rank")
    np.testing.assert_allclose(u.loc[[2, 3], "cos"], np.cos(theta), atol=1e-9)
    np.testing.assert_allclose(u.loc[1, "subspace"], 1, atol=1e-12)
    np.testing.assert_allclose(u.loc[2, "subspace"], (1 + np.cos(theta) ** 2) / 2, atol=1e-9)  # split pair
    np.testing.assert_allclose(u.loc[3:, "subspace"], 1, atol=1e-9)  # the whole plane is kept
    assert u.loc[2, "gap_pt"] == pytest.approx(1e-3)  # the gap flags rank 2 as ill-defined
    assert u.loc[1, "gap_pt"] > 0.01 and (u["dim"] == 30).all()
    assert (table[table["side"] == "v"]["dim"] == 20).all()


def test_random_subspaces_give_k_over_d():
    d, r = 200, 50
    A, B = ortho_group.rvs(d, random_state=6)[:, :r], ortho_group.rvs(d, random_state=7)[:, :r]
    sim = subspace_similarity(A, B)
    k = np.arange(1, r + 1)
    assert abs(sim[-1] - random_subspace(r, d)) < 0.05  # k/d = 0.25
    np.testing.assert_allclose(subspace_similarity(A, A), 1, atol=1e-12)
    assert random_subspace(k, d)[9] == pytest.approx(10 / 200)


def test_relative_gap():
    np.testing.assert_allclose(relative_gap(np.array([4.0, 2.0, 2.0, 1.0, 0.0])), [0.5, 0.0, 0.5, 1.0, 0.0])
