"""specbasis.analysis.intruders on constructed matrices with known intruders."""
from __future__ import annotations

import numpy as np
import pytest

from specbasis.analysis.intruders import EPSILONS, MARK, intruder_counts, max_cos
from specbasis.svd import SVD


def svd_of(W: np.ndarray) -> SVD:
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    return SVD(U, S, Vh)


def basis(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(m, m)))
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return U, V


def test_a_rotation_of_one_vector_below_epsilon_is_exactly_one_intruder():
    """W = U diag(S) Vᵀ with 20 of 30 output directions used; the finetuned W rotates u_3 by θ towards an unused
    direction e (cos θ = 0.3): ũ_3 = 0.3 u_3 + 0.954 e has |cos| 0.3 with u_3 and 0 with every other u_j."""
    U, V = basis(30, 20, 0)
    S = np.linspace(10, 1, 20)
    pt = U[:, :20] @ np.diag(S) @ V.T
    rotated = U[:, :20].copy()
    c = 0.3
    rotated[:, 3] = c * U[:, 3] + np.sqrt(1 - c ** 2) * U[:, 25]
    ft = rotated @ np.diag(S) @ V.T
    counts = intruder_counts(svd_of(pt), svd_of(ft))
    assert counts == {eps: int(eps > c) for eps in EPSILONS}
    assert counts[MARK] == 1
    assert max_cos(svd_of(pt).U, svd_of(ft).U)[3] == pytest.approx(c)


def test_swaps_sign_flips_and_small_changes_are_not_intruders():
    U, V = basis(24, 16, 1)
    S = np.linspace(8, 1, 16)
    pt = U[:, :16] @ np.diag(S) @ V.T
    swapped = S.copy()
    swapped[[0, 1]] = swapped[[1, 0]]   # σ₁ and σ₂ trade places: the order of the vectors swaps
    flipped = U[:, :16] * np.where(np.arange(16) % 2, -1, 1)
    ft = flipped @ np.diag(swapped) @ V.T + 1e-3 * np.random.default_rng(2).normal(size=(24, 16))
    assert intruder_counts(svd_of(pt), svd_of(ft)) == dict.fromkeys(EPSILONS, 0)
    assert intruder_counts(svd_of(pt), svd_of(ft), side="v") == dict.fromkeys(EPSILONS, 0)


def test_a_new_direction_added_on_top_is_an_intruder_in_u_and_v():
    """A full-rank 30 x 24 W plus a rank-one 9·e v₆ᵀ with e outside the 24 pretrained left vectors (9 above σ₁ = 5):
    the new top left vector is (σ₆ u₆ + 9 e) / norm, |cos| σ₆ / √(σ₆² + 81) ≈ 0.41 with u₆ and 0 with the others:
    an intruder at ε = 0.5, not at 0.2; transposed, the same update is a new top right vector."""
    U, V = basis(30, 24, 3)
    S = np.linspace(5, 1, 24)
    pt = U[:, :24] @ np.diag(S) @ V.T
    ft = pt + 9.0 * np.outer(U[:, 27], V[:, 5])
    counts = intruder_counts(svd_of(pt), svd_of(ft), top=5)
    assert counts[MARK] == 1 and counts[0.2] == 0
    top = max_cos(svd_of(pt).U, svd_of(ft).U, 1)[0]
    assert top == pytest.approx(S[5] / np.sqrt(S[5] ** 2 + 81), abs=0.02)
    assert intruder_counts(svd_of(pt.T), svd_of(ft.T), top=5, side="v") == counts
    with pytest.raises(ValueError, match="allowed: u, v"):
        intruder_counts(svd_of(pt), svd_of(ft), side="w")


def test_basis_rows_cover_the_changed_matrices_only():
    from specbasis.analysis.intruders import basis_rows

    U, V = basis(30, 20, 0)
    S = np.linspace(10, 1, 20)
    W = U[:, :20] @ np.diag(S) @ V.T
    rotated = U[:, :20].copy()
    rotated[:, 3] = 0.3 * U[:, 3] + np.sqrt(1 - 0.09) * U[:, 25]
    pretrained = {"00.ffn_in": W, "00.ffn_out": W[:20, :].copy()}
    finetuned = {"00.ffn_in": rotated @ np.diag(S) @ V.T, "00.ffn_out": W[:20, :].copy()}
    table = basis_rows("m", pretrained, {k: svd_of(w) for k, w in pretrained.items()}, finetuned)
    assert list(table["kind"]) == ["ffn_in"] and table["layer"].tolist() == [0]
    row = table.iloc[0]
    assert row["intruders_0.5"] == 1 and row["intruders_0.3"] == 0 and row["intruders_0.4"] == 1
    assert row["relative_change"] == pytest.approx(np.linalg.norm(finetuned["00.ffn_in"] - W) / np.linalg.norm(W))
    assert row["alignment_u"] == pytest.approx((9 + 0.3) / 10, abs=1e-6) and row["alignment_v"] == pytest.approx(1)
