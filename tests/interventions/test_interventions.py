"""Interventions on tiny matrices with known answers: what each edit does to W's singular structure."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from specbasis.interventions.edits import (HOWS, LowRank, edit_correction, edit_group, group_ids, mask_correction,
                                     mask_count, mask_group, masked_components, matrix_rng, replacement,
                                     swap_correction)
from specbasis.svd import SVD, svd_batch

SHAPES = [(7, 5), (5, 7), (6, 6)]  # tall, wide, square: r = 5, 5, 6


def random_matrix(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def svd_of(W: np.ndarray, rank: int | None = None) -> SVD:
    """The SVD as the stage stores it: float32, signs fixed (svd.fix_signs)."""
    U, S, Vh = (t[0].numpy() for t in svd_batch(torch.from_numpy(W)[None], rank))
    return SVD(U, S, Vh)


def edited(W: np.ndarray, delta: LowRank) -> np.ndarray:
    return W.astype(np.float64) + delta.dense()


def sigma(W: np.ndarray) -> np.ndarray:
    return np.linalg.svd(W, compute_uv=False)


def rng_for(how):
    return matrix_rng(0, "00.ffn_in") if how.startswith("random") else None


def donor_for(how, shape):
    return svd_of(random_matrix(shape, seed=1)) if how in ("pretrained", "cross") else None


# ------------------------------------------------------------------------------ exact no-ops

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("how", HOWS)
def test_k0_is_exactly_no_edit(how, shape):
    W = random_matrix(shape)
    delta = edit_correction(svd_of(W), how, 0, donor_for(how, shape), rng_for(how))
    assert delta.rank == 0
    assert np.array_equal(delta.dense(), np.zeros(shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_swapping_a_matrix_own_vectors_into_it_changes_nothing(shape, k):
    svd = svd_of(random_matrix(shape))
    for how in ("pretrained", "cross"):
        assert np.array_equal(edit_correction(svd, how, k, donor=svd).dense(), np.zeros(shape))


@pytest.mark.parametrize("shape", SHAPES)
def test_a_donor_equal_up_to_joint_sign_flips_changes_nothing(shape):
    """σ u vᵀ = σ (-u)(-v)ᵀ: donor vectors need no sign matching."""
    svd = svd_of(random_matrix(shape))
    flip = np.array([1, -1, 1, -1, -1, 1][:len(svd.S)], np.float32)
    donor = SVD(svd.U * flip, svd.S, svd.Vh * flip[:, None])
    np.testing.assert_allclose(edit_correction(svd, "pretrained", 4, donor=donor).dense(), 0, atol=1e-6)


@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
def test_mask_fraction_0_is_exactly_no_edit(order):
    delta = mask_correction(svd_of(random_matrix((7, 5))), order, 0.0)
    assert delta.rank == 0 and not delta.dense().any()


# --------------------------------------------------------------------------- known answers

@pytest.mark.parametrize("shape", SHAPES)
def test_swapping_every_pair_gives_the_donor_vectors_with_own_sigma(shape):
    W, P = random_matrix(shape), random_matrix(shape, seed=1)
    ft, pre = svd_of(W), svd_of(P)
    r = len(ft.S)
    expected = (pre.U.astype(np.float64) * ft.S) @ pre.Vh
    np.testing.assert_allclose(edited(W, edit_correction(ft, "pretrained", r, donor=pre)), expected, atol=1e-5)
    np.testing.assert_allclose(sigma(expected), ft.S, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_zero_removes_the_top_k_sigma(shape, k):
    W = random_matrix(shape)
    svd = svd_of(W)
    got = sigma(edited(W, edit_correction(svd, "zero", k)))
    np.testing.assert_allclose(got, np.r_[svd.S[k:], np.zeros(k)], atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 3])
def test_random_orthogonal_keeps_orthonormal_vectors_and_every_sigma_random_does_not(shape, k):
    W = random_matrix(shape)
    svd = svd_of(W)
    r = len(svd.S)
    for how in ("random_orthogonal", "random"):
        X, Yh = replacement(svd, how, k, rng=matrix_rng(0, "00.ffn_in"))
        np.testing.assert_allclose(np.linalg.norm(X, axis=0), 1, atol=1e-12)  # unit vectors either way
        np.testing.assert_allclose(np.linalg.norm(Yh, axis=1), 1, atol=1e-12)
        U = np.concatenate([X, svd.U[:, k:]], axis=1)     # (m, r) the edited W's left vectors
        V = np.concatenate([Yh, svd.Vh[k:]], axis=0).T    # (n, r)
        off = max(np.abs(U.T @ U - np.eye(r)).max(), np.abs(V.T @ V - np.eye(r)).max())
        got = sigma(edited(W, swap_correction(svd, X, Yh)))
        if how == "random_orthogonal":
            assert off < 1e-6
            np.testing.assert_allclose(got, svd.S, atol=1e-5)   # the edited W: σ exactly as before
        else:
            assert off > 0.05                                    # Gaussian directions overlap ~ 1/sqrt(d)
            assert np.abs(got - svd.S).max() > 1e-3


def test_random_vectors_are_seeded_per_matrix():
    svd = svd_of(random_matrix((7, 5)))
    a = replacement(svd, "random", 2, rng=matrix_rng(3, "00.ffn_in"))[0]
    b = replacement(svd, "random", 2, rng=matrix_rng(3, "00.ffn_in"))[0]
    c = replacement(svd, "random", 2, rng=matrix_rng(3, "01.ffn_in"))[0]
    assert np.array_equal(a, b) and not np.allclose(a, c)


@pytest.mark.parametrize("fraction, r, count", [
    (0.0, 5, 0), (1.0, 5, 5), (0.5, 5, 3), (0.5, 4, 2), (0.2, 5, 1), (0.1, 4, 0), (0.125, 4, 1), (0.99, 6, 6),
])
def test_mask_count_rounds_half_up(fraction, r, count):
    assert mask_count(fraction, r) == count


@pytest.mark.parametrize("order, fraction, expected", [
    ("top_down", 0.4, [0, 1]), ("bottom_up", 0.4, [3, 4]), ("top_down", 1.0, [0, 1, 2, 3, 4]),
    ("bottom_up", 1.0, [0, 1, 2, 3, 4]), ("bottom_up", 0.0, []),
])
def test_masked_components(order, fraction, expected):
    assert masked_components(order, fraction, 5).tolist() == expected


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
def test_masking_removes_the_chosen_sigma(shape, order):
    W = random_matrix(shape)
    svd = svd_of(W)
    removed = masked_components(order, 0.4, len(svd.S))
    kept = np.delete(svd.S, removed)
    got = sigma(edited(W, mask_correction(svd, order, 0.4)))
    np.testing.assert_allclose(got, np.r_[kept, np.zeros(len(removed))], atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_mask_fraction_1_is_the_same_in_both_orders_and_removes_everything(shape):
    W = random_matrix(shape)
    svd = svd_of(W)
    top, bottom = mask_correction(svd, "top_down", 1.0), mask_correction(svd, "bottom_up", 1.0)
    assert np.array_equal(top.dense(), bottom.dense())
    np.testing.assert_allclose(edited(W, top), 0, atol=1e-5)


# ------------------------------------------------------------------------------------ groups

IDS = ["enc.00.attn_q", "enc.00.ffn_in", "enc.00.ffn_out", "enc.00.attn_o", "dec.00.xattn_k", "dec.00.attn_v",
       "dec.00.ffn_in", "03.ffn_in.1"]


@pytest.mark.parametrize("group, expected", [
    ("ffn", ["03.ffn_in.1", "enc.00.ffn_in", "enc.00.ffn_out", "dec.00.ffn_in"]),
    ("attn", ["enc.00.attn_q", "enc.00.attn_o", "dec.00.attn_v"]),
    ("xattn", ["dec.00.xattn_k"]),
])
def test_group_ids(group, expected):
    assert group_ids(IDS, group) == expected


def test_edit_group_and_mask_group_give_one_correction_per_matrix():
    svds = {"00.ffn_in": svd_of(random_matrix((7, 5))), "00.ffn_out": svd_of(random_matrix((5, 7), 2))}
    got = edit_group(svds, list(svds), "random", 2, seed=1, model="m")
    assert sorted(got) == sorted(svds) and all(d.rank == 4 for d in got.values())
    again = edit_group(svds, ["00.ffn_out"], "random", 2, seed=1, model="m")
    assert np.array_equal(again["00.ffn_out"].left, got["00.ffn_out"].left)  # per-matrix seeds
    masked = mask_group(svds, list(svds), "bottom_up", 0.4, model="m")
    assert all(d.rank == 2 for d in masked.values())


# ------------------------------------------------------------------------------------ errors

SVD75 = svd_of(random_matrix((7, 5)))
TOP3 = svd_of(random_matrix((7, 5)), rank=3)
RNG = matrix_rng(0, "x")


@pytest.mark.parametrize("call, exception, pattern", [
    (lambda: edit_correction(SVD75, "zero", 6, name="00.ffn_in of bert"), ValueError,
     r"matrix 00.ffn_in of bert: k=6 exceeds its rank min\(m, n\) = 5 \(shape \(7, 5\)\)"),
    (lambda: edit_correction(SVD75, "zero", -1, name="x"), ValueError, r"matrix x: k=-1 must be a whole number"),
    (lambda: edit_correction(TOP3, "zero", 4, name="x"), ValueError,
     r"matrix x: k=4 but the SVD store holds only the top 3 of its 5 .* svd.rank >= 4"),
    (lambda: edit_correction(SVD75, "pretrained", 2, donor=svd_of(random_matrix((5, 7))), name="x"), ValueError,
     r"matrix x: the donor's matrix has shape \(5, 7\), this one \(7, 5\)"),
    (lambda: edit_correction(SVD75, "cross", 4, donor=TOP3, name="x"), ValueError,
     r"matrix x: k=4 but the donor's SVD store holds only 3 vectors"),
    (lambda: edit_correction(SVD75, "cross", 2, name="x"), ValueError, r"matrix x: intervention 'cross' needs a donor"),
    (lambda: edit_correction(SVD75, "random", 2, donor=SVD75, rng=RNG, name="x"), ValueError,
     r"matrix x: intervention 'random' takes no donor"),
    (lambda: edit_correction(SVD75, "random", 2, name="x"), ValueError, r"matrix x: .*'random' needs a seeded rng"),
    (lambda: edit_correction(SVD75, "shuffle", 2, name="x"), ValueError,
     r"matrix x: unknown intervention 'shuffle'; allowed: pretrained, cross, random, random_orthogonal, zero"),
    (lambda: edit_correction(TOP3, "random_orthogonal", 2, rng=RNG, name="x"), ValueError,
     r"matrix x: random_orthogonal .* needs all 5 singular vectors, but the SVD store holds only 3"),
    (lambda: mask_correction(TOP3, "bottom_up", 0.2, name="x"), ValueError,
     r"matrix x: bottom-up masking needs all 5 singular vectors.*svd.rank: all"),
    (lambda: mask_correction(TOP3, "top_down", 0.8, name="x"), ValueError,
     r"matrix x: .*removes 4 components, but the SVD store holds only 3"),
    (lambda: mask_correction(SVD75, "top_down", 1.5), ValueError, r"masking fraction 1.5 is outside \[0, 1\]"),
    (lambda: mask_correction(SVD75, "middle", 0.5), ValueError,
     r"unknown masking order 'middle'; allowed: top_down, bottom_up"),
    (lambda: group_ids(["00.ffn_out", "01.ffn_in", "01.ffn_out"], "attn", model="effnet"), ValueError,
     r"model effnet: no attn matrices .*\(kinds: ffn_in, ffn_out\)"),
    (lambda: group_ids(IDS, "mlp"), ValueError, r"unknown matrix group 'mlp'; allowed: ffn, attn, xattn"),
    (lambda: edit_group({"00.ffn_out": SVD75}, ["00.ffn_out"], "pretrained", 1, donors={},
                        donor_model="the pretrained model"), KeyError,
     r"the pretrained model has no SVD of matrix '00.ffn_out'"),
    (lambda: edit_group({}, ["00.ffn_out"], "zero", 1, model="bert-rt"), KeyError,
     r"bert-rt has no SVD of matrix '00.ffn_out'"),
])
def test_bad_input_is_refused_naming_the_matrix_and_value(call, exception, pattern):
    with pytest.raises(exception, match=pattern):
        call()


def test_truncated_store_still_serves_top_k_edits_and_top_down_masks():
    W = random_matrix((7, 5))
    full, top3 = svd_of(W), svd_of(W, rank=3)
    np.testing.assert_allclose(edit_correction(top3, "zero", 3).dense(), edit_correction(full, "zero", 3).dense(),
                               atol=1e-6)
    np.testing.assert_allclose(mask_correction(top3, "top_down", 0.6).dense(),
                               mask_correction(full, "top_down", 0.6).dense(), atol=1e-6)
