"""Extract every weight matrix of a checkpoint into one HDF5 file, by canonical id, (out, in).

The model is never built: the checkpoint is read tensor by tensor, each matrix is written and
dropped before the next is read, so peak memory stays a small fraction of the checkpoint size
(benchmarks/extract_memory.py measures it).

Which file: `*.safetensors` (a sharded model through `model.safetensors.index.json`), else
`pytorch_model.bin` / `*.bin` (sharded through `pytorch_model.bin.index.json`), else `*.pth` / `*.pt`.
Trainer leftovers (training_args.bin, optimizer.pt, ...) are never taken for weights. A torch file
may be a training checkpoint that nests the state dict under a key: which keys, in which order, depends
on the family (`namemaps.checkpoint_keys`: Brain-JEPA's `target_encoder`, then the generic `state_dict`,
`model`, `model_state_dict`); its other entries (optimizer, epoch, args, ...) are ignored.
`load_state_dict` reads one such file whole, to turn a brain model's training checkpoint into
model.safetensors.

Why reopen: a memory map keeps every page it has read resident, and those pages count in the
process's RSS until the map is closed. So safetensors files are opened with `safe_open` for each
tensor (the tensor keeps only its own pages), and torch files (`torch.load(mmap=True)`) are
reopened whenever `REOPEN_BYTES` have been read through one map. Matrices are converted to float32
and written BLOCK_BYTES of rows at a time, and the heap is trimmed after each one (see
`release_free_memory`). Measured on a 1.3 GB BERT-large-shaped checkpoint: peak RSS 0.02x (safetensors)
and 0.07x (.bin) the file size above the interpreter's baseline; 0.05x / 0.15x for 16-bit checkpoints.

Layout of the output (format_version 1):
    /<id>    float32 (out, in), attrs: source (JSON list of parameter names), transform, [note]
    root attrs: family, format_version, checkpoint_bytes, orientation = "torch Linear (out, in)"
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import json
import logging
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from specbasis.io.namemaps import (CHECKPOINT_KEYS, FAMILIES, MatrixSpec, UnknownFamilyError, checkpoint_keys, load_matrix,
                       map_names, sort_key)
from specbasis.io.store import atomic_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ORIENTATION = "torch Linear (out, in)"
REOPEN_BYTES = 64 << 20  # torch files: bytes read through one memory map before it is reopened
BLOCK_BYTES = 4 << 20    # rows of a matrix converted and written at a time
# Files a training run leaves next to the weights that are not weights.
NOT_WEIGHTS = {"training_args.bin", "optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt"}
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".pth.tar")  # .pth.tar: Brain-JEPA's (I-JEPA's) save_checkpoint
# Classes a weights-only torch.load may rebuild besides tensors and containers: training scripts save their
# command line next to the weights (LaBraM's utils.save_model, MAE's misc.save_model that Brain-JEPA's
# fine-tuning copies: 'args', an argparse.Namespace, which holds plain values and runs no code when rebuilt).
SAFE_GLOBALS = [argparse.Namespace]


# ------------------------------------------------------------------------------- the checkpoint

class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be what it claims: its message names the file and what is wrong."""


SAFETENSORS_MAX_HEADER = 100 << 20  # the safetensors library's own limit on a header


def check_checkpoint_file(path: Path) -> None:
    """Refuse a weights file that is corrupt or truncated, naming it, before anything relies on it. Cheap: it
    reads a safetensors file's header (its tensors must end where the file does) and a torch zip file's
    directory (every member's data inside the file); a legacy (non-zip) torch file is loaded whole."""
    import struct
    import zipfile

    path = Path(path)
    size = path.stat().st_size
    if path.suffix == ".safetensors":
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CorruptCheckpointError(f"{path}: corrupt safetensors file: {size} bytes, less than its "
                                             f"8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > min(SAFETENSORS_MAX_HEADER, size - 8):
                raise CorruptCheckpointError(f"{path}: not a safetensors file, or a truncated one: its first 8 "
                                             f"bytes give a header of {n} bytes, and the file has {size}")
            try:
                header = json.loads(fh.read(n))
            except ValueError as e:
                raise CorruptCheckpointError(f"{path}: corrupt safetensors file: its header is not JSON ({e})") from None
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
                and "data_offsets" in v]
        need = 8 + n + max(ends, default=0)
        if need > size:
            raise CorruptCheckpointError(f"{path}: truncated safetensors file: its header places tensors up to byte "
                                         f"{need}, and the file has {size} bytes (an interrupted download?)")
        return
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.header_offset + info.compress_size > size:
                        raise CorruptCheckpointError(f"{path}: truncated torch file: member {info.filename} "
                                                     f"ends past the file's {size} bytes")
        except zipfile.BadZipFile as e:
            raise CorruptCheckpointError(f"{path}: corrupt torch (zip) file: {e}") from None
        return
    try:
        _torch_load(path)
    except Exception as e:  # noqa: BLE001 - said, naming the file, and raised
        raise CorruptCheckpointError(f"{path}: not a readable torch or safetensors checkpoint (truncated or "
                                     f"corrupt?): {type(e).__name__}: {e}") from e


def weight_files(folder: Path) -> list[Path]:
    """The weights files of a fetched folder (safetensors and torch files, trainer leftovers left out)."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in NOT_WEIGHTS
                  and (p.suffix == ".safetensors" or p.name.endswith(TORCH_SUFFIXES)))


class _SafetensorsFile:
    """One .safetensors file: shapes from its header; each tensor read through its own safe_open."""

    def __init__(self, path: Path):
        from safetensors import safe_open

        self.path, self._open = path, safe_open
        with safe_open(path, framework="pt") as f:
            self.shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}

    def get(self, name: str) -> torch.Tensor:
        with self._open(self.path, framework="pt") as f:  # closed again at once: see module docstring
            return f.get_tensor(name)


def _torch_load(path: Path) -> tuple[object, bool]:
    """Whatever torch.save wrote to `path`, read weights-only, memory-mapped where its format allows.
    Returns (object, mapped)."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        try:
            return torch.load(path, mmap=True, weights_only=True, map_location="cpu"), True
        except RuntimeError as e:
            if "zip" not in str(e).lower():
                raise
            log.warning("%s is in torch's legacy (pre-1.6) format, which cannot be memory-mapped: reading it "
                        "whole (%d bytes); re-save it with torch.save to extract it in less memory",
                        path, path.stat().st_size)
            return torch.load(path, weights_only=True, map_location="cpu"), False
        except Exception as e:  # weights_only refuses arbitrary pickles
            raise ValueError(f"{path}: cannot read it as a weights-only torch checkpoint ({e}); re-save the "
                             f"model with torch.save(model.state_dict(), path)") from e


class _TorchFile:
    """One torch.save file (.bin/.pth/.pt), memory-mapped and reopened every REOPEN_BYTES read."""

    def __init__(self, path: Path, family: str | None = None):
        self.path, self.family, self.mapped, self._read = path, family, True, 0
        self._state: dict[str, torch.Tensor] | None = self._load()
        self.shapes = {k: tuple(t.shape) for k, t in self._state.items()}

    def _load(self) -> dict[str, torch.Tensor]:
        obj, self.mapped = _torch_load(self.path)
        return _state_dict(obj, self.path, self.family)

    def get(self, name: str) -> torch.Tensor:
        if self.mapped and self._read > REOPEN_BYTES:
            self._state, self._read = None, 0  # drop the old map (and the pages it holds) first
        if self._state is None:
            self._state = self._load()
        t = self._state[name]
        self._read += t.numel() * t.element_size()
        return t


def _listed(keys, limit: int = 12) -> str:
    names = [repr(k) for k in keys]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _state_dict(obj, path: Path, family: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a torch checkpoint: a state dict, or the one nested under the first of
    `checkpoint_keys(family)` that holds a dict. Entries that are not tensors are left out."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict (name -> tensor); save "
                         f"model.state_dict() instead of the model")
    keys = checkpoint_keys(family)
    found = next((k for k in keys if isinstance(obj.get(k), dict)), None)
    state = obj[found] if found is not None else obj
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if tensors:
        return tensors
    where = f"under {found!r} (its keys: {_listed(state) or 'none'})" if found is not None else "at its top level"
    nested = [k for k, v in obj.items() if isinstance(v, dict)]
    own = "; ".join(f"{f}: {', '.join(k)}" for f, k in CHECKPOINT_KEYS.items())
    raise ValueError(f"{path}: no state dict found: no tensors {where}; its keys: {_listed(obj) or 'none'}, of "
                     f"which dicts: {_listed(nested) or 'none'}. For family {family or '(none given)'} the state "
                     f"dict is looked for at the top level or under {', '.join(keys)} (families with keys of "
                     f"their own: {own}); is the family right?")


def load_state_dict(path: Path, family: str) -> dict[str, torch.Tensor]:
    """The flat tensors of one checkpoint file (.safetensors, or torch's .pth/.pt/.bin), by name.

    A torch file is unnested as `family`'s checkpoints nest it (`namemaps.checkpoint_keys`: Brain-JEPA's
    target_encoder, LaBraM's model, then state_dict/model/model_state_dict) and its other entries
    (optimizer, epoch, args, ...) are left out. Names are kept as stored: prefixes such as DDP's `module.`
    or LaBraM's `student.` are for the name maps. The tensors of a torch file are views of a memory map
    where its format allows."""
    path = Path(path)
    if family not in FAMILIES:
        raise UnknownFamilyError(f"unknown architecture family {family!r}; known families: "
                                 f"{', '.join(sorted(FAMILIES))}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(path)
        if not tensors:
            raise ValueError(f"{path}: no tensors in it")
        return tensors
    if not path.name.endswith(TORCH_SUFFIXES):
        raise ValueError(f"{path}: not a checkpoint file name; expected .safetensors or one of "
                         f"{', '.join(TORCH_SUFFIXES)}")
    obj, _ = _torch_load(path)
    return _state_dict(obj, path, family)


class Checkpoint:
    """All tensors of one model's checkpoint (one file or shards), by name, read lazily. `family` says
    where a torch training checkpoint nests its state dict (`namemaps.checkpoint_keys`)."""

    def __init__(self, files: list[Path], family: str | None = None):
        assert files, "a checkpoint has at least one file"
        self.files = files
        self._owner: dict[str, _SafetensorsFile | _TorchFile] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for path in files:
            reader = _SafetensorsFile(path) if path.suffix == ".safetensors" else _TorchFile(path, family)
            for name, shape in reader.shapes.items():
                if name in self.shapes:
                    raise ValueError(f"tensor {name} is in two checkpoint files: "
                                     f"{self._owner[name].path.name} and {path.name}")
                self._owner[name], self.shapes[name] = reader, shape

    @property
    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    def get(self, name: str) -> torch.Tensor:
        if name not in self._owner:
            raise KeyError(name)
        return self._owner[name].get(name)


def _one(model_dir: Path, found: list[Path], preferred: str, what: str) -> list[Path]:
    if (model_dir / preferred).is_file():
        return [model_dir / preferred]
    if len(found) == 1:
        return found
    raise FileNotFoundError(f"{model_dir}: {len(found)} {what} files ({', '.join(p.name for p in found)}) and no "
                            f"{preferred} or index.json that says which hold the model; keep only the model's")


def _from_index(index: Path) -> list[Path]:
    weight_map = json.loads(index.read_text())["weight_map"]
    files = sorted({index.parent / f for f in weight_map.values()})
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{index} names shards that are not there: {', '.join(missing)}")
    return files


def find_checkpoint(model_dir: Path) -> list[Path]:
    """The weight file(s) of a model folder, in the order of preference of the module docstring."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist; run the fetch/prepare rule first")
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name not in NOT_WEIGHTS
                   and not p.name.startswith("rng_state"))
    for suffixes, preferred, index in (((".safetensors",), "model.safetensors", "model.safetensors.index.json"),
                                       ((".bin",), "pytorch_model.bin", "pytorch_model.bin.index.json"),
                                       ((".pth", ".pt"), "model.pth", None)):
        found = [p for p in files if p.suffix in suffixes]
        if index and (model_dir / index).is_file() and not (model_dir / preferred).is_file():
            return _from_index(model_dir / index)
        if found:
            return _one(model_dir, found, preferred, "/".join(suffixes))
    raise FileNotFoundError(f"{model_dir}: no checkpoint (*.safetensors, model.safetensors.index.json, *.bin, "
                            f"*.pth, *.pt) among {', '.join(p.name for p in files) or 'no files'}")


def _config(model_dir: Path) -> dict:
    path = Path(model_dir) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# ------------------------------------------------------------------------------------ writing

def _write_matrix(f, spec: MatrixSpec, W: torch.Tensor) -> None:
    """Write W (out, in) as float32 dataset `spec.id`, BLOCK_BYTES of rows at a time.

    Blocks keep the temporaries (float32 copies of float16 rows, contiguous copies of transposed
    rows) at BLOCK_BYTES whatever the size of the matrix."""
    if not W.is_floating_point() or W.numel() == 0:
        raise ValueError(f"matrix {spec.id} (from {', '.join(spec.sources)}) has dtype {W.dtype} and shape "
                         f"{tuple(W.shape)}; expected a non-empty float matrix (quantized checkpoints are not "
                         f"supported: extract the float model)")
    n_out, n_in = W.shape
    ds = f.create_dataset(spec.id, shape=(n_out, n_in), dtype="float32")
    rows = max(1, BLOCK_BYTES // (4 * n_in))
    bad = 0
    for i in range(0, n_out, rows):
        block = W[i:i + rows].to(torch.float32)  # (rows, in)
        # max and min carry any NaN or Inf through; only a bad block pays for counting
        if not (torch.isfinite(block.max()) and torch.isfinite(block.min())):
            bad += int((~torch.isfinite(block)).sum())
        ds[i:i + rows] = block.numpy()
        del block
    if bad:
        raise ValueError(f"matrix {spec.id} (from {', '.join(spec.sources)}) holds {bad} NaN/Inf values of "
                         f"{W.numel()}; the checkpoint is corrupt or its training diverged")
    ds.attrs["source"] = json.dumps(list(spec.sources))
    ds.attrs["transform"] = spec.transform
    if spec.note:
        ds.attrs["note"] = spec.note


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give the heap's free pages back to the OS (glibc; elsewhere nothing to do).

    Why: glibc raises its mmap threshold after large frees, so the next large temporaries (float16
    -> float32 blocks) come from the heap, and what they leave free there stays in the RSS: without
    this, extracting a float16 checkpoint held about as much memory as the checkpoint's size."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def write_matrices(out_path: Path, specs: Iterable[MatrixSpec], get: Callable[[str], torch.Tensor],
                   attrs: dict) -> None:
    """Write each spec's matrix to out_path atomically: whole, or not at all."""
    import h5py

    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        for spec in specs:
            W = load_matrix(spec, get)  # (out, in), maybe a view into a memory map
            _write_matrix(f, spec, W)
            del W                       # release its pages before the next read
            release_free_memory()


def extract_weights(model_dir: Path, family: str, out_path: Path) -> dict:
    """Every weight matrix of the checkpoint in model_dir -> out_path (HDF5). Returns a summary."""
    start = time.perf_counter()
    checkpoint = Checkpoint(find_checkpoint(model_dir), family)
    specs = map_names(family, checkpoint.shapes, _config(model_dir))
    used = {name for s in specs for name in s.sources}
    skipped = sorted(set(checkpoint.shapes) - used)
    attrs = {"family": family, "format_version": FORMAT_VERSION, "checkpoint_bytes": checkpoint.nbytes,
             "orientation": ORIENTATION}
    log.info("%s: %d matrices of family %s from %s (%d bytes); %d tensors are none of the kinds",
             model_dir, len(specs), family, ", ".join(p.name for p in checkpoint.files), checkpoint.nbytes,
             len(skipped))
    write_matrices(Path(out_path), specs, checkpoint.get, attrs)
    return {"family": family, "checkpoint": [p.name for p in checkpoint.files],
            "checkpoint_bytes": checkpoint.nbytes, "n_matrices": len(specs), "ids": [s.id for s in specs],
            "n_skipped": len(skipped), "skipped": skipped, "out_path": str(out_path),
            "seconds": round(time.perf_counter() - start, 3)}


# ------------------------------------------------------------------------------------ reading

def matrix_ids(f) -> list[str]:
    """The matrix ids of an open weights file (its datasets), in canonical order (stack, layer, index, kind)."""
    import h5py

    return sorted((k for k in f if isinstance(f[k], h5py.Dataset)), key=sort_key)


def list_ids(path: Path) -> list[str]:
    """The matrix ids in a weights file, in canonical order (stack, layer, index, kind)."""
    import h5py

    with h5py.File(path, "r") as f:
        return matrix_ids(f)


def read_weights(path: Path, ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """id -> float32 (out, in) matrix, for all ids or the ones asked for."""
    import h5py

    with h5py.File(path, "r") as f:
        version = f.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: weights format_version {version}, this code reads {FORMAT_VERSION}; "
                             f"re-extract the weights")
        wanted = list(ids) if ids is not None else matrix_ids(f)
        missing = [k for k in wanted if k not in f]
        if missing:
            raise KeyError(f"{path}: no matrices {missing}; it holds {sorted(f, key=sort_key)}")
        return {k: f[k][()] for k in wanted}
