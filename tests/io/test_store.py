"""Atomic writes: an output appears whole or not at all."""
import pytest

from specbasis.io.store import _umask, atomic_dir, atomic_path


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


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    out = tmp_path / "a.h5"
    (tmp_path / ".a.h5.x1y2.tmp").write_text("half of a killed write")
    (tmp_path / ".a.h5.z3.work").mkdir()
    (tmp_path / ".b.h5.x1y2.tmp").write_text("another output's: kept")
    with atomic_path(out) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.h5.x1y2.tmp", "a.h5"]
    (tmp_path / "d").mkdir()
    (tmp_path / ".d.q.tmp").mkdir()
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("1")
    assert not (tmp_path / ".d.q.tmp").exists()


def test_uncaught_errors_reach_the_log_file(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "job.log"
    code = f"from specbasis.logs import setup_logging; setup_logging({str(log)!r}); raise KeyError('tensor x.weight')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "failed: KeyError: 'tensor x.weight'" in log.read_text() and "Traceback" in log.read_text()
