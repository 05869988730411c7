"""Atomic writes: an output appears whole or not at all."""
import pytest

from specbasis.store import _umask, atomic_dir, atomic_path


def test_atomic_path_replaces_only_on_success(tmp_path):
    out = tmp_path / "a.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert out.read_text() == "old"
    with atomic_path(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "w").write_text("1")
    assert (out / "w").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "w").write_text("half")
            raise RuntimeError("killed")
    assert (out / "w").read_text() == "1"
    with atomic_dir(out) as tmp:
        (tmp / "v").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["v"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (out.stat().st_mode & 0o777) == 0o777 & ~_umask()
