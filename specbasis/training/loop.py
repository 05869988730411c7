"""The parts of the one training loop, written once: finetuning (specbasis.training.finetune) and the MAE's pre- and
post-training (specbasis.dynamics.train) use them alike.

    setup_torch      threads, the device, flush-denormal on CPU
    seed_everything  python, numpy, torch (a finetune seeds before building the model: the fresh head too)
    adamw            AdamW, weight decay on matrices and kernels only (not biases, norm scales, named exclusions)
    SCHEDULES        per-step learning-rate multipliers: warm-up, then linear or cosine decay to 0
    Optimization     optimizer + schedule + clipping (+ fp16 autocast and GradScaler on CUDA) around one model:
                     `step(loss, where)` checks the loss is finite, then backward, clip, optimizer and schedule
                     step; resumable (state_dict)
    batch_order      index batches for a number of steps: epochs of seeded permutations read straight through
    epoch_batches    one epoch's batches of a permutation (the last one short)
    StepMemory       the peak memory of the training steps; `clock` a device-synchronised perf_counter
    progress         the progress bar (tqdm, refreshed at most every 2 s)
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from specbasis.device import resolve_device


def setup_torch(device: str = "auto", threads: int | None = None) -> torch.device:
    """Set torch's threads (when given) and resolve the device. On CPU, flush denormals: Adam's second moments
    and small gradients underflow into denormal floats, which x86 CPUs handle in microcode (measured here, an
    EfficientNet step went from 0.35 s to over 3 s)."""
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if dev.type == "cpu":
        torch.set_flush_denormal(True)
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def adamw(model: torch.nn.Module, lr: float, weight_decay: float,
          no_decay_suffixes: tuple[str, ...] = ()) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on matrices and conv kernels (ndim >= 2) only, and not
    on parameters whose names end with one of `no_decay_suffixes` (the MAE's CLS and mask tokens)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decays = [p.ndim >= 2 and not n.endswith(no_decay_suffixes) for n, p in named] if no_decay_suffixes else \
        [p.ndim >= 2 for _, p in named]
    decay = [p for (_, p), d in zip(named, decays) if d]
    rest = [p for (_, p), d in zip(named, decays) if not d]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=lr, foreach=True)


def warmup_linear(step: int, total: int, warmup: int) -> float:
    """LR multiplier at `step` (0-based): 0 -> 1 over `warmup` steps, then 1 -> 0 linearly at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier at `step` (0-based): linear 0 -> 1 over `warmup` steps, then cosine 1 -> 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


SCHEDULES = {"linear": warmup_linear, "cosine": warmup_cosine}


class Optimization:
    """AdamW, a per-step schedule, global grad-norm clipping and, with amp on CUDA, fp16 autocast + GradScaler,
    around one model. A disabled GradScaler passes everything through, so without amp a step is exactly
    zero_grad, backward, clip, optimizer.step, schedule.step."""

    def __init__(self, model: torch.nn.Module, *, lr: float, weight_decay: float, total_steps: int,
                 warmup_steps: int, schedule: str, grad_clip: float, device: torch.device, amp: bool = False,
                 no_decay_suffixes: tuple[str, ...] = ()):
        if amp and device.type != "cuda":
            raise ValueError(f"amp (fp16 mixed precision) needs a CUDA device; this run is on {device}: set amp: false")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule {schedule!r}: allowed {', '.join(SCHEDULES)}")
        self.model, self.lr0, self.grad_clip, self.amp = model, lr, grad_clip, amp
        self.total, self.warmup = total_steps, warmup_steps
        self.optimizer = adamw(model, lr, weight_decay, no_decay_suffixes)
        multiplier = SCHEDULES[schedule]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: multiplier(step, total_steps, warmup_steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()

    def step(self, loss: torch.Tensor, where: str) -> float:
        """One optimizer step on `loss`; a non-finite loss stops the run naming `where` and the learning rate."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at {where}: lower lr (now {self.lr0}) or check the inputs")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return value

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def batch_order(n: int, steps: int, batch_size: int, rng: np.random.Generator):
    """Yield `steps` index batches: epochs of seeded permutations, read straight through."""
    buffer = np.zeros(0, np.int64)
    for _ in range(steps):
        while len(buffer) < batch_size:
            buffer = np.concatenate([buffer, rng.permutation(n)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def epoch_batches(order: np.ndarray, batch_size: int):
    """The batches of one epoch's permutation, in order; the last one may be short."""
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """The progress bar of a training run (tqdm; refreshed at most every 2 s unless told otherwise)."""
    return tqdm(iterable, **{"mininterval": 2.0, **kwargs})


def clock(device: torch.device) -> float:
    """perf_counter after the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class StepMemory:
    """Peak memory of the training steps, above what was held just before each.

    CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats (absolute, and above the allocation
    before the step). CPU on Linux: the kernel's high-water mark of the resident set (VmHWM), reset to the
    current RSS before each step by writing 5 to /proc/self/clear_refs, minus that RSS: exact for the
    process, but RSS also counts what the allocator keeps after a free. Elsewhere: psutil's RSS after each
    step, which misses peaks inside a step (said in `measure`)."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self.peak_abs, self.before = device, 0, 0, 0
        self.kind = "cuda" if device.type == "cuda" else "cpu_hwm" if self._can_reset_hwm() else "cpu_rss"

    @staticmethod
    def _can_reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return StepMemory._status("VmHWM") > 0
        except OSError:
            return False

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024  # kB
        return 0

    def start(self) -> None:
        if self.kind == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        elif self.kind == "cpu_hwm":
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.before = self._status("VmRSS")
        else:
            import psutil

            self.before = psutil.Process().memory_info().rss

    def stop(self) -> None:
        if self.kind == "cuda":
            top = torch.cuda.max_memory_allocated(self.device)
        elif self.kind == "cpu_hwm":
            top = self._status("VmHWM")
        else:
            import psutil

            top = psutil.Process().memory_info().rss
        self.peak, self.peak_abs = max(self.peak, top - self.before), max(self.peak_abs, top)

    def record(self) -> dict:
        measure = {"cuda": "torch.cuda.max_memory_allocated during a training step (reset before each)",
                   "cpu_hwm": "peak resident set (VmHWM, reset before each step via /proc/self/clear_refs)",
                   "cpu_rss": "resident set (psutil) after each step: misses peaks inside a step"}[self.kind]
        return {"device": self.device.type, "measure": measure, "peak_bytes": self.peak_abs,
                "peak_above_step_start_bytes": self.peak}
