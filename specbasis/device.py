"""Where torch work runs: `device: auto|cpu|cuda` from the config, resolved once per job."""
from __future__ import annotations

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """auto: CUDA when torch sees a GPU, else CPU. cpu, cuda or cuda:N: that device, or an error
    that says torch sees no GPU (a job never falls back silently from an explicit cuda)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: allowed auto, cpu, cuda, cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but torch sees no GPU; use auto or cpu")
    return torch.device(device)
