"""Writing (out, in) matrices back into a model's own tensors, in place: the inverse of every name-map
transform, and a live model whose matrices can be edited and restored exactly.

Each transform step of specbasis.io.namemaps reads one part of its input tensor; its inverse here
writes a new value of the step's output shape into exactly that part, in place, and leaves the
rest of the tensor alone (the other two thirds of a fused qkv, the other heads' rows):

    none                 overwrite the (out, in) tensor
    transpose            write W.T into the (in, out) tensor (GPT-2 Conv1D)
    squeeze_1x1          write W into the [:, :, 0, 0] slice of the (out, in, 1, 1) kernel
    split_qkv:{p}        write W into third p of the fused (3*out, in) rows [q; k; v]
    split_qkv_heads:{p}:{H}  write W's H row blocks into part p of each head of the (head, q/k/v, d_head)
                         interleaved rows (DeBERTa v1 in_proj)
    hnd:in / hnd:out     write W.T / W, reshaped back to the 3-D (d_model, n_head, d_head) tensor (XLNet)

In a chain ("transpose+split_qkv:q") every step but the last must give a view of the source
tensor (true of `transpose`), so writing into the last step's input writes into the source.

Names: LiveMatrices builds its specs with map_names on the live model's own state_dict names
(BertForSequenceClassification's "bert.encoder..." as well as BertModel's "encoder..."); the ids
do not depend on the prefix, so they are those of the weights and SVD stores of its checkpoint
(tests/test_writeback.py checks it for the BERT and EfficientNet-Lite classifiers of load_classifier).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch

from specbasis.interventions.edits import LowRank
from specbasis.io.namemaps import MatrixSpec, apply_transform, load_matrix, map_names, sort_key, transformed_shape


# ------------------------------------------------------------------------- inverse of each step

def _overwrite(t: torch.Tensor, W: torch.Tensor) -> None:
    t.copy_(W)                                              # (out, in)


def _untranspose(t: torch.Tensor, W: torch.Tensor) -> None:
    t.copy_(W.T)                                            # (out, in) -> (in, out)


def _unsqueeze_1x1(t: torch.Tensor, W: torch.Tensor) -> None:
    t[:, :, 0, 0].copy_(W)                                  # (out, in) -> (out, in, 1, 1)


def _place_qkv_third(t: torch.Tensor, W: torch.Tensor, which: str) -> None:
    i, out = "qkv".index(which), t.shape[0] // 3
    t[i * out:(i + 1) * out].copy_(W)                       # rows [q; k; v]


def _place_qkv_heads(t: torch.Tensor, W: torch.Tensor, which: str, heads: int) -> None:
    d_head = t.shape[0] // (3 * heads)
    per_head = t.view(heads, 3, d_head, t.shape[1])         # rows ordered (head, q/k/v, d_head)
    per_head[:, "qkv".index(which)].copy_(W.reshape(heads, d_head, t.shape[1]))


def _unflatten_hnd(t: torch.Tensor, W: torch.Tensor, side: str) -> None:
    flat = W.T if side == "in" else W                       # (h, n*d)
    t.copy_(flat.reshape(t.shape))                          # (h, n, d)


def put_step(t: torch.Tensor, step: str, W: torch.Tensor, name: str = "?") -> None:
    """Write W into the part of `t` that transform step `step` reads, in place (the step's inverse)."""
    expected = transformed_shape(step, t.shape, name)       # also checks t is what the step takes
    if tuple(W.shape) != expected:
        raise ValueError(f"tensor {name}: step {step!r} reads a {expected} matrix from shape {tuple(t.shape)}, "
                         f"cannot write one of shape {tuple(W.shape)}")
    op, _, arg = step.partition(":")
    W = W.to(device=t.device)
    with torch.no_grad():
        if op == "none":
            _overwrite(t, W)
        elif op == "transpose":
            _untranspose(t, W)
        elif op == "squeeze_1x1":
            _unsqueeze_1x1(t, W)
        elif op == "split_qkv":
            _place_qkv_third(t, W, arg)
        elif op == "split_qkv_heads":
            which, _, heads = arg.partition(":")
            _place_qkv_heads(t, W, which, int(heads))
        elif op == "hnd":
            _unflatten_hnd(t, W, arg)
        else:  # transformed_shape has refused it already
            raise AssertionError(step)


def write_matrix(spec: MatrixSpec, W: torch.Tensor, get: Callable[[str], torch.Tensor]) -> None:
    """Write the (out, in) matrix W into the source tensor of `spec` (from `get(name)`), in place.

    After it, load_matrix(spec, get) equals W (cast to the tensor's dtype)."""
    assert len(spec.sources) == 1, f"matrix {spec.id}: every transform reads one tensor, got {spec.sources}"
    name = spec.sources[0]
    if spec.shape is not None and tuple(W.shape) != tuple(spec.shape):
        raise ValueError(f"matrix {spec.id}: cannot write a {tuple(W.shape)} matrix into {name}, whose matrix "
                         f"is {tuple(spec.shape)} (out, in)")
    source = t = get(name)
    *outer, last = spec.transform.split("+")
    for step in outer:
        t = apply_transform(step, t, name)
        if t.untyped_storage().data_ptr() != source.untyped_storage().data_ptr():
            raise ValueError(f"matrix {spec.id}: step {step!r} of transform {spec.transform!r} copies {name}, so "
                             f"the steps after it cannot write into it; only the last step may copy")
    put_step(t, last, W, name)


# --------------------------------------------------------------------------- a live model

class LiveMatrices:
    """The weight matrices of a live torch model by id: read, edited in place, restored exactly.

    The first edit of a source tensor keeps a copy of it; every edit starts from that copy (so
    edits never accumulate: each is W̃ + Δ), and `restore` copies it back, bit for bit. Build it
    after the model is on its device: it holds the model's tensors, not its modules."""

    def __init__(self, model: torch.nn.Module, family: str, config: Mapping | None = None, name: str | None = None):
        self.name = name or type(model).__name__
        self.tensors = model.state_dict()  # name -> tensor sharing storage with the parameter
        if config is None and hasattr(model, "config") and hasattr(model.config, "to_dict"):
            config = model.config.to_dict()  # transformers: DeBERTa's head count, ALBERT's layers
        shapes = {k: tuple(v.shape) for k, v in self.tensors.items()}
        self.specs: dict[str, MatrixSpec] = {s.id: s for s in map_names(family, shapes, config)}
        self._originals: dict[str, torch.Tensor] = {}  # source name -> its copy before the first edit
        self._dirty: set[str] = set()                  # source names written since the last restore

    @property
    def ids(self) -> list[str]:
        return sorted(self.specs, key=sort_key)

    def spec(self, key: str) -> MatrixSpec:
        if key not in self.specs:
            raise KeyError(f"model {self.name} has no matrix {key!r}; it has {len(self.specs)}, e.g. "
                           f"{', '.join(self.ids[:4])}")
        return self.specs[key]

    def matrix(self, key: str) -> torch.Tensor:
        """The (out, in) matrix as the model holds it now (a view where the transform allows)."""
        return load_matrix(self.spec(key), self.tensors.__getitem__)

    def original(self, key: str) -> torch.Tensor:
        """The (out, in) matrix as it was before any edit."""
        spec = self.spec(key)
        return load_matrix(spec, lambda n: self._originals.get(n, self.tensors[n]))

    def write(self, key: str, W: torch.Tensor) -> None:
        """Write W (out, in) into the model in place, keeping the original for `restore`."""
        spec = self.spec(key)
        source = spec.sources[0]
        if source not in self._originals:
            self._originals[source] = self.tensors[source].detach().clone()
        self._dirty.add(source)
        write_matrix(spec, W, self.tensors.__getitem__)

    def apply(self, corrections: Mapping[str, LowRank]) -> None:
        """W = W̃ + left @ right for every id, W̃ the original; computed in float32 on the model's device."""
        for key, delta in corrections.items():
            base = self.original(key)
            if tuple(delta.left.shape[:1]) + tuple(delta.right.shape[1:]) != tuple(base.shape):
                raise ValueError(f"matrix {key} of model {self.name}: correction of shape "
                                 f"({delta.left.shape[0]}, {delta.right.shape[1]}) for a {tuple(base.shape)} matrix")
            W = base.float()
            if delta.rank:
                left = torch.as_tensor(delta.left, dtype=torch.float32, device=base.device)   # (m, j)
                right = torch.as_tensor(delta.right, dtype=torch.float32, device=base.device)  # (j, n)
                W = torch.addmm(W, left, right)
            self.write(key, W)

    def restore(self) -> None:
        """Every tensor written since the last restore gets its original back, bit for bit."""
        with torch.no_grad():
            for source in self._dirty:
                self.tensors[source].copy_(self._originals[source])
        self._dirty.clear()

    @contextmanager
    def edited(self, corrections: Mapping[str, LowRank]) -> Iterator["LiveMatrices"]:
        """Apply the corrections for the `with` block; restore the originals after it, whatever happens."""
        try:
            self.apply(corrections)
            yield self
        finally:
            self.restore()
