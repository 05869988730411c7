"""The spectral adapter (specbasis.methods.spectral_adapter) on tiny BERTs: exact no-op at init, merge, block structure,
reload in a fresh process, parameter counts, a short training run, and every bad input with its message."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from specbasis.io.namemaps import map_names
from specbasis.methods.spectral_adapter import (SpectralConfig, SpectralLinear, apply_spectral, choose_path, crossover_tokens,
                                load_spectral, merge_all, merge_and_unload, print_trainable_parameters, save_spectral,
                                spectral_layers, spectral_parameter_counts, spectral_state_dict, svd_block, unmerge_all)

REPO = Path(__file__).resolve().parents[2]
HIDDEN, INTER, LAYERS = 32, 64, 3
# the paper's choice, scaled down: FFN matrices of the last two layers, block [2, 10): r = 8
CONFIG = dict(k=2, m=10, layers=[-2, -1])
FFN_LAST_TWO = ["bert.encoder.layer.1.intermediate.dense", "bert.encoder.layer.1.output.dense",
                "bert.encoder.layer.2.intermediate.dense", "bert.encoder.layer.2.output.dense"]


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=40, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                     intermediate_size=INTER, num_labels=2, max_position_embeddings=16,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


def ids(seed: int = 1, n: int = 4, length: int = 8) -> torch.Tensor:
    return torch.randint(0, 40, (n, length), generator=torch.Generator().manual_seed(seed))


def adapted(seed: int = 0, **overrides) -> BertForSequenceClassification:
    return apply_spectral(tiny_bert(seed), SpectralConfig(**{**CONFIG, **overrides}))


def randomize_M(model, scale=0.3, seed=3):  # W₀'s σ are ~0.1-0.3 (BERT's init)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in spectral_layers(model).values():
            layer.M.copy_(scale * torch.randn(layer.M.shape, generator=g))


def train(model, steps=5, lr=1e-2, seed=4):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randint(0, 40, (8, 8), generator=g), torch.randint(0, 2, (8,), generator=g)
        opt.zero_grad()
        model(x, labels=y).loss.backward()
        opt.step()


def logits(model, x=None):
    with torch.no_grad():
        return model(ids() if x is None else x).logits


# ------------------------------------------------------------------------------------- invariants

@pytest.mark.parametrize("path", ["auto", "factored", "dense"])
def test_starts_as_exact_noop(path):
    base = logits(tiny_bert())
    model = adapted(path=path)
    assert sorted(spectral_layers(model)) == FFN_LAST_TWO
    assert (logits(model) - base).abs().max() <= 1e-6
    model.train()
    with torch.enable_grad():
        out = model(ids()).logits
    assert (out - base).abs().max() <= 1e-6


@pytest.mark.parametrize("path", ["factored", "dense"])
def test_merged_equals_unmerged_and_unmerge_restores_w0(path):
    model = adapted(path=path)
    W0 = {n: layer.weight.detach().clone() for n, layer in spectral_layers(model).items()}
    randomize_M(model)
    unmerged, base = logits(model), logits(tiny_bert())
    assert (unmerged - base).abs().max() > 0.2 * base.abs().max(), "a random M must change the function"
    merge_all(model)
    assert all(layer.merged for layer in spectral_layers(model).values())
    assert (logits(model) - unmerged).abs().max() <= 1e-5
    unmerge_all(model)
    assert (logits(model) - unmerged).abs().max() <= 1e-5
    for n, layer in spectral_layers(model).items():
        assert (layer.weight - W0[n]).abs().max() <= 1e-6


def test_factored_and_dense_paths_compute_the_same_delta():
    layer = SpectralLinear(nn.Linear(12, 20), 1, 7)
    with torch.no_grad():
        layer.M.normal_()
    x = torch.randn(5, 3, 12)
    torch.testing.assert_close(layer.delta_apply(x), x @ layer.delta_weight().T, rtol=1e-5, atol=1e-6)
    layer.path = "factored"
    y = layer(x)
    layer.path = "dense"
    torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-6)


def test_merge_and_unload_gives_the_plain_model():
    model = adapted()
    randomize_M(model)
    out = logits(model)
    merge_and_unload(model)
    assert not spectral_layers(model)
    assert type(model.bert.encoder.layer[2].intermediate.dense) is nn.Linear
    assert (logits(model) - out).abs().max() <= 1e-5


@pytest.mark.parametrize("save, trained", [
    ([], set()),
    (["classifier"], {"classifier.weight", "classifier.bias"}),
])
def test_gradients_reach_M_only_and_the_head_if_asked(save, trained):
    model = adapted(modules_to_save=save).train()
    randomize_M(model)  # with M = 0 every M gets a gradient too, but the head's would not depend on it
    model(ids(), labels=torch.tensor([0, 1, 1, 0])).loss.backward()
    expected = {f"{n}.M" for n in FFN_LAST_TWO} | trained
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got == expected
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in got)


@pytest.mark.parametrize("path", ["factored", "dense"])
def test_training_changes_only_the_spectral_block(path):
    model = adapted(path=path).train()
    W0 = {n: layer.weight.detach().double().clone() for n, layer in spectral_layers(model).items()}
    train(model, steps=4)
    merge_all(model)
    for n, layer in spectral_layers(model).items():
        dW = layer.weight.detach().double() - W0[n]                  # (out, in)
        rank = min(dW.shape)
        U, _, Vh = svd_block(W0[n], 0, rank)                         # the full bases, the adapter's convention
        D = U.T @ dW @ Vh.T                                          # (rank, rank): ΔW in W₀'s singular bases
        k, m = layer.k, layer.m
        inside = D[k:m, k:m]
        outside = D.clone()
        outside[k:m, k:m] = 0
        assert inside.abs().max() > 1e-3, f"{n}: the block did not move"
        assert outside.abs().max() <= 1e-5 * inside.abs().max() + 1e-6, f"{n}: ΔW leaks out of the block"
        assert (dW - U @ D @ Vh).abs().max() <= 1e-6, f"{n}: ΔW leaves the span of W₀'s singular vectors"
        torch.testing.assert_close(inside.float(), layer.M.detach().float(), rtol=1e-4, atol=1e-5)


def test_training_lowers_the_loss_on_a_separable_task():
    """Class 0: tokens 4..19, class 1: tokens 20..35; M of the last two layers' FFNs and the head train."""
    model = adapted(modules_to_save=["classifier"]).train()
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    x = torch.randint(4, 20, (32, 8), generator=g) + 16 * y[:, None]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2, weight_decay=0.0)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = model(x, labels=y).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    with torch.no_grad():
        assert (model(x).logits.argmax(-1) == y).float().mean() >= 0.9


# ------------------------------------------------------------------------------------- save and load

RELOAD = """
import sys, torch
from transformers import BertForSequenceClassification
from specbasis.methods.spectral_adapter import load_spectral
base, adapter, inputs, out = sys.argv[1:]
model = BertForSequenceClassification.from_pretrained(base).eval()
load_spectral(model, adapter)
with torch.no_grad():
    torch.save(model(torch.load(inputs)).logits, out)
"""


def test_reload_in_a_fresh_process_gives_the_same_logits(tmp_path):
    tiny_bert().save_pretrained(tmp_path / "base")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "base")
    apply_spectral(model, SpectralConfig(**CONFIG, modules_to_save=["classifier"]))
    train(model.train(), steps=3)
    model.eval()
    save_spectral(model, tmp_path / "adapter.safetensors")
    state = spectral_state_dict(model)
    assert not any(k.endswith(("U_r", "Vh_r")) for k in state), "random W₀: the factors are recomputable"
    x = ids(seed=7)
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path / "base"), str(tmp_path / "adapter.safetensors"),
                    str(tmp_path / "x.pt"), str(tmp_path / "out.pt")], check=True, env=env, cwd=tmp_path, timeout=120)
    reloaded = torch.load(tmp_path / "out.pt")
    assert (reloaded - logits(model, x)).abs().max() <= 1e-6
    assert (reloaded - logits(tiny_bert(), x)).abs().max() > 1e-3, "the adapter must matter"


def test_state_holds_only_M_the_head_and_the_guards():
    model = adapted(modules_to_save=["classifier"])
    state = spectral_state_dict(model)
    p = "spectral.bert.encoder.layer.2.output.dense."
    assert {k.removeprefix(p) for k in state if k.startswith(p)} == {"M", "block", "w0_sha256", "pivots", "sigma"}
    assert {k for k in state if k.startswith("head.")} == {"head.classifier.weight", "head.classifier.bias"}
    assert sum(v.numel() for k, v in state.items() if k.endswith(".M")) == 4 * 8 ** 2


def test_pivots_fix_signs_that_a_recomputation_flips():
    """Another machine's SVD may pick a pair's other sign (a near-tie of |entries|): the saved pivots undo it."""
    model = adapted()
    randomize_M(model)
    out, state = logits(model), spectral_state_dict(model)
    other = adapted()
    layer = spectral_layers(other)["bert.encoder.layer.2.intermediate.dense"]
    with torch.no_grad():
        layer.U_r[:, [0, 3]] *= -1
        layer.Vh_r[[0, 3]] *= -1
    load_spectral(other, state)
    assert (logits(other) - out).abs().max() <= 1e-6


def test_degenerate_w0_saves_its_factors():
    """Equal singular values: the vectors are not determined by W₀, so the state carries U_r, Vh_r, and a
    wrapper with another (equally valid) basis of the same W₀ gives the saved function after loading."""
    torch.manual_seed(0)
    Q = torch.linalg.qr(torch.randn(9, 6)).Q                         # (9, 6), every σ = 1
    make = lambda: nn.Linear(6, 9).requires_grad_(False)
    base = make()
    with torch.no_grad():
        base.weight.copy_(Q)
    layer = SpectralLinear(base, 1, 4)
    with torch.no_grad():
        layer.M.normal_()
    holder = nn.Sequential(layer)
    state = spectral_state_dict(holder)
    assert "spectral.0.U_r" in state and "spectral.0.Vh_r" in state
    U, S, Vh = svd_block(Q, 0, 6)
    R = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64)).Q     # another basis of the same W₀
    U2, Vh2 = U @ R, R.T @ Vh
    from specbasis.svd import fix_signs
    U2, Vh2 = (t[0] for t in fix_signs(U2[None], Vh2[None]))
    other_base = make()
    other_base.load_state_dict(base.state_dict())
    other = nn.Sequential(SpectralLinear(other_base, 1, 4, factors=(U2, S, Vh2)))
    x = torch.randn(5, 6)
    with torch.no_grad():
        other[0].M.copy_(layer.M)
    assert (other(x) - holder(x)).abs().max() > 1e-2, "M alone means another function in another basis"
    load_spectral(other, state)
    torch.testing.assert_close(other(x), holder(x), rtol=1e-5, atol=1e-6)


def test_load_refuses_another_base_weight():
    state = spectral_state_dict(adapted(seed=0))
    with pytest.raises(ValueError, match=r"bert\.encoder\.layer\.1\.intermediate\.dense: the base weight W₀ differs"):
        load_spectral(adapted(seed=1), state)


def test_load_into_a_merged_model():
    model = adapted()
    randomize_M(model)
    out, state = logits(model), spectral_state_dict(model)
    other = adapted()
    merge_all(other)
    load_spectral(other, state)
    assert all(layer.merged for layer in spectral_layers(other).values())
    assert (logits(other) - out).abs().max() <= 1e-5


def test_precomputed_factors_from_the_svd_store(tmp_path):
    from specbasis.svd import read_svd, write_svd_matrices

    model = tiny_bert()
    specs = map_names("bert", {n: p.shape for n, p in model.state_dict().items()})
    weights = {s.id: model.get_parameter(s.sources[0]).detach().numpy() for s in specs}
    write_svd_matrices(weights, tmp_path / "svd.h5", device="cpu")
    apply_spectral(model, SpectralConfig(**CONFIG), factors=read_svd(tmp_path / "svd.h5"))
    own = adapted()
    for n, layer in spectral_layers(model).items():
        assert layer.factors_given
        torch.testing.assert_close(layer.U_r, spectral_layers(own)[n].U_r, rtol=0, atol=1e-4)
        torch.testing.assert_close(layer.Vh_r, spectral_layers(own)[n].Vh_r, rtol=0, atol=1e-4)


def test_factors_of_another_matrix_are_refused():
    other = tiny_bert(seed=5)
    U_r, S, Vh_r = svd_block(other.bert.encoder.layer[2].intermediate.dense.weight, 0, HIDDEN)
    factors = {"02.ffn_in": (U_r, S, Vh_r)}                          # (U, S, Vh) of the wrong model
    with pytest.raises(ValueError, match=r"layer\.2\.intermediate\.dense: the given factors are not singular vectors"):
        apply_spectral(tiny_bert(), SpectralConfig(k=0, m=10, layers=[2], kinds=["ffn_in"]), factors=factors)


# ------------------------------------------------------------------------------------- counts

@pytest.mark.parametrize("config, matrices, r, head", [
    (dict(k=0, m=8, layers=[-1], kinds=["ffn_in"]), 1, 8, 0),
    (dict(k=2, m=10, layers=[-2, -1]), 4, 8, 0),
    (dict(k=0, m=16, layers=[0, 1, 2], kinds=["attn_q", "attn_v"]), 6, 16, 0),
    (dict(k=5, m=32, layers=[1], kinds=["ffn_in", "ffn_out", "attn_o"], modules_to_save=["classifier"]), 3, 27,
     HIDDEN * 2 + 2),
    (dict(k=0, m=4, target_modules=r".*layer\.0\.attention\.self\.(query|key)"), 2, 4, 0),
    (dict(k=0, m=4, target_modules=["layer.2.output.dense"]), 1, 4, 0),
])
def test_parameter_counts(config, matrices, r, head, capsys):
    model = apply_spectral(tiny_bert(), SpectralConfig(**config))
    base_total = sum(p.numel() for p in tiny_bert().parameters())
    c = spectral_parameter_counts(model)
    assert (c["matrices"], c["adapter"], c["head"]) == (matrices, matrices * r * r, head)
    assert c["trainable"] == matrices * r * r + head and c["total"] == base_total + matrices * r * r
    print_trainable_parameters(model)
    line = capsys.readouterr().out
    assert f"trainable params: {matrices * r * r + head:,}" in line and f"{matrices} x {r}²" in line


def test_psoft_trains_r_squared_per_matrix_too():
    """peft's PSOFT without orthogonality and magnitudes (the lead's baseline) counts the same on the same targets."""
    from peft import PsoftConfig, get_peft_model

    target = r".*encoder\.layer\.(1|2)\.(intermediate|output)\.dense"
    ours = spectral_parameter_counts(adapted())["adapter"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = get_peft_model(tiny_bert(), PsoftConfig(r=8, target_modules=target, psoft_orth=False,
                                                         psoft_mag_a=False, psoft_mag_b=False))
    assert sum(p.numel() for p in theirs.parameters() if p.requires_grad) == ours == 4 * 8 ** 2


def test_other_families_through_the_name_maps():
    """timm's ViT: fc1/fc2 are nn.Linear (wrapped), its q/k/v one fused Linear (refused, naming the transform)."""
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=8, embed_dim=32,
                            depth=2, num_heads=2, num_classes=3).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = vit(x)
    apply_spectral(vit, SpectralConfig(k=0, m=6, layers=[1], family="vit", modules_to_save=["head"]))
    assert sorted(spectral_layers(vit)) == ["blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]
    with torch.no_grad():
        assert (vit(x) - before).abs().max() <= 1e-6
    assert spectral_parameter_counts(vit)["adapter"] == 2 * 36


# ------------------------------------------------------------------------------------- the path rule

@pytest.mark.parametrize("out, inp, r, tokens, grad, expected", [
    (3072, 768, 50, 16 * 256, True, "factored"),    # small r: factored at every batch
    (3072, 768, 300, 16 * 40, True, "factored"),    # the paper's r at short sequences
    (3072, 768, 300, 16 * 256, True, "dense"),      # ... and at max length 256
    (768, 3072, 300, 16 * 256, True, "dense"),
    (1536, 384, 300, 16 * 40, True, "dense"),       # r close to MiniLM's rank 384
    (1536, 384, 50, 16 * 256, True, "factored"),
    (3072, 768, 300, 16, False, "factored"),        # inference, unmerged: a few tokens
    (3072, 768, 300, 16 * 256, False, "dense"),
])
def test_choose_path(out, inp, r, tokens, grad, expected):
    assert choose_path(out, inp, r, tokens, grad=grad) == expected


@pytest.mark.parametrize("out, inp, r", [(3072, 768, 300), (1536, 384, 200), (64, 32, 30)])
def test_choose_path_flips_at_the_crossover(out, inp, r):
    t = crossover_tokens(out, inp, r)
    assert np.isfinite(t)
    assert choose_path(out, inp, r, int(t) - 1) == "factored" and choose_path(out, inp, r, int(t) + 1) == "dense"
    assert crossover_tokens(3072, 768, 50) == float("inf")


# ------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, message", [
    (dict(k=5, m=5, layers=[0]), r"SpectralConfig\.m = 5: must exceed k = 5"),
    (dict(k=6, m=2, layers=[0]), r"SpectralConfig\.m = 2: must exceed k = 6"),
    (dict(k=-1, m=4, layers=[0]), r"SpectralConfig\.k = -1: the block \[k, m\) starts at a singular index ≥ 0"),
    (dict(k=0, m=4, layers=[0], dtype="float8"), r"SpectralConfig\.dtype = 'float8': allowed: float32, float64"),
    (dict(k=0, m=4, layers=[0], path="fast"), r"SpectralConfig\.path = 'fast': allowed: auto, factored, dense"),
    (dict(k=0, m=4, layers=[0], kinds=["ffn"]), r"SpectralConfig\.kinds = \['ffn'\]: allowed: ffn_in, ffn_out"),
    (dict(k=0, m=4, layers=[0], family="bertt"), r"SpectralConfig\.family = 'bertt': allowed: albert, bart"),
    (dict(k=0, m=4), r"give exactly one of target_modules .* and layers"),
    (dict(k=0, m=4, layers=[0], target_modules="x"), r"give exactly one of target_modules"),
    (dict(k=0, m=4, target_modules="(("), r"SpectralConfig\.target_modules = '\(\(': not a regular expression"),
    (dict(k=0, m=4, target_modules="x", kinds=["ffn_in"]), r"kinds and family select matrices with layers"),
    (dict(k=0, m=4.0, layers=[0]), r"SpectralConfig\.m = 4\.0: must be an int"),
])
def test_config_refuses(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpectralConfig(**kwargs)


def _gpt2():
    from transformers import GPT2Config, GPT2Model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=20, n_positions=8,
                                    bos_token_id=0, eos_token_id=0))


@pytest.mark.parametrize("make, kwargs, message", [
    (tiny_bert, dict(k=0, m=40, layers=[1]), r"SpectralConfig\.m = 40 exceeds the rank 32 of 01\.ffn_in \(weight "
                                             r"\(64, 32\)\); allowed: k < m ≤ 32"),
    (tiny_bert, dict(k=0, m=33, target_modules=r".*layer\.0\.attention\.self\.query"),
     r"SpectralConfig\.m = 33 exceeds the rank 32 of bert\.encoder\.layer\.0\.attention\.self\.query"),
    (tiny_bert, dict(k=0, m=4, target_modules=r"encoder\.nothing"),
     r"target_modules = 'encoder\\\\.nothing' matches no module \(full match\); nn\.Linear modules are e\.g\. "
     r"bert\.encoder\.layer\.0\.attention\.self\.query"),
    (tiny_bert, dict(k=0, m=4, target_modules=["output.dense", "lm_head"]), r"\['lm_head'\] match no module"),
    (tiny_bert, dict(k=0, m=4, layers=[7]), r"SpectralConfig\.layers = \[7\]: \[7\] not in this bert model; "
                                           r"allowed: 0\.\.2 \(or -3\.\.-1\)"),
    (tiny_bert, dict(k=0, m=4, layers=[0], kinds=["xattn_q"]),
     r"SpectralConfig\.kinds: \['xattn_q'\] match no matrix of layers \[0\] of this bert model; allowed: ffn_in, "
     r"ffn_out, attn_q"),
    (tiny_bert, dict(k=0, m=4, target_modules=r"bert\.encoder\.layer\.2\.output"),
     r"bert\.encoder\.layer\.2\.output: module bert\.encoder\.layer\.2\.output is a BertOutput, not an nn\.Linear"),
    (tiny_bert, dict(k=0, m=4, layers=[0], modules_to_save=["head"]),
     r"SpectralConfig\.modules_to_save: 'head' matches no module with parameters; top-level modules: bert, dropout, "
     r"classifier"),
    (_gpt2, dict(k=0, m=4, layers=[0], family="gpt2"),
     r"matrix 00\.ffn_in \(gpt2\) is h\.0\.mlp\.c_fc\.weight with transform 'transpose', not the weight of a plain "
     r"nn\.Linear"),
    (_gpt2, dict(k=0, m=4, layers=[0], kinds=["attn_q"], family="gpt2"),
     r"matrix 00\.attn_q \(gpt2\) is h\.0\.attn\.c_attn\.weight with transform 'transpose\+split_qkv:q'"),
    (lambda: nn.Sequential(nn.Linear(4, 4)), dict(k=0, m=2, layers=[0]),
     r"SpectralConfig\.family = None: the model says model_type = None.*set family, allowed: albert"),
])
def test_apply_refuses_before_touching_the_model(make, kwargs, message):
    model = make()
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        apply_spectral(model, SpectralConfig(**kwargs))
    assert not spectral_layers(model)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


def test_apply_twice_is_refused():
    with pytest.raises(ValueError, match="already holds spectral layers"):
        apply_spectral(adapted(), SpectralConfig(**CONFIG))


def test_safe_merge_refuses_non_finite_weights_and_names_the_module():
    model = adapted()
    layer = spectral_layers(model)["bert.encoder.layer.1.output.dense"]
    W = layer.weight.detach().clone()
    with torch.no_grad():
        layer.M[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"bert\.encoder\.layer\.1\.output\.dense: merging gives NaN/Inf weights "
                                         r"\(1 of M's 64 entries are not finite\); not merged"):
        merge_all(model)
    assert not layer.merged and torch.equal(layer.weight, W)
