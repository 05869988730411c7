"""The one loop's parts: schedules, AdamW's groups, and an Optimization step that is exactly the plain one."""
import numpy as np
import pytest
import torch

from specbasis.training.loop import Optimization, adamw, batch_order, epoch_batches, warmup_cosine, warmup_linear


def test_schedules():
    assert [warmup_linear(s, 10, 2) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert warmup_cosine(2, 10, 2) == 1.0 and warmup_cosine(6, 10, 2) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 2) == pytest.approx(0.0, abs=1e-12)


def model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    net.register_parameter("cls_token", torch.nn.Parameter(torch.randn(1, 3)))
    return net


def test_weight_decay_only_on_matrices_and_not_on_named_exclusions():
    groups = adamw(model(), 1e-3, 0.1).param_groups
    assert [len(g["params"]) for g in groups] == [2, 3] and groups[0]["weight_decay"] == 0.1
    groups = adamw(model(), 1e-3, 0.1, no_decay_suffixes=("token",)).param_groups
    assert [len(g["params"]) for g in groups] == [1, 4]


def test_an_optimization_step_is_the_plain_step_bit_for_bit():
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    a, b = model(), model()
    opt = Optimization(a, lr=1e-2, weight_decay=0.01, total_steps=5, warmup_steps=1, schedule="linear",
                       grad_clip=0.5, device=torch.device("cpu"))
    plain = adamw(b, 1e-2, 0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(plain, lambda s: warmup_linear(s, 5, 1))
    for step in range(5):
        opt.step(((a(x) - y) ** 2).mean(), f"step {step}")
        loss = ((b(x) - y) ** 2).mean()
        plain.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
        plain.step()
        sched.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(FloatingPointError, match="loss is nan at step 9: lower lr \\(now 0.01\\)"):
        opt.step(torch.tensor(float("nan"), requires_grad=True), "step 9")
    with pytest.raises(ValueError, match="amp .* needs a CUDA device"):
        Optimization(a, lr=1e-2, weight_decay=0, total_steps=5, warmup_steps=0, schedule="cosine", grad_clip=1,
                     device=torch.device("cpu"), amp=True)


def test_batches():
    order = list(batch_order(5, 4, 3, np.random.default_rng(0)))
    assert [len(b) for b in order] == [3, 3, 3, 3]
    assert sorted(np.concatenate(order[:1] + [order[1][:2]])) == [0, 1, 2, 3, 4]  # the first epoch read through
    assert [list(b) for b in epoch_batches(np.arange(5), 2)] == [[0, 1], [2, 3], [4]]
