"""SVD: reconstruction, the sign convention, batching and the HDF5 store."""
import h5py
import numpy as np
import pytest
import torch

from specbasis.svd import SVD, read_svd, reconstruction_error, svd_all, svd_batch, write_svd_store

SHAPES = [(8, 8), (12, 5), (5, 12), (64, 16), (1, 7)]


@pytest.mark.parametrize("shape", SHAPES)
def test_reconstructs_and_is_orthonormal(shape):
    rng = np.random.default_rng(0)
    W = rng.standard_normal(shape).astype(np.float32)
    (_, svd), = svd_all({"w": W}, progress=False)
    r = min(shape)
    assert svd.U.shape == (shape[0], r) and svd.S.shape == (r,) and svd.Vh.shape == (r, shape[1])
    assert reconstruction_error(W, svd) < 1e-5
    assert np.allclose(svd.U.T @ svd.U, np.eye(r), atol=1e-5)
    assert np.allclose(svd.Vh @ svd.Vh.T, np.eye(r), atol=1e-5)
    assert np.all(np.diff(svd.S) <= 0), "singular values must be descending"


def test_known_singular_values():
    W = np.diag([5.0, 3.0, 1.0]).astype(np.float32)[:, [2, 0, 1]]  # a permuted diagonal
    (_, svd), = svd_all({"w": W}, progress=False)
    np.testing.assert_allclose(svd.S, [5, 3, 1], rtol=1e-6)


def test_sign_convention_largest_entry_of_u_positive():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((20, 10)).astype(np.float32)
    for flip in (1.0, -1.0):  # -W has the same singular values and flipped vectors
        (_, svd), = svd_all({"w": flip * W}, progress=False)
        top = svd.U[np.abs(svd.U).argmax(axis=0), np.arange(svd.U.shape[1])]
        assert np.all(top > 0)
        assert reconstruction_error(flip * W, svd) < 1e-5


def test_signs_do_not_depend_on_batching():
    rng = np.random.default_rng(2)
    mats = {f"m{i}": rng.standard_normal((16, 8)).astype(np.float32) for i in range(5)}
    together = dict(svd_all(mats, progress=False))
    alone = {k: next(iter(svd_all({k: v}, progress=False)))[1] for k, v in mats.items()}
    for k in mats:
        np.testing.assert_allclose(together[k].U, alone[k].U, atol=1e-5)
        np.testing.assert_allclose(together[k].Vh, alone[k].Vh, atol=1e-5)


def test_small_batches_give_the_same_result():
    rng = np.random.default_rng(3)
    mats = {f"m{i}": rng.standard_normal((16, 8)).astype(np.float32) for i in range(5)}
    big = dict(svd_all(mats, progress=False))
    small = dict(svd_all(mats, progress=False, max_batch_bytes=1))  # one matrix a batch
    for k in mats:
        np.testing.assert_allclose(big[k].S, small[k].S, rtol=1e-6)


def test_rank_truncates_vectors_but_keeps_all_singular_values():
    W = torch.randn(2, 30, 20)
    U, S, Vh = svd_batch(W, rank=4)
    assert U.shape == (2, 30, 4) and S.shape == (2, 20) and Vh.shape == (2, 4, 20)


def _weights_file(path, mats):
    with h5py.File(path, "w") as f:
        for k, v in mats.items():
            f.create_dataset(k, data=v)


def test_store_roundtrip(tmp_path):
    rng = np.random.default_rng(4)
    mats = {"00.ffn_in": rng.standard_normal((24, 8)).astype(np.float32),
            "00.ffn_out": rng.standard_normal((8, 24)).astype(np.float32),
            "01.ffn_in": rng.standard_normal((24, 8)).astype(np.float32)}
    _weights_file(tmp_path / "w.h5", mats)
    write_svd_store(tmp_path / "w.h5", tmp_path / "svd.h5", rank="all", device="cpu")
    back = read_svd(tmp_path / "svd.h5")
    assert set(back) == set(mats)
    for k, W in mats.items():
        assert back[k].U.dtype == np.float32
        assert reconstruction_error(W, back[k]) < 1e-5
    with h5py.File(tmp_path / "svd.h5") as f:
        assert "largest" in f.attrs["sign_convention"]
    top2 = read_svd(tmp_path / "svd.h5", rank=2)
    assert top2["00.ffn_in"].U.shape == (24, 2) and top2["00.ffn_in"].S.shape == (8,)


def test_store_is_atomic(tmp_path):
    _weights_file(tmp_path / "w.h5", {"00.ffn_in": np.full((4, 4), np.nan, dtype=np.float32)})
    with pytest.raises(ValueError, match="matrix 00.ffn_in holds NaN"):
        write_svd_store(tmp_path / "w.h5", tmp_path / "svd.h5", device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.h5"], "no partial or temporary file may survive"


def test_cuda_refused_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no GPU"):
        list(svd_all({"w": np.eye(3, dtype=np.float32)}, device="cuda", progress=False))


def test_reconstruction_error_is_zero_for_exact():
    svd = SVD(np.eye(3), np.array([3.0, 2.0, 1.0]), np.eye(3))
    assert reconstruction_error(np.diag([3.0, 2.0, 1.0]), svd) == 0


@pytest.mark.parametrize("method", ["gram", "gesdd"])
@pytest.mark.parametrize("shape", [(40, 12), (12, 40), (24, 24)])
def test_methods_agree_with_float64_reference(method, shape):
    rng = np.random.default_rng(6)
    # known singular values, well separated, condition number 1e4
    r = min(shape)
    U0 = np.linalg.qr(rng.standard_normal((shape[0], r)))[0]
    V0 = np.linalg.qr(rng.standard_normal((shape[1], r)))[0]
    S0 = np.logspace(0, -4, r)
    W = ((U0 * S0) @ V0.T).astype(np.float32)
    U, S, Vh = (t[0].numpy() for t in svd_batch(torch.from_numpy(W)[None], method=method))
    np.testing.assert_allclose(S, S0, rtol=1e-3, atol=1e-6)
    assert reconstruction_error(W, SVD(U, S, Vh)) < 1e-5
    cos = np.abs(np.sum(U * U0, axis=0))
    assert cos[:r // 2].min() > 0.999  # the well-conditioned half matches the reference


def test_rank_deficient_matrix_falls_back_and_stays_orthonormal():
    rng = np.random.default_rng(7)
    W = (rng.standard_normal((30, 3)) @ rng.standard_normal((3, 10))).astype(np.float32)  # rank 3
    U, S, Vh = (t[0].numpy() for t in svd_batch(torch.from_numpy(W)[None], method="gram"))
    assert np.allclose(U.T @ U, np.eye(10), atol=1e-5)
    assert reconstruction_error(W, SVD(U, S, Vh)) < 1e-5
    assert S[3:].max() < 1e-5 * S[0]


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="allowed: auto, gram, gesdd"):
        svd_batch(torch.eye(3)[None], method="jacobi")


def test_precision_benchmark_flags_the_float32_gram_route(tmp_path, capsys):
    """benchmarks/svd_precision.py on an ill-conditioned pair (κ ≈ 3e4) whose σ change by ~1e-3:
    the stage's route keeps the relative changes; float32 Gram's error exceeds the change itself."""
    import importlib.util
    from pathlib import Path

    from specbasis.io.extract import FORMAT_VERSION

    spec = importlib.util.spec_from_file_location(
        "svd_precision", Path(__file__).resolve().parent.parent / "benchmarks" / "svd_precision.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((96, 64)))
    V, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    s = np.logspace(0, -4.5, 64)
    change = 1 + 1e-3 * rng.uniform(0.5, 1.0, 64)
    for name, sv in [("pt.h5", s), ("ft.h5", s * change)]:
        with h5py.File(tmp_path / name, "w") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            f["00.ffn_in"] = ((U * sv) @ V.T).astype(np.float32)
    bench.main([str(tmp_path / "pt.h5"), str(tmp_path / "ft.h5"), "--repeats", "1"])
    rows = {line[:28].strip(): line[28:].split() for line in capsys.readouterr().out.splitlines()[2:]}
    error = {route: float(cols[2]) for route, cols in rows.items()}
    assert error["numpy float64 (reference)"] == 0
    assert error["specbasis (float64 Gram)"] < 1e-2
    assert error["float32 Gram"] > 1
