"""Atomic writes: every artifact appears whole or not at all.

Write to a temporary name in the destination's own directory (same filesystem), then
`os.replace` onto the final name. On any exception the temporary file is removed and the error
re-raised, so a killed or failed job never leaves a truncated output under the real name.
A job killed outright (SIGKILL, out of memory) cannot clean up: its `.NAME.*.tmp` stays behind,
and the next write of NAME removes it (Snakemake's lock means one job writes an output at a time).
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


STALE_SUFFIXES = (".tmp", ".old", ".work")  # what atomic_path, atomic_dir and fetch leave when killed


def remove_stale(path: Path) -> list[Path]:
    """Remove what killed writers of `path` left beside it: .NAME.*.tmp, .NAME.*.old, .NAME.*.work."""
    stale = [p for p in path.parent.glob(f".{glob.escape(path.name)}.*") if p.suffix in STALE_SUFFIXES]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; it becomes `path` when the block succeeds.

    An existing `path` is swapped out only at that moment (and restored if the swap fails), so
    readers see the old folder or the new one, never a half-written one. On any exception the
    temporary folder is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; give it a normal folder's mode
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rename(path, old / "x")
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old / "x", path)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
