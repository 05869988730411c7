"""A finetune that can be stopped and started again: its state saved every so often into a work folder that is never
an output (Snakemake deletes a job's outputs before it runs the job again; a preempted cluster job keeps this).

    checkpoints = Checkpoints(work_dir, fingerprint, every_steps=None, every_seconds=600)
    state = checkpoints.load()        # this run's last state, or None (none yet, or another run's: discarded)
    checkpoints.due(step)             # time for one: every_steps, or every_seconds since the last
    checkpoints.save(state)           # atomically: work_dir/state.pt is a whole state or the previous one
    checkpoints.clear()               # the run is done: the folder goes
    with stop_on_sigterm() as stop:   # SIGTERM (SLURM's preemption, scancel) sets stop.requested; the loop saves
        ...                           # its state at the end of the step and exits with status 143

What a state holds is the loop's (specbasis.training.finetune.train_steps): the step, the whole model's state_dict
(buffers too: batch-norm statistics), the optimizer, schedule and scaler, the method's own state (AdaLoRA's
importance scores: Adapted.training_state), every random generator's state, the curves so far and the timing. The
batches are drawn again from the seed and skipped up to the saved step, so a resumed run on the CPU trains on the
same batches with the same dropout and ends with the same weights, bit for bit, as one that was never stopped
(tests/training/test_resume.py; the same number of threads, since CPU reductions depend on it).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STATE_VERSION = 1
EVERY_SECONDS = 600.0  # a checkpoint every 10 minutes of training by default: nothing for the default suite's
# one-minute finetunes, at most 10 minutes lost for the paper suite's hours-long ones on a cluster that preempts


class Checkpoints:
    """The resumable state of one run in work_dir/state.pt (see the module's docstring)."""

    def __init__(self, work_dir: str | os.PathLike, fingerprint: dict, every_steps: int | None = None,
                 every_seconds: float | None = EVERY_SECONDS):
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"checkpoint every_steps={every_steps!r}: want an integer >= 1 or None")
        self.work_dir, self.path = Path(work_dir), Path(work_dir) / STATE_FILE
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))  # plain, comparable
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.last = time.monotonic()
        self.saved: list[int] = []  # the steps saved by this process

    def load(self) -> dict | None:
        """This run's saved state, or None. A state of another run (other settings, data, method or base model:
        the config changed since) or of another version is discarded, saying what differs, and the run starts
        afresh: Snakemake reruns a job whose params changed, and that rerun must not pick up the old run."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        old = state.get("fingerprint", {}) if isinstance(state, dict) else {}
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION or old != self.fingerprint:
            changed = sorted(k for k in {**old, **self.fingerprint} if old.get(k) != self.fingerprint.get(k))
            log.warning("%s is the state of another run (differs in: %s): starting afresh", self.path,
                        ", ".join(changed) or "version")
            self.clear()
            return None
        log.info("resuming from %s after step %d", self.path, state["step"])
        return state

    def due(self, step: int) -> bool:
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        return self.every_seconds is not None and time.monotonic() - self.last >= self.every_seconds

    def save(self, state: dict) -> None:
        """Write state (with this run's fingerprint and the version) atomically: a temporary file, then a rename."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.tmp-{os.getpid()}")
        try:
            torch.save({**state, "version": STATE_VERSION, "fingerprint": self.fingerprint}, tmp)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.last = time.monotonic()
        self.saved.append(int(state["step"]))
        log.info("checkpoint after step %d -> %s", state["step"], self.path)

    def clear(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def rng_state() -> dict:
    """Every global random generator's state: python's, numpy's, torch's (CPU and, where there is one, CUDA)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequest:
    requested = False


@contextlib.contextmanager
def stop_on_sigterm():
    """While inside (main thread only): SIGTERM sets the yielded object's `requested` instead of killing the process,
    so that the loop can save its state at the end of the step and exit (status 143, as a SIGTERM would)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        log.warning("SIGTERM: saving the state at the end of this step, then stopping; run again to resume")
        stop.requested = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
