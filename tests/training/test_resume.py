"""A finetune stopped and run again (specbasis.training.resume) ends as one that was never stopped: the same loss and
val curves, the same saved weights bit for bit, on CPU. Stopped three ways: SIGTERM (the state saved at the end of
the step, exit 143), a crash after a periodic checkpoint, and SIGKILL of a separate process mid-run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specbasis.training import finetune as train_mod
from specbasis.training.finetune import finetune
from specbasis.training.resume import STATE_FILE
from test_train import (IMAGE_SETTINGS, TEXT_SETTINGS, bert_dir, bert_src, image_splits, text_splits,  # noqa: F401
                        timm_dir)

STEPS = 12
CASES = {  # name: (base fixture, family, splits, settings, method)
    "full": ("bert_dir", "bert", text_splits, TEXT_SETTINGS, None),
    "adalora": ("bert_dir", "bert", text_splits, TEXT_SETTINGS,
                {"method": "adalora", "init_r": 6, "target_r": 2, "tinit": 1, "tfinal": 2, "delta_t": 1,
                 "targets": {"layers": "all", "kinds": ["attn_q", "ffn_in"]}}),
    "image": ("timm_dir", "efficientnet_lite", image_splits, IMAGE_SETTINGS, None),  # batch-norm buffers too
}


def _run(request, case, out, **extra):
    fixture, family, splits, settings, method = CASES[case]
    base = request.getfixturevalue(fixture)
    return finetune(base, family, splits(), out, **{**settings, "steps": STEPS, "eval_every": 4}, method=method,
                    eval_step0=False, **extra)


def _same_run(a: dict, a_dir: Path, b: dict, b_dir: Path) -> None:
    assert a["loss_curve"] == b["loss_curve"]
    assert a["val_curve"] == b["val_curve"]
    assert a["test_logits_head"] == b["test_logits_head"]
    wa, wb = load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def interrupt_at(monkeypatch, step: int, action) -> None:
    """Call action() during the training step `step` (1-based: the step's loss is being computed); undone by
    monkeypatch.undo() or at the test's end."""
    calls = {"n": 0}
    loss = train_mod.task_loss

    def task_loss(*args):
        calls["n"] += 1
        if calls["n"] == step:
            action()
        return loss(*args)

    monkeypatch.setattr(train_mod, "task_loss", task_loss)


def raise_(error: Exception):
    def action():
        raise error
    return action


@pytest.fixture(scope="module")
def reference(request, tmp_path_factory):
    """Each case run once without stopping (and without a work folder)."""
    runs = {}

    def get(case):
        if case not in runs:
            out = tmp_path_factory.mktemp(f"ref-{case}") / "model"
            runs[case] = (_run(request, case, out), out)
        return runs[case]
    return get


def _allocator_state_round_trips(request, path: Path) -> None:
    from specbasis import methods
    from specbasis.methods.apply import prepare
    from specbasis.models import load_classifier

    saved = torch.load(path, weights_only=False)["adapted"]
    assert all(len(v) for v in saved["allocator"].values()), "AdaLoRA's scores were saved mid-allocation"
    fixture, family, _, _, method = CASES["adalora"]
    model, _ = load_classifier(request.getfixturevalue(fixture), family, 2, max_length=16)
    adapted = prepare(model, methods.parse(method), family, total_steps=STEPS)
    assert not any(adapted.training_state()["allocator"].values())  # a fresh allocator knows nothing yet
    adapted.load_training_state(saved)
    again = adapted.training_state()
    assert again["rank_pattern"] == saved["rank_pattern"]
    for key, scores in saved["allocator"].items():
        assert scores.keys() == again["allocator"][key].keys()
        assert all(torch.equal(scores[n], again["allocator"][key][n]) for n in scores), key


@pytest.mark.parametrize("case", list(CASES))
def test_sigterm_saves_the_state_and_a_rerun_ends_as_an_unstopped_run(request, reference, case, tmp_path,
                                                                       monkeypatch):
    ref, ref_dir = reference(case)
    work, out = tmp_path / "work", tmp_path / "model"
    # during step 5: the state is saved when it ends (AdaLoRA: amid its allocation)
    interrupt_at(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit) as stopped:
        _run(request, case, out, work_dir=work)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert not out.exists() and (work / STATE_FILE).exists()
    assert torch.load(work / STATE_FILE, weights_only=False)["step"] == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    monkeypatch.undo()
    if case == "adalora":  # its allocator's importance scores travel with the state, and are put back
        _allocator_state_round_trips(request, work / STATE_FILE)

    resumed = _run(request, case, out, work_dir=work)
    assert resumed["resumed_after_steps"] == [5] and "resumed_after_steps" not in ref
    assert not work.exists()  # done: nothing left to resume
    _same_run(ref, ref_dir, resumed, out)


def test_a_crash_resumes_from_the_last_periodic_checkpoint(request, reference, tmp_path, monkeypatch):
    ref, ref_dir = reference("full")
    work, out = tmp_path / "work", tmp_path / "model"
    interrupt_at(monkeypatch, 8, raise_(MemoryError("the node ran out of memory")))
    with pytest.raises(MemoryError):
        _run(request, "full", out, work_dir=work, checkpoint_every=3)
    assert torch.load(work / STATE_FILE, weights_only=False)["step"] == 6
    monkeypatch.undo()
    resumed = _run(request, "full", out, work_dir=work, checkpoint_every=3)
    assert resumed["resumed_after_steps"] == [6]
    _same_run(ref, ref_dir, resumed, out)


def test_another_runs_state_is_discarded(request, reference, tmp_path, monkeypatch, caplog):
    ref, ref_dir = reference("full")
    work = tmp_path / "work"
    monkeypatch.setitem(CASES, "other", ("bert_dir", "bert", text_splits, {**TEXT_SETTINGS, "lr": 1e-3}, None))
    interrupt_at(monkeypatch, 5, raise_(RuntimeError("stopped")))
    with pytest.raises(RuntimeError):
        _run(request, "other", tmp_path / "other", work_dir=work, checkpoint_every=2)
    monkeypatch.undo()  # CASES["other"] goes too: not needed any more
    again = _run(request, "full", tmp_path / "model", work_dir=work, checkpoint_every=2)  # the config changed: lr
    assert "is the state of another run (differs in: settings): starting afresh" in caplog.text
    assert "resumed_after_steps" not in again
    _same_run(ref, ref_dir, again, tmp_path / "model")


KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path[:0] = {paths!r}
    from specbasis.training import finetune as train_mod
    from test_train import TEXT_SETTINGS, text_splits

    loss = train_mod.task_loss
    def slow_loss(*args):  # time for the test to kill the run between two checkpoints
        time.sleep(0.3)
        return loss(*args)
    train_mod.task_loss = slow_loss
    train_mod.finetune(Path({base!r}), "bert", text_splits(), Path({out!r}),
                       **{{**TEXT_SETTINGS, "steps": {steps}, "eval_every": 4}}, eval_step0=False,
                       work_dir=Path({work!r}), checkpoint_every=2)
""")


def test_sigkill_mid_run_then_a_rerun_ends_as_an_unstopped_run(request, reference, bert_dir, tmp_path):  # noqa: F811
    ref, ref_dir = reference("full")
    work, out = tmp_path / "work", tmp_path / "model"
    tests = Path(__file__).resolve().parent
    script = KILLED.format(paths=[str(tests), str(tests.parents[1])], base=str(bert_dir), out=str(out),
                           work=str(work), steps=STEPS)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    state = work / STATE_FILE
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # into the next pair of steps
    proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
    assert not out.exists()
    saved = torch.load(state, weights_only=False)["step"]
    assert 2 <= saved < STEPS and saved % 2 == 0
    resumed = finetune(bert_dir, "bert", text_splits(), out, **{**TEXT_SETTINGS, "steps": STEPS, "eval_every": 4},
                       eval_step0=False, work_dir=work, checkpoint_every=2)
    assert resumed["resumed_after_steps"] == [saved]
    _same_run(ref, ref_dir, resumed, out)
