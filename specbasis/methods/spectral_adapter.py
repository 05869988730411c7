"""The paper's spectral adapter (Section 3.3, Appendix M): train an r x r block of the pretrained SVD.

Convention (that of specbasis.svd): W₀ is (out, in), torch Linear orientation, and

    W₀ = U diag(σ) Vh,   u_i = U[:, i] (output space), v_i = Vh[i, :] (input space), σ descending,

with the sign of each pair (u_i, v_i) fixed by svd.fix_signs. The adapted matrix is

    W = U (diag(σ) + A) Vh,   A zero except the block A[k:m, k:m] = M      (0-based, r = m - k)
      = W₀ + ΔW,              ΔW = U_r M Vh_r,   U_r = U[:, k:m] (out, r),  Vh_r = Vh[k:m] (r, in)

so only M (r² numbers per matrix) trains; W₀, U_r and Vh_r are frozen, and M = 0 is W₀ exactly.

Use (peft's shape, without peft: its 0.21 has no public way to register an out-of-tree method)::

    config = SpectralConfig(k=0, m=300, layers=[10, 11], kinds=["ffn_in", "ffn_out"],
                            modules_to_save=["classifier"])
    model = apply_spectral(model, config)          # wraps the matching nn.Linear modules in place
    print_trainable_parameters(model)               # 4 x 300² = 360,000 + the head
    ...train...
    save_spectral(model, "adapter.safetensors")     # M, the head, and what makes a reload exact
    merge_all(model)                                # inference at the base model's speed

    model = load_spectral(<the same pretrained model>, "adapter.safetensors")   # elsewhere: applies, then loads

Two ways to compute the same ΔW in training (`choose_path` picks per shape and batch):
    factored  y = x W₀ᵀ + ((x Vh_rᵀ) Mᵀ) U_rᵀ        extra cost ∝ tokens · r (in + out + r)
    dense     y = x (W₀ + delta_weight())ᵀ            ΔW built once per step (∝ out · in · r), plus the
                                                      gradient of the whole (out, in) weight (∝ tokens · out · in)

What a saved adapter holds (`spectral_state_dict`), per adapted matrix: M; the block [k, m); the sha256
of W₀'s bytes; the pivots (row of the largest |entry| of each u_i, which fix the signs whatever the
LAPACK: a near-tie of two entries cannot flip a sign on reload); σ_k..σ_{m-1} to cross-check the
recomputed SVD; and U_r, Vh_r themselves only when recomputing them is unsafe: when a gap between two
singular values touching the block is below RECOMPUTE_MIN_GAP · σ_0 (a float64 SVD on another machine
can then rotate the vectors), or when σ is unknown (factors given without S).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from specbasis import families
from specbasis.io.namemaps import FAMILIES, FFN_KINDS, KINDS, map_names, parse_id
from specbasis.svd import SIGN_CONVENTION, fix_signs

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
PATHS = ("auto", "factored", "dense")
FORMAT = "specbasis.spectral/1"  # the saved file's format tag: kept when the module moved, so files stay readable
# A float64 SVD is backward stable: another machine's differs by ~1e-13 σ_0 for these sizes, which turns a
# singular vector by that over its gap to its neighbours (Davis-Kahan). Gaps ≥ 1e-6 σ_0 keep the turn
# below ~1e-7 (float32 round-off); smaller ones make the saved state carry U_r, Vh_r.
RECOMPUTE_MIN_GAP = 1e-6
# Measured by benchmarks/spectral_adapter.py on this project's 2-core CPU (torch 2.13, float32): per
# multiply-add, the factored path's thin matmuls (inner size r) and their many small ops take 0.9-1.3x the
# time of the dense path's (out, in) products when the machine is quiet (r = 300, 640-4096 tokens), 1.2-2.2x
# while other jobs share it. With 1.25, choose_path's crossover for 768 x 3072, r = 300 is 2,051 tokens
# (measured 2,209 on the quiet run; < 640 to ~1,900 on loaded ones) and for 384 x 1536, r = 300, 444 (measured
# 731). Near a crossover the two paths are within ~15% of each other, so a wrong pick there costs little; far
# from it the pick is clear (r = 50: factored, 1.2-1.4x faster; r close to the rank: dense, up to 1.4x).
FACTORED_SLOWDOWN = 1.25


# ------------------------------------------------------------------------------------------- config

@dataclass
class SpectralConfig:
    """Which matrices to adapt and how; checks itself on construction (errors name field and allowed)."""

    k: int = 0                                  # first adapted singular index (0-based): σ_k is the largest
    m: int = 300                                # one past the last: r = m - k rows and columns of M
    # which matrices: EITHER target_modules (peft's way) OR layers + kinds (the project's matrix ids)
    target_modules: str | list[str] | None = None  # regex full-matched against module names, or a list of
    #                                            names, each matching that module or any ending in "." + it
    layers: list[int] | None = None             # layer indices of the ids ("04.ffn_in"); negative: from the end
    kinds: list[str] | None = None              # kinds of namemaps.KINDS; default ffn_in, ffn_out (the paper's)
    family: str | None = None                   # name map of namemaps.FAMILIES; None: model.config.model_type
    dtype: str = "float32"                      # of M, U_r, Vh_r (the SVD itself is float64 on CPU)
    path: str = "auto"                          # auto (choose_path per call) | factored | dense
    modules_to_save: list[str] = field(default_factory=list)  # trained in full beside M, e.g. ["classifier"]

    def __post_init__(self):
        def bad(key, value, allowed):
            raise ValueError(f"SpectralConfig.{key} = {value!r}: {allowed}")

        for key in ("k", "m"):
            if not isinstance(getattr(self, key), int) or isinstance(getattr(self, key), bool):
                bad(key, getattr(self, key), "must be an int")
        if self.k < 0:
            bad("k", self.k, "the block [k, m) starts at a singular index ≥ 0")
        if self.k >= self.m:
            bad("m", self.m, f"must exceed k = {self.k}: the block [k, m) needs r = m - k ≥ 1")
        if self.dtype not in DTYPES:
            bad("dtype", self.dtype, f"allowed: {', '.join(DTYPES)}")
        if self.path not in PATHS:
            bad("path", self.path, f"allowed: {', '.join(PATHS)}")
        if (self.target_modules is None) == (self.layers is None):
            bad("target_modules", self.target_modules, "give exactly one of target_modules (regex or list of names) "
                f"and layers (+ kinds); layers = {self.layers!r}")
        if self.target_modules is not None:
            if self.kinds is not None or self.family is not None:
                bad("kinds" if self.kinds is not None else "family", self.kinds or self.family,
                    "kinds and family select matrices with layers; with target_modules leave them out")
            if isinstance(self.target_modules, str):
                try:
                    re.compile(self.target_modules)
                except re.error as e:
                    bad("target_modules", self.target_modules, f"not a regular expression ({e})")
            elif not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
                bad("target_modules", self.target_modules, "a regex string or a non-empty list of module names")
        else:
            self.layers = list(self.layers)
            if not self.layers or not all(isinstance(i, int) for i in self.layers):
                bad("layers", self.layers, "a non-empty list of layer indices (ints; negative counts from the end)")
            self.kinds = list(self.kinds if self.kinds is not None else FFN_KINDS)
            unknown = [kd for kd in self.kinds if kd not in KINDS]
            if unknown or not self.kinds:
                bad("kinds", self.kinds, f"allowed: {', '.join(KINDS)}")
            if self.family is not None and self.family not in FAMILIES:
                bad("family", self.family, f"allowed: {', '.join(sorted(FAMILIES))}")
        self.modules_to_save = list(self.modules_to_save)

    @property
    def r(self) -> int:
        return self.m - self.k

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "SpectralConfig":
        return cls(**d)


# ------------------------------------------------------------------------------------ the maths

def weight_checksum(W: torch.Tensor) -> str:
    """sha256 of a weight's dtype, shape and bytes: the W₀ an adapter belongs to."""
    t = W.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def svd_block(W0: torch.Tensor, k: int, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """U_r (out, r), every σ (min(out, in),), Vh_r (r, in) of W₀, float64 on CPU, signs by svd.fix_signs."""
    W = W0.detach().to("cpu", torch.float64)                       # (out, in)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)            # W = U diag(S) Vh
    U_r, Vh_r = fix_signs(U[None, :, k:m], Vh[None, k:m])          # columnwise: the slice gets the full's signs
    return U_r[0], S, Vh_r[0]


def pivots_of(U_r: torch.Tensor) -> torch.Tensor:
    """(r,) row of the largest |entry| of each u_i: where the sign convention looks."""
    return U_r.abs().argmax(dim=0)


def orient(U_r: torch.Tensor, Vh_r: torch.Tensor, pivots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip pairs (u_i, v_i) together so that U_r[pivots[i], i] > 0."""
    sign = torch.sign(U_r[pivots, torch.arange(U_r.shape[1])])    # (r,)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return U_r * sign, Vh_r * sign[:, None]


def recompute_is_safe(S: torch.Tensor | None, k: int, m: int) -> bool:
    """Whether a float64 SVD of the same W₀ elsewhere gives the same U_r, Vh_r up to round-off (and signs,
    which the pivots fix): every gap σ_i - σ_{i+1} from σ_{k-1} to σ_m is ≥ RECOMPUTE_MIN_GAP · σ_0."""
    if S is None:
        return False
    S = S.double()
    edge = S[max(k - 1, 0):min(m + 1, len(S))]
    gaps = edge[:-1] - edge[1:]
    return bool(S[0] > 0 and (gaps >= RECOMPUTE_MIN_GAP * S[0]).all())


def choose_path(out_features: int, in_features: int, r: int, tokens: int, *, grad: bool = True,
                slowdown: float = FACTORED_SLOWDOWN) -> str:
    """'factored' or 'dense', whichever computes y = x (W₀ + ΔW)ᵀ (and, with grad, dL/dM) in less time.

    Counted in multiply-adds, beyond what the frozen base Linear costs anyway (forward, input gradient):
        factored  tokens · (2r(in + out) + 3r²)    with grad: x Vh_rᵀ, ·Mᵀ, ·U_rᵀ and their backward
                  tokens · r(in + out + r)         without
        dense     tokens · in · out                with grad: the gradient of the (out, in) weight
                  + 2 out · in · r + r²(in + out)  ΔW = U_r M Vh_r and dM = U_rᵀ dW Vh_rᵀ, once a step
                  out · r (in + r)                 without (ΔW only, and no weight gradient)
    and the factored count is multiplied by `slowdown`, the measured ratio of time per multiply-add of its
    thin matmuls to the dense path's (FACTORED_SLOWDOWN). With grad, the factored path wins at every batch
    when slowdown · (2r(in + out) + 3r²) ≤ in · out (r ≤ 225 for 768 x 3072, ≤ 112 for 384 x 1536);
    above that the dense path wins from the crossover tokens* = fixed / (per-token difference) on.
    """
    i, o = in_features, out_features
    if grad:
        factored = slowdown * tokens * (2 * r * (i + o) + 3 * r * r)
        dense = tokens * i * o + 2 * o * i * r + r * r * (i + o)
    else:
        factored = slowdown * tokens * r * (i + o + r)
        dense = o * r * (i + r)
    return "factored" if factored <= dense else "dense"


def crossover_tokens(out_features: int, in_features: int, r: int, *, grad: bool = True,
                     slowdown: float = FACTORED_SLOWDOWN) -> float:
    """Tokens per batch from which choose_path picks 'dense' (inf: never)."""
    i, o = in_features, out_features
    per_token = slowdown * (2 * r * (i + o) + 3 * r * r) - i * o if grad else slowdown * r * (i + o + r)
    fixed = 2 * o * i * r + r * r * (i + o) if grad else o * r * (i + r)
    return fixed / per_token if per_token > 0 else math.inf


def _as_tensor(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(a)


def check_factors(name: str, W0: torch.Tensor, U_r: torch.Tensor, Vh_r: torch.Tensor, tol: float = 1e-4) -> None:
    """Refuse factors that are not singular pairs of W₀ in the convention: each ||W₀ v_i - d_i u_i|| must be
    ≤ tol · ||W₀||_F with d_i = u_iᵀ W₀ v_i ≥ 0 descending, and u_i's largest |entry| positive."""
    W = W0.detach().to("cpu", torch.float64)
    WV = W @ Vh_r.T                                                # (out, r)
    d = (U_r * WV).sum(0)                                          # (r,) u_iᵀ W₀ v_i
    resid = torch.linalg.vector_norm(WV - U_r * d, dim=0) / torch.linalg.vector_norm(W).clamp_min(1e-300)
    worst = int(resid.argmax())
    if resid[worst] > tol:
        raise ValueError(f"{name}: the given factors are not singular vectors of this module's weight "
                         f"(||W₀ v - σ u|| = {float(resid[worst]):.2e} ||W₀||_F at block column {worst}, allowed "
                         f"≤ {tol:g}): were they computed from another model or matrix?")
    scale = float(d.abs().max()) if len(d) else 0.0
    if (d < -tol * scale).any() or (d[1:] > d[:-1] * (1 + tol) + tol * scale).any():
        raise ValueError(f"{name}: the given factors give uᵀW₀v = {d[:4].tolist()}...; allowed: ≥ 0, descending "
                         f"(joint signs, σ order of specbasis.svd)")
    if not (U_r.max(0).values >= (1 - tol) * U_r.abs().max(0).values).all():  # (near-)largest |entry| positive
        raise ValueError(f"{name}: the given factors break the sign convention ({SIGN_CONVENTION})")


# ------------------------------------------------------------------------------------ the layer

class SpectralLinear(nn.Module):
    """nn.Linear + ΔW = U_r M Vh_r, with W₀ (the wrapped layer's weight), U_r and Vh_r frozen and M = 0 at first."""

    def __init__(self, base_layer: nn.Linear, k: int, m: int, *, name: str = "", dtype: str = "float32",
                 path: str = "auto", factors: Any = None):
        super().__init__()
        name = name or "SpectralLinear"
        assert isinstance(base_layer, nn.Linear), f"{name}: wraps nn.Linear, got {type(base_layer).__name__}"
        rank = min(base_layer.weight.shape)
        if not 0 <= k < m <= rank:
            raise ValueError(f"{name}: block [k, m) = [{k}, {m}) does not fit the weight of shape (out, in) = "
                             f"{tuple(base_layer.weight.shape)}; allowed: 0 ≤ k < m ≤ rank = {rank}")
        self.base_layer = base_layer.requires_grad_(False)
        self.name, self.k, self.m, self.path = name, k, m, path
        W0 = base_layer.weight                                      # (out, in)
        self.w0_sha256 = weight_checksum(W0)                        # of W₀ as it is now, before any merge
        if factors is None:
            U_r, S, Vh_r = svd_block(W0, k, m)
        else:
            U_r, S, Vh_r = self._given(factors, W0)
        self.factors_given = factors is not None
        dt = DTYPES[dtype]
        self.register_buffer("U_r", U_r.to(W0.device, dt), persistent=False)      # (out, r)
        self.register_buffer("Vh_r", Vh_r.to(W0.device, dt), persistent=False)    # (r, in)
        self.register_buffer("pivots", pivots_of(U_r).to(W0.device), persistent=False)  # (r,)
        self.sigma = S                                              # every σ (float64, CPU), or None if unknown
        self.M = nn.Parameter(torch.zeros(m - k, m - k, dtype=dt, device=W0.device))  # (r, r): 0 = exact no-op
        self.merged = False

    def _given(self, factors, W0):
        """(U_r, S or None, Vh_r) of precomputed factors: an object with U (out, K), Vh (K, n) and maybe S
        (specbasis.svd.SVD, read_svd's), or a tuple (U, S, Vh); checked against W₀."""
        U, S, Vh = (factors if isinstance(factors, tuple) else (factors.U, getattr(factors, "S", None), factors.Vh))
        U, Vh = _as_tensor(U).double().cpu(), _as_tensor(Vh).double().cpu()
        out, inp = W0.shape
        if U.shape[0] != out or Vh.shape[1] != inp or U.shape[1] < self.m or Vh.shape[0] < self.m:
            raise ValueError(f"{self.name}: factors U {tuple(U.shape)}, Vh {tuple(Vh.shape)} do not fit a weight "
                             f"(out, in) = {(out, inp)} and m = {self.m}; allowed: U (out, K), Vh (K, in), K ≥ m")
        U_r, Vh_r = U[:, self.k:self.m], Vh[self.k:self.m]
        check_factors(self.name, W0, U_r, Vh_r)
        return U_r, (None if S is None else _as_tensor(S).double().cpu()), Vh_r

    @property
    def r(self) -> int:
        return self.m - self.k

    @property
    def weight(self) -> torch.Tensor:   # code that reads `.weight` (dtype checks, tying) sees the base's
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def delta_weight(self) -> torch.Tensor:
        """ΔW = U_r M Vh_r, (out, in), in the adapter's dtype; what `merge` adds and the dense path uses."""
        return self.U_r @ self.M @ self.Vh_r                        # (out, r)(r, r)(r, in)

    def delta_apply(self, x: torch.Tensor) -> torch.Tensor:
        """x ΔWᵀ without forming ΔW: ((x Vh_rᵀ) Mᵀ) U_rᵀ, (..., in) -> (..., out)."""
        h = F.linear(x.to(self.M.dtype), self.Vh_r)                 # (..., r) = x V_r
        h = F.linear(h, self.M)                                     # (..., r) = x V_r Mᵀ
        return F.linear(h, self.U_r)                                # (..., out) = x V_r Mᵀ U_rᵀ

    def choose(self, x: torch.Tensor) -> str:
        if self.path != "auto":
            return self.path
        grad = torch.is_grad_enabled() and self.M.requires_grad
        return choose_path(self.out_features, self.in_features, self.r, x.numel() // self.in_features, grad=grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        if self.choose(x) == "dense":
            W = self.base_layer.weight
            return F.linear(x, W + self.delta_weight().to(W.dtype), self.base_layer.bias)
        return self.base_layer(x) + self.delta_apply(x).to(x.dtype)

    @torch.no_grad()
    def merge(self, safe: bool = True) -> None:
        """W₀ += ΔW in place; safe: refuse (and leave W₀ as it is) if the result holds NaN or Inf."""
        if self.merged:
            log.warning("%s: already merged", self.name)
            return
        W = self.base_layer.weight
        delta = self.delta_weight().to(W.dtype)
        if safe:
            merged = W + delta
            if not torch.isfinite(merged).all():
                bad = int((~torch.isfinite(self.M)).sum())
                raise ValueError(f"{self.name}: merging gives NaN/Inf weights ({bad} of M's {self.M.numel()} entries "
                                 f"are not finite); not merged: the adapter is broken, reload or retrain it")
            W.copy_(merged)
        else:
            W.add_(delta)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W -= ΔW: W₀ back up to float round-off of W's dtype."""
        if not self.merged:
            log.warning("%s: not merged", self.name)
            return
        self.base_layer.weight.sub_(self.delta_weight().to(self.base_layer.weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"block=[{self.k}, {self.m}), r={self.r}, path={self.path}, merged={self.merged}"


# ------------------------------------------------------------------------------- the model

def spectral_layers(model: nn.Module) -> dict[str, SpectralLinear]:
    return {n: mod for n, mod in model.named_modules() if isinstance(mod, SpectralLinear)}


def _model_family(model: nn.Module, config: SpectralConfig) -> str:
    if config.family is not None:
        return config.family
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = families.of_model_type(model_type)
    if family is None:
        raise ValueError(f"SpectralConfig.family = None: the model says model_type = {model_type!r}, which is none of "
                         f"the name maps' families; set family, allowed: {', '.join(sorted(FAMILIES))}")
    return family


def _hf_config(model: nn.Module) -> dict:
    cfg = getattr(model, "config", None)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else {}


def find_targets(model: nn.Module, config: SpectralConfig) -> dict[str, str]:
    """{module name: key} of the modules to wrap (key: the matrix id, or the module name in regex mode);
    fails naming the key and what is allowed for a selection that matches nothing or a non-Linear."""
    modules = dict(model.named_modules())
    linears = [n for n, mod in modules.items() if isinstance(mod, nn.Linear)]
    if config.target_modules is not None:
        t = config.target_modules
        if isinstance(t, str):
            names = [n for n in modules if n and re.fullmatch(t, n)]
            if not names:
                raise ValueError(f"SpectralConfig.target_modules = {t!r} matches no module (full match); "
                                 f"nn.Linear modules are e.g. {', '.join(linears[:6])}")
        else:
            names = [n for n in modules if n and any(n == x or n.endswith("." + x) for x in t)]
            missing = [x for x in t if not any(n == x or n.endswith("." + x) for n in names)]
            if missing:
                raise ValueError(f"SpectralConfig.target_modules: {missing} match no module; nn.Linear modules are "
                                 f"e.g. {', '.join(linears[:6])}")
        targets = {n: n for n in names}
    else:
        family = _model_family(model, config)
        specs = map_names(family, {n: tuple(p.shape) for n, p in model.state_dict().items()}, _hf_config(model))
        ids = {s.id: s for s in specs}
        n_layers = max(parse_id(i)["layer"] for i in ids) + 1
        layers = sorted({l + n_layers if l < 0 else l for l in config.layers})
        bad_layers = [l for l in config.layers if not -n_layers <= l < n_layers]
        if bad_layers:
            raise ValueError(f"SpectralConfig.layers = {config.layers}: {bad_layers} not in this {family} model; "
                             f"allowed: 0..{n_layers - 1} (or -{n_layers}..-1)")
        chosen = {i: s for i, s in ids.items()
                  if parse_id(i)["layer"] in layers and parse_id(i)["kind"] in config.kinds}
        have = [kd for kd in KINDS if any(parse_id(i)["kind"] == kd and parse_id(i)["layer"] in layers for i in ids)]
        absent = [kd for kd in config.kinds if kd not in have]
        if absent:
            raise ValueError(f"SpectralConfig.kinds: {absent} match no matrix of layers {layers} of this {family} "
                             f"model; allowed: {', '.join(have)}")
        targets = {}
        for i, s in sorted(chosen.items()):
            source = s.sources[0]
            if s.transform != "none" or not source.endswith(".weight"):
                raise ValueError(f"matrix {i} ({family}) is {source} with transform {s.transform!r}, not the weight of "
                                 f"a plain nn.Linear (transform 'none'); the spectral adapter wraps nn.Linear only, "
                                 f"leave kind {parse_id(i)['kind']} out of SpectralConfig.kinds")
            targets[source.removesuffix(".weight")] = i
    for name, key in targets.items():
        mod = modules.get(name)
        if not isinstance(mod, nn.Linear):
            raise ValueError(f"{key}: module {name} is a {type(mod).__name__}, not an nn.Linear; the spectral adapter "
                             f"wraps nn.Linear only (allowed e.g. {', '.join(linears[:4])})")
    return targets


def apply_spectral(model: nn.Module, config: SpectralConfig, factors: Mapping[str, Any] | None = None) -> nn.Module:
    """Wrap the selected nn.Linear modules of `model` in place; freeze all but M (and modules_to_save).

    factors: precomputed SVDs keyed by matrix id or module name (e.g. specbasis.svd.read_svd of the
    workflow's results/svd store): objects with U (out, K), Vh (K, in) and S, or tuples (U, S, Vh);
    checked to be singular vectors of the module's weight. Others are computed here (float64, CPU).
    Every check runs before the first module is replaced, so a failure leaves the model untouched."""
    if spectral_layers(model):
        raise ValueError("apply_spectral: the model already holds spectral layers; apply it to a fresh model")
    targets = find_targets(model, config)
    for name, key in targets.items():
        rank = min(model.get_submodule(name).weight.shape)
        if config.m > rank:
            raise ValueError(f"SpectralConfig.m = {config.m} exceeds the rank {rank} of {key} (weight "
                             f"{tuple(model.get_submodule(name).weight.shape)}); allowed: k < m ≤ {rank}")
    params = dict(model.named_parameters())
    heads = {}
    for entry in config.modules_to_save:
        hit = [n for n in params if n.startswith(entry + ".") or ("." + entry + ".") in n]
        if not hit:
            raise ValueError(f"SpectralConfig.modules_to_save: {entry!r} matches no module with parameters; top-level "
                             f"modules: {', '.join(n for n, _ in model.named_children())}")
        heads.update(dict.fromkeys(hit))
    for name, key in targets.items():
        parent, _, child = name.rpartition(".")
        given = None if factors is None else factors.get(key, factors.get(name))
        layer = SpectralLinear(model.get_submodule(name), config.k, config.m, name=name, dtype=config.dtype,
                               path=config.path, factors=given)
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    for n, p in model.named_parameters():
        p.requires_grad_(n in heads or n.endswith(".M") and isinstance(model.get_submodule(n[:-2]), SpectralLinear))
    model.spectral_config = config
    log.info("%s", describe_parameters(model))
    return model


def merge_all(model: nn.Module, safe: bool = True) -> None:
    for layer in spectral_layers(model).values():
        layer.merge(safe=safe)


def unmerge_all(model: nn.Module) -> None:
    for layer in spectral_layers(model).values():
        layer.unmerge()


def merge_and_unload(model: nn.Module, safe: bool = True) -> nn.Module:
    """Merge every spectral layer and put its nn.Linear back: the plain model, at the base model's speed."""
    for name, layer in spectral_layers(model).items():
        if not layer.merged:
            layer.merge(safe=safe)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer.base_layer)
    return model


# ------------------------------------------------------------------------------- parameter counts

def spectral_parameter_counts(model: nn.Module) -> dict[str, Any]:
    """matrices, r (per matrix), adapter (Σ r²), head (other trainable), trainable, total parameters."""
    layers = spectral_layers(model)
    adapter = sum(layer.M.numel() for layer in layers.values() if layer.M.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"matrices": len(layers), "r": {n: layer.r for n, layer in layers.items()}, "adapter": adapter,
            "head": trainable - adapter, "trainable": trainable, "total": sum(p.numel() for p in model.parameters())}


def describe_parameters(model: nn.Module) -> str:
    c = spectral_parameter_counts(model)
    rs = sorted(set(c["r"].values()))
    per = f"{c['matrices']} x {rs[0]}²" if len(rs) == 1 else f"{c['matrices']} matrices, r in {rs or '-'}"
    return (f"trainable params: {c['trainable']:,} (spectral {per} = {c['adapter']:,}; head {c['head']:,}) || "
            f"all params: {c['total']:,} || trainable%: {100 * c['trainable'] / max(c['total'], 1):.4f}")


def print_trainable_parameters(model: nn.Module) -> None:
    print(describe_parameters(model))


# ------------------------------------------------------------------------------- save and load

def spectral_state_dict(model: nn.Module, factors: str = "auto") -> dict[str, torch.Tensor]:
    """What a reload needs beyond the pretrained model (see the module docstring), as tensors only:

        spectral.{module}.M (r, r)   .block [k, m]   .w0_sha256 (32 bytes)   .pivots (r,)   .sigma (r,) if known
        spectral.{module}.U_r, .Vh_r  when factors = "always", or "auto" and recompute_is_safe fails
        head.{parameter}            the trainable parameters of modules_to_save
    """
    if factors not in ("auto", "always"):
        raise ValueError(f"spectral_state_dict: factors = {factors!r}; allowed: auto, always")
    state = {}
    for name, layer in spectral_layers(model).items():
        p = f"spectral.{name}."
        state[p + "M"] = layer.M.detach().cpu().clone()
        state[p + "block"] = torch.tensor([layer.k, layer.m])
        state[p + "w0_sha256"] = torch.tensor(list(bytes.fromhex(layer.w0_sha256)), dtype=torch.uint8)
        state[p + "pivots"] = layer.pivots.cpu().clone()
        if layer.sigma is not None:
            state[p + "sigma"] = layer.sigma[layer.k:layer.m].clone()
        if factors == "always" or not recompute_is_safe(layer.sigma, layer.k, layer.m):
            state[p + "U_r"], state[p + "Vh_r"] = layer.U_r.cpu().clone(), layer.Vh_r.cpu().clone()
    for n, prm in model.named_parameters():
        if prm.requires_grad and not isinstance(model.get_submodule(n.rpartition(".")[0]), SpectralLinear):
            state["head." + n] = prm.detach().cpu().clone()
    return state


def save_spectral(model: nn.Module, path, factors: str = "auto") -> None:
    """spectral_state_dict as safetensors, with the config and the convention in its metadata."""
    from safetensors.torch import save_file

    from specbasis.io.store import atomic_path

    meta = {"format": FORMAT, "config": json.dumps(model.spectral_config.to_dict()), "sign_convention": SIGN_CONVENTION,
            "svd": "torch.linalg.svd, float64 on CPU, W = U diag(S) Vh (out, in)"}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in spectral_state_dict(model, factors).items()}, str(tmp), metadata=meta)


def read_spectral(path) -> tuple[SpectralConfig, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}: not a spectral adapter")
        state = {k: f.get_tensor(k) for k in f.keys()}
    return SpectralConfig.from_dict(json.loads(meta["config"])), state


@torch.no_grad()
def load_spectral(model: nn.Module, state: Mapping[str, torch.Tensor] | str | Path) -> nn.Module:
    """Load a spectral state (a dict from spectral_state_dict, or a file from save_spectral) into `model`.

    A file into a model without spectral layers applies its config first. Refuses a state whose W₀ checksum,
    block or modules differ from the model's; orients recomputed factors by the saved pivots and checks σ."""
    if isinstance(state, (str, Path)):
        config, state = read_spectral(state)
        if not spectral_layers(model):
            apply_spectral(model, config)
    layers = spectral_layers(model)
    if not layers:
        raise ValueError("load_spectral: the model has no spectral layers; apply_spectral(model, config) first, "
                         "or load a file written by save_spectral (it carries the config)")
    saved = {k.removeprefix("spectral.").rsplit(".", 1)[0] for k in state if k.startswith("spectral.")}
    if saved != set(layers):
        raise ValueError(f"load_spectral: the state adapts {sorted(saved)}, the model {sorted(layers)}: must match")
    for name, layer in layers.items():
        p = f"spectral.{name}."
        block = tuple(state[p + "block"].tolist())
        if block != (layer.k, layer.m):
            raise ValueError(f"{name}: the state's block [k, m) = {list(block)}, the model's [{layer.k}, {layer.m})")
        sha = bytes(state[p + "w0_sha256"].tolist()).hex()
        if sha != layer.w0_sha256:
            raise ValueError(f"{name}: the base weight W₀ differs from the one the adapter was trained on (sha256 "
                             f"{layer.w0_sha256[:12]}… here, {sha[:12]}… saved); load the same pretrained weights")
        remerge = layer.merged
        if remerge:
            layer.unmerge()
        if p + "U_r" in state:
            layer.U_r.copy_(state[p + "U_r"]), layer.Vh_r.copy_(state[p + "Vh_r"])
        else:
            U_r, Vh_r = orient(layer.U_r, layer.Vh_r, state[p + "pivots"].to(layer.U_r.device))
            layer.U_r.copy_(U_r), layer.Vh_r.copy_(Vh_r)
            if layer.sigma is not None and p + "sigma" in state:
                err = float((layer.sigma[layer.k:layer.m] - state[p + "sigma"].double()).abs().max())
                if err > RECOMPUTE_MIN_GAP * float(layer.sigma[0]):
                    raise ValueError(f"{name}: the recomputed σ_k..σ_m differ from the saved ones by {err:.2e}; "
                                     f"save with factors='always'")
        layer.pivots.copy_(state[p + "pivots"])
        layer.M.copy_(state[p + "M"])
        if remerge:
            layer.merge()
    params = dict(model.named_parameters())
    for k, v in state.items():
        if k.startswith("head."):
            if k[5:] not in params:
                raise ValueError(f"load_spectral: the state's head parameter {k[5:]} is not in the model")
            params[k[5:]].copy_(v)
    return model
