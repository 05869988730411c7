"""Name maps against tiny random instances of the libraries' own classes (never typed-in names).

For every family: the base class and the classification class give the same ids; the ids per
layer and kind and their (out, in) shapes follow from the config; and the extracted matrices are
what the modules multiply by, checked numerically (plain layers by hooks on the module, fused and
odd layouts by recomputing the attention from the extracted q, k, v, o).
"""
from __future__ import annotations

import functools
import re
import sys
import tempfile
import types
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable

import pytest
import timm
import torch
import transformers as T
from torch.overrides import TorchFunctionMode

from specbasis.io.namemaps import (FAMILIES, KINDS, MatrixSpec, apply_transform, load_matrix, make_id, map_names,
                                parse_id)

SELF = ("attn_q", "attn_k", "attn_v", "attn_o", "ffn_in", "ffn_out")
TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, vocab_size=100,
            max_position_embeddings=64)


# --------------------------------------------------------------------- expected ids and shapes

def transformer_layer(layer: int, d: int, inter: int, stack: str = "", cross: bool = False) -> dict:
    """Ids -> (out, in) of one standard layer: d x d attention, d -> inter -> d FFN."""
    shapes = {"attn_q": (d, d), "attn_k": (d, d), "attn_v": (d, d), "attn_o": (d, d),
              "ffn_in": (inter, d), "ffn_out": (d, inter)}
    if cross:
        shapes |= {f"x{k}": v for k, v in shapes.items() if k.startswith("attn")}
    return {make_id(layer, k, stack): v for k, v in shapes.items()}


def layers(n: int, d: int, inter: int, **kw) -> dict:
    return {k: v for l in range(n) for k, v in transformer_layer(l, d, inter, **kw).items()}


def mobilebert_expected(c: T.MobileBertConfig) -> dict:
    t, F = c.true_hidden_size, c.num_feedforward_networks  # q, k, o act in the bottleneck width t
    out = {}
    for l in range(c.num_hidden_layers):
        out |= {make_id(l, "attn_q"): (t, t), make_id(l, "attn_k"): (t, t),
                make_id(l, "attn_v"): (t, c.hidden_size), make_id(l, "attn_o"): (t, t)}
        for i in range(F):  # the F-1 extra FFNs run first, the main one last: forward order
            out |= {make_id(l, "ffn_in", index=i): (c.intermediate_size, t),
                    make_id(l, "ffn_out", index=i): (t, c.intermediate_size)}
    return out


def hierarchical_expected(dims, depths, attention: bool, ratio: int = 4) -> dict:
    out, layer = {}, 0
    for d, n in zip(dims, depths):
        for _ in range(n):
            block = transformer_layer(layer, d, ratio * d)
            out |= block if attention else {k: v for k, v in block.items() if ".ffn_" in k}
            layer += 1
    return out


def efficientnet_expected(model) -> dict:
    """From the blocks themselves: expansion conv -> ffn_in, projection -> ffn_out."""
    out, layer = {}, 0
    for stage in model.blocks:
        for block in stage:
            proj = block.conv_pwl if hasattr(block, "conv_pwl") else block.conv_pw
            if hasattr(block, "conv_pwl"):
                out[make_id(layer, "ffn_in")] = (block.conv_pw.out_channels, block.conv_pw.in_channels)
            out[make_id(layer, "ffn_out")] = (proj.out_channels, proj.in_channels)
            layer += 1
    return out


# ------------------------------------------------------------------ brain-signal model builders

def braindecode_labram_class() -> type:
    """braindecode's Labram class.

    `import braindecode` imports torchaudio (braindecode/modules/filter.py and four model modules, at
    import time), but the index has only CUDA builds of torchaudio (2.11.1+cu132, whose _torchaudio.so
    needs libc10_cuda.so) and the environment's torch is the CPU 2.13.0, so setup.sh installs braindecode
    --no-deps and no torchaudio. When torchaudio does not import, a stand-in is put in sys.modules for
    braindecode's import only: every name in it is a module class that raises when built, and Labram never
    builds one. The Labram class itself is braindecode's own, unchanged."""
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        return _import_with_torchaudio_stand_in()
    from braindecode.models import Labram
    return Labram


def _torchaudio_stand_in() -> dict[str, types.ModuleType]:
    def names(module: str):
        def get(name: str):
            if name.startswith("__"):  # inspect and pickle probe dunders: no stand-ins for those
                raise AttributeError(name)

            def refuse(self, *args, **kwargs):
                raise RuntimeError(f"{module}.{name} is a stand-in (torchaudio is not installed)")
            return type(name, (torch.nn.Module,), {"__init__": refuse})
        return get

    modules = {}
    for name in ("torchaudio", "torchaudio.functional", "torchaudio.transforms"):
        modules[name] = types.ModuleType(name)
        modules[name].__getattr__ = names(name)
    modules["torchaudio"].functional = modules["torchaudio.functional"]
    modules["torchaudio"].transforms = modules["torchaudio.transforms"]
    return modules


@functools.cache
def _import_with_torchaudio_stand_in() -> type:
    stand_in = _torchaudio_stand_in()
    sys.modules.update(stand_in)
    try:
        from braindecode.models import Labram
    finally:  # only the stand-ins leave sys.modules again; braindecode keeps its references to them
        for name in stand_in:
            sys.modules.pop(name, None)
    return Labram


def vit_mae(classifier: bool, config: T.ViTMAEConfig) -> torch.nn.Module:
    """ViTMAEModel, or a ViTForImageClassification loaded from it (the MAE fine-tuning recipe)."""
    mae = T.ViTMAEModel(config)
    if not classifier:
        return mae
    with tempfile.TemporaryDirectory() as d:
        mae.save_pretrained(d)
        return T.ViTForImageClassification.from_pretrained(d, num_labels=10)


MAE = T.ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, image_size=16,
                     patch_size=8, decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                     decoder_intermediate_size=24)
# BrainLM's Nystromformer encoder is transformers' NystromformerLayer: tested on NystromformerModel's layers
NYSTROM = T.NystromformerConfig(**TEXT, segment_means_seq_len=8, num_landmarks=4)
EEG = dict(n_times=64, n_chans=4, patch_size=32, conv_out_channels=8, num_layers=2, num_heads=2, mlp_ratio=2,
           qkv_bias=True)  # embed_dim = 8 conv channels x 4 steps = 32


def labram_inputs() -> dict:
    from braindecode.models.labram import LABRAM_CHANNEL_ORDER

    return {"x": torch.randn(2, 4, 64), "ch_names": LABRAM_CHANNEL_ORDER[:4]}


# ---------------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    family: str
    make: Callable[[bool], torch.nn.Module]     # classifier? -> a tiny random model
    expected: Callable[[torch.nn.Module], dict]  # base model -> {id: (out, in)}
    inputs: Callable[[], dict]                  # forward inputs of the base model
    config: dict | None = None                  # what map_names is given (the model's config.json)


def hf(family, config_cls, base, classifier, expected, **kw) -> Case:
    config = config_cls(**kw)
    return Case(family, lambda cls: (classifier if cls else base)(config), lambda m: expected(config),
                lambda: {"input_ids": torch.randint(3, 90, (2, 7))}, config.to_dict())


def tm(family, name, expected, size, **kw) -> Case:
    return Case(family, lambda cls: timm.create_model(name, pretrained=False, num_classes=10 if cls else 0, **kw),
                expected, lambda: {"x": torch.randn(2, 3, size, size)})


CASES = [
    hf("bert", T.BertConfig, T.BertModel, T.BertForSequenceClassification, lambda c: layers(2, 32, 48), **TEXT),
    hf("roberta", T.RobertaConfig, T.RobertaModel, T.RobertaForSequenceClassification,
       lambda c: layers(2, 32, 48), **TEXT),
    hf("electra", T.ElectraConfig, T.ElectraModel, T.ElectraForSequenceClassification,
       lambda c: layers(2, 32, 48), **TEXT, embedding_size=16),
    hf("bigbird", T.BigBirdConfig, T.BigBirdModel, T.BigBirdForSequenceClassification,
       lambda c: layers(2, 32, 48), **TEXT, attention_type="original_full"),
    hf("deberta", T.DebertaConfig, T.DebertaModel, T.DebertaForSequenceClassification,
       lambda c: layers(2, 32, 48), **TEXT),
    hf("deberta_v2", T.DebertaV2Config, T.DebertaV2Model, T.DebertaV2ForSequenceClassification,
       lambda c: layers(2, 32, 48), **TEXT, relative_attention=True, pos_att_type=["p2c", "c2p"]),
    hf("distilbert", T.DistilBertConfig, T.DistilBertModel, T.DistilBertForSequenceClassification,
       lambda c: layers(2, 32, 48), dim=32, n_layers=2, n_heads=4, hidden_dim=48, vocab_size=100,
       max_position_embeddings=64),
    hf("mobilebert", T.MobileBertConfig, T.MobileBertModel, T.MobileBertForSequenceClassification,
       mobilebert_expected, **TEXT, embedding_size=16, true_hidden_size=16, intra_bottleneck_size=16,
       num_feedforward_networks=3),
    hf("albert", T.AlbertConfig, T.AlbertModel, T.AlbertForSequenceClassification,
       lambda c: transformer_layer(0, 32, 48), **TEXT, embedding_size=16),
    hf("bart", T.BartConfig, T.BartModel, T.BartForSequenceClassification,  # DistilBART-like: fewer decoder layers
       lambda c: layers(2, 32, 48, stack="enc") | layers(1, 32, 48, stack="dec", cross=True),
       d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
       encoder_ffn_dim=48, decoder_ffn_dim=48, vocab_size=100, max_position_embeddings=64),
    hf("gpt2", T.GPT2Config, T.GPT2Model, T.GPT2ForSequenceClassification, lambda c: layers(2, 32, 128),
       n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0,
       pad_token_id=0),
    hf("xlnet", T.XLNetConfig, T.XLNetModel, T.XLNetForSequenceClassification, lambda c: layers(2, 32, 48),
       d_model=32, n_layer=2, n_head=4, d_inner=48, vocab_size=100),
    tm("convnext", "convnext_atto", lambda m: hierarchical_expected((8, 16, 24, 32), (1, 1, 2, 1), False), 32,
       depths=(1, 1, 2, 1), dims=(8, 16, 24, 32)),  # conv_mlp=True: 1x1 convs
    tm("convnext", "convnext_atto", lambda m: hierarchical_expected((8, 16, 8, 8), (1, 2, 1, 1), False), 32,
       depths=(1, 2, 1, 1), dims=(8, 16, 8, 8), conv_mlp=False),  # Linear MLP, as convnext_base and the CLIP ConvNeXts
    tm("vit", "vit_tiny_patch16_224", lambda m: layers(2, 32, 128), 32,
       depth=2, embed_dim=32, num_heads=2, img_size=32, patch_size=8),
    tm("swin", "swin_tiny_patch4_window7_224", lambda m: hierarchical_expected((16, 32), (1, 2), True), 56,
       depths=(1, 2), embed_dim=16, num_heads=(2, 4), img_size=56),
    tm("efficientnet_lite", "efficientnet_lite0", efficientnet_expected, 64),
    Case("vit_mae", lambda cls: vit_mae(cls, MAE), lambda m: layers(2, 32, 48),
         lambda: {"pixel_values": torch.randn(2, 3, 16, 16)}),
    Case("vit_mae", lambda cls: (T.NystromformerForSequenceClassification if cls else T.NystromformerModel)(NYSTROM),
         lambda m: layers(2, 32, 48), lambda: {"input_ids": torch.randint(3, 90, (2, 8))}),
    Case("labram", lambda cls: braindecode_labram_class()(**EEG, n_outputs=3 if cls else 0),
         lambda m: layers(2, 32, 64), labram_inputs),
    # the original LaBraM's blocks (modeling_finetune.Block, "based on BEiT-v2") are timm's Beit blocks, names
    # and all: qkv without bias, q_bias/v_bias apart, proj, mlp.fc1/fc2, gamma_1/gamma_2
    tm("labram", "beit_base_patch16_224", lambda m: layers(2, 32, 128), 16,
       img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, use_rel_pos_bias=False, use_abs_pos_emb=True),
    # Brain-JEPA's VisionTransformer (after I-JEPA) names its blocks as timm's VisionTransformer does
    Case("brain_jepa", lambda cls: timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10 if cls else 0),
        lambda m: layers(2, 32, 128), lambda: {"x": torch.randn(2, 3, 16, 16)}),
]
IDS = [f"{c.family}-{i}" for i, c in enumerate(CASES)]


@functools.cache
def built(i: int, classifier: bool) -> torch.nn.Module:
    torch.manual_seed(i)
    return CASES[i].make(classifier).eval()


def shapes_of(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def specs_of(i: int, classifier: bool = False) -> list[MatrixSpec]:
    return map_names(CASES[i].family, shapes_of(built(i, classifier)), CASES[i].config)


def matrices(i: int) -> dict[str, torch.Tensor]:
    state = built(i, False).state_dict()
    return {s.id: load_matrix(s, state.__getitem__) for s in specs_of(i)}


def test_every_family_has_a_case():
    assert {c.family for c in CASES} == set(FAMILIES)


# ------------------------------------------------------------------------------- ids and shapes

@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_ids_and_shapes_follow_from_the_config(i):
    specs = specs_of(i)
    expected = CASES[i].expected(built(i, False))
    got = {s.id: s.shape for s in specs}
    assert sorted(got) == sorted(expected)
    assert got == expected  # (out, in)
    per_kind = Counter(parse_id(s.id)["kind"] for s in specs)
    assert per_kind == Counter(parse_id(k)["kind"] for k in expected)
    for s in specs:
        assert parse_id(s.id)["kind"] in KINDS
        assert len(s.sources) == 1 and s.sources[0] in shapes_of(built(i, False))


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_base_and_classifier_give_the_same_ids(i):
    base, cls = specs_of(i, False), specs_of(i, True)
    assert [(s.id, s.shape, s.transform) for s in base] == [(s.id, s.shape, s.transform) for s in cls]
    for a, b in zip(base, cls):  # the classifier's names are the base's behind one prefix
        assert b.sources[0].endswith(a.sources[0])
    prefixes = {b.sources[0][:-len(a.sources[0])] for a, b in zip(base, cls)}
    assert len(prefixes) == 1


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_load_matrix_gives_the_spec_shape(i):
    for key, W in matrices(i).items():
        spec = next(s for s in specs_of(i) if s.id == key)
        assert W.ndim == 2 and tuple(W.shape) == spec.shape


# ------------------------------------------------------------------- numbers: plain modules

PLAIN = ("none", "transpose", "squeeze_1x1")


def run(i: int) -> None:
    with torch.no_grad():
        built(i, False)(**CASES[i].inputs())


def record_calls(i: int, specs) -> dict[str, list]:
    """Run the base model with a hook on the module of every plain spec: id -> [(order, x, y)]."""
    model = built(i, False)
    calls, order, handles = defaultdict(list), [0], []
    for s in specs:
        module = model.get_submodule(s.sources[0].rsplit(".", 1)[0])

        def hook(m, args, out, key=s.id):
            order[0] += 1
            calls[key].append((order[0], args[0].detach(), out.detach()))
        handles.append(module.register_forward_hook(hook))
    try:
        run(i)
    finally:
        for h in handles:
            h.remove()
    return calls


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_plain_matrices_are_what_the_module_multiplies(i):
    """y = x @ W.T + b for every Linear / GPT-2 Conv1D / 1x1 conv, with W as extracted."""
    specs = [s for s in specs_of(i) if s.transform in PLAIN]
    state = built(i, False).state_dict()
    calls = record_calls(i, specs)
    W = matrices(i)
    for s in specs:
        assert calls[s.id], f"{s.id}: module of {s.sources[0]} never ran in the forward pass"
        bias = state.get(s.sources[0].removesuffix("weight") + "bias")
        conv = isinstance(built(i, False).get_submodule(s.sources[0].rsplit(".", 1)[0]), torch.nn.Conv2d)
        for _, x, y in calls[s.id]:
            if conv:  # 1x1 conv on (B, C, H, W); Linear works on the last dim (ConvNeXt: channels-last)
                pred = torch.einsum("oi,bihw->bohw", W[s.id], x)
                pred = pred + (bias[:, None, None] if bias is not None else 0)
            else:
                pred = x @ W[s.id].T + (bias if bias is not None else 0)
            torch.testing.assert_close(pred, y, rtol=1e-4, atol=1e-5, msg=f"{s.id} from {s.sources[0]}")


def test_mobilebert_ffn_index_is_forward_order():
    i = next(j for j, c in enumerate(CASES) if c.family == "mobilebert")
    specs = [s for s in specs_of(i) if s.id.startswith("00.ffn_in")]
    calls = record_calls(i, specs)
    first = {parse_id(s.id)["index"]: calls[s.id][0][0] for s in specs}
    assert sorted(first) == [0, 1, 2]
    assert [first[k] for k in sorted(first)] == sorted(first.values())


def test_albert_shared_layer_is_stored_once_with_a_note():
    i = next(j for j, c in enumerate(CASES) if c.family == "albert")
    specs = specs_of(i)
    assert {parse_id(s.id)["layer"] for s in specs} == {0}
    assert all(s.note == "shared by all 2 layers (ALBERT layer group 0)" for s in specs)
    no_config = map_names("albert", shapes_of(built(i, False)))
    assert all("shared" in s.note and "group 0" in s.note for s in no_config)


def test_efficientnet_blocks_without_expansion_have_only_ffn_out():
    i = next(j for j, c in enumerate(CASES) if c.family == "efficientnet_lite")
    specs = specs_of(i)
    assert len({parse_id(s.id)["layer"] for s in specs}) == 16  # efficientnet_lite0: 1+2+2+3+3+4+1 blocks
    first = [s for s in specs if parse_id(s.id)["layer"] == 0]
    assert [s.id for s in first] == ["00.ffn_out"] and first[0].sources == ("blocks.0.0.conv_pw.weight",)
    assert "depthwise-separable" in first[0].note
    assert sum(parse_id(s.id)["kind"] == "ffn_in" for s in specs) == 15


# ------------------------------------------------------------- numbers: fused and odd layouts

def attend(q, k, v, heads, bias=None, causal=False):
    """Reference multi-head attention on projected (B, L, H*dh) tensors; returns (B, L, H*dh)."""
    B, L, D = q.shape
    dh = D // heads

    def split(t):
        return t.reshape(B, L, heads, dh).transpose(1, 2)  # (B, H, L, dh)

    scores = split(q) @ split(k).transpose(-1, -2) / dh ** 0.5  # (B, H, L, L)
    if bias is not None:
        scores = scores + bias
    if causal:
        scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    return (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(B, L, D)


def fused_bias(spec: MatrixSpec, bias: torch.Tensor) -> torch.Tensor:
    """The part of a fused bias that belongs to `spec`: the bias is a matrix with one input column."""
    column = bias[None, :] if spec.transform.startswith("transpose") else bias[:, None]  # source layout
    return apply_transform(spec.transform, column)[:, 0]


def qkv_o(i: int, layer: str = "00"):
    """The extracted q, k, v, o of one layer of case i, with the biases that go with them."""
    specs = {parse_id(s.id)["kind"]: s for s in specs_of(i) if s.id.startswith(layer + ".attn")}
    state = built(i, False).state_dict()
    W = matrices(i)
    out = {}
    for kind, s in specs.items():
        bias = state.get(s.sources[0].removesuffix("weight") + "bias")
        out[kind] = (W[s.id], fused_bias(s, bias) if bias is not None else 0)
    return out


def project(x, wb):
    W, b = wb
    return x @ W.T + b


def case(family: str) -> int:
    return next(j for j, c in enumerate(CASES) if c.family == family)


def cases_of(family: str) -> list[int]:
    return [j for j, c in enumerate(CASES) if c.family == family]


def check_vit(family: str = "vit"):
    i = case(family)
    attn = built(i, False).blocks[0].attn
    x = torch.randn(2, 5, 32)
    p = qkv_o(i)
    ref = project(attend(project(x, p["attn_q"]), project(x, p["attn_k"]), project(x, p["attn_v"]),
                         attn.num_heads), p["attn_o"])
    return attn(x), ref


def check_labram():
    """LaBraM: q, k, v thirds of a bias-free qkv, with q_bias and v_bias apart. braindecode's Labram also
    normalizes q and k per head (q_norm, k_norm); the original's blocks are timm's Beit blocks."""
    got, ref = [], []
    for i in cases_of("labram"):
        attn = built(i, False).blocks[0].attn
        with torch.no_grad():  # random (they start at zero) so that they are tested too
            attn.q_bias.normal_()
            attn.v_bias.normal_()
        x = torch.randn(2, 5, 32)
        p = qkv_o(i)
        assert all(p[f"attn_{n}"][1] == 0 for n in "qkv")  # no qkv.bias: the biases are apart
        q, k, v = (x @ p[f"attn_{n}"][0].T for n in "qkv")
        q, v = q + attn.q_bias, v + attn.v_bias
        if getattr(attn, "q_norm", None) is not None:  # braindecode: LayerNorm of each head's q and k
            B, L, D = q.shape
            heads = attn.num_heads

            def per_head(t, norm):
                return norm(t.reshape(B, L, heads, D // heads)).reshape(B, L, D)
            q, k = per_head(q, attn.q_norm), per_head(k, attn.k_norm)
        got.append(attn(x))
        ref.append(project(attend(q, k, v, attn.num_heads), p["attn_o"]))
    return torch.cat([g.flatten() for g in got]), torch.cat([r.flatten() for r in ref])


def check_swin():
    i = case("swin")
    attn = built(i, False).layers[0].blocks[0].attn
    x = torch.randn(2, 49, 16)  # (windows, 7x7 tokens, C)
    p = qkv_o(i)
    ref = project(attend(project(x, p["attn_q"]), project(x, p["attn_k"]), project(x, p["attn_v"]),
                         attn.num_heads, bias=attn._get_rel_pos_bias()), p["attn_o"])
    return attn(x), ref


def check_gpt2():
    i = case("gpt2")
    attn = built(i, False).h[0].attn
    x = torch.randn(2, 5, 32)
    causal = torch.zeros(1, 1, 5, 5).masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1),
                                                 torch.finfo(torch.float32).min)
    p = qkv_o(i)
    ref = project(attend(project(x, p["attn_q"]), project(x, p["attn_k"]), project(x, p["attn_v"]),
                         4, causal=True), p["attn_o"])
    return attn(hidden_states=x, attention_mask=causal)[0], ref


def check_deberta():
    """DeBERTa v1: in_proj interleaves q, k, v per head; q_bias and v_bias are separate."""
    i = case("deberta")
    sa = built(i, False).encoder.layer[0].attention.self
    with torch.no_grad():  # random (they start at zero) so that they are tested too
        sa.q_bias.normal_()
        sa.v_bias.normal_()
    x = torch.randn(2, 5, 32)
    p = qkv_o(i)
    ref = attend(x @ p["attn_q"][0].T + sa.q_bias, x @ p["attn_k"][0].T, x @ p["attn_v"][0].T + sa.v_bias, 4)
    return sa(x, torch.ones(2, 1, 5, 5, dtype=torch.bool))[0], ref


class EinsumCalls(TorchFunctionMode):
    """Records every torch.einsum call: (operands, result)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.einsum:
            operands = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
            self.calls.append((tuple(operands), out))
        return out


def check_xlnet():
    """XLNet q, k, v: einsum('ibh,hnd->ibnd', x, q) == x @ W.T; o: einsum('ibnd,hnd->ibh', a, o) == a @ W.T."""
    i = case("xlnet")
    model = built(i, False)
    with torch.no_grad(), EinsumCalls() as rec:
        run(i)
    W = matrices(i)
    got, ref = [], []
    for l, layer in enumerate(model.layer):
        for kind in ("attn_q", "attn_k", "attn_v", "attn_o"):
            param = getattr(layer.rel_attn, kind[-1])
            uses = [(ops, out) for ops, out in rec.calls if any(op is param for op in ops)]
            assert uses, f"xlnet layer {l}: rel_attn.{kind[-1]} never used in an einsum"
            for ops, out in uses:
                x = ops[0]  # (i, b, h) for q/k/v, (i, b, n, d) for o
                flat = x.reshape(*x.shape[:2], -1)
                got.append(out.reshape(*out.shape[:2], -1))
                ref.append(flat @ W[make_id(l, kind)].T)
    return torch.cat([g.flatten() for g in got]), torch.cat([r.flatten() for r in ref])


FUSED = {"vit": check_vit, "swin": check_swin, "gpt2": check_gpt2, "deberta": check_deberta, "xlnet": check_xlnet,
         "labram": check_labram, "brain_jepa": functools.partial(check_vit, "brain_jepa")}


@pytest.mark.parametrize("family", FUSED)
def test_fused_and_odd_layouts_reproduce_the_module(family):
    with torch.no_grad():
        got, ref = FUSED[family]()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_every_non_plain_transform_is_checked_numerically():
    odd = {c.family for i, c in enumerate(CASES) if any(s.transform not in PLAIN for s in specs_of(i))}
    assert odd == set(FUSED)


@pytest.mark.parametrize("i", cases_of("labram") + cases_of("brain_jepa"), ids=lambda i: IDS[i])
def test_fused_qkv_gives_its_thirds(i):
    """load_matrix returns exactly the q, k, v thirds of the fused (3*d, d) qkv."""
    state = built(i, False).state_dict()
    fused = [s for s in specs_of(i) if parse_id(s.id)["kind"] in ("attn_q", "attn_k", "attn_v")]
    assert len(fused) == 3 * 2
    for s in fused:
        W = state[s.sources[0]]  # (3*32, 32), rows [q; k; v]
        assert s.sources[0].endswith(".attn.qkv.weight") and W.shape == (96, 32)
        third = "qkv".index(parse_id(s.id)["kind"][-1])
        assert torch.equal(load_matrix(s, state.__getitem__), W[32 * third:32 * (third + 1)])


def test_vit_mae_reads_the_names_on_disk_and_leaves_the_decoder_out(tmp_path):
    """ViTMAEForPreTraining: in memory transformers 5 names its layers `vit.layers.N...`; save_pretrained
    writes them back as `vit.encoder.layer.N.attention.attention.query...` (the names of hub checkpoints
    and of BrainLM's). Both give the same ids and matrices; the decoder (`decoder.*`, a second stack of
    layers, thrown away after pretraining) is in none of the specs and does not count as a second prefix."""
    from safetensors import safe_open

    torch.manual_seed(0)
    model = T.ViTMAEForPreTraining(MAE).eval()
    state = model.state_dict()
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        disk = {k: f.get_tensor(k) for k in f.keys()}
    in_memory = map_names("vit_mae", {k: tuple(v.shape) for k, v in state.items()})
    on_disk = map_names("vit_mae", {k: tuple(v.shape) for k, v in disk.items()})
    assert [(s.id, s.shape) for s in in_memory] == [(s.id, s.shape) for s in on_disk]
    assert {s.id: s.shape for s in on_disk} == layers(2, 32, 48)
    assert all(s.sources[0].startswith("vit.layers.") for s in in_memory)
    assert all(s.sources[0].startswith("vit.encoder.layer.") for s in on_disk)
    k = next(s for s in on_disk if s.id == "01.attn_k")
    assert k.sources == ("vit.encoder.layer.1.attention.attention.key.weight",)
    for a, b in zip(in_memory, on_disk):
        assert torch.equal(load_matrix(a, state.__getitem__), load_matrix(b, disk.__getitem__)), a.id
    for names, specs in ((state, in_memory), (disk, on_disk)):
        decoder = {k for k in names if k.startswith("decoder.")}
        assert any(".attention." in k for k in decoder)  # it has attention layers of its own
        assert not decoder & {s.sources[0] for s in specs}
        assert not any("decoder" in s.sources[0] for s in specs)


def labram_pretraining_model() -> torch.nn.Module:
    """NeuralTransformerForMEM's layout: `student` (the encoder, with an lm_head of its own), `lm_head`,
    `projection_head`."""
    torch.manual_seed(0)
    student = CASES[cases_of("labram")[1]].make(False)
    assert isinstance(student, timm.models.beit.Beit)
    student.lm_head = torch.nn.Linear(32, 64)
    mem = torch.nn.Module()
    mem.student, mem.lm_head = student, torch.nn.Linear(32, 64)
    mem.projection_head = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU())
    return mem.eval()


def test_labram_pretraining_checkpoint_nests_the_student():
    """LaBraM's NeuralTransformerForMEM (modeling_pretrain.py): the encoder as `student` (blocks, norm,
    lm_head), then an `lm_head` and a `projection_head` (Linear, ReLU) of its own; no teacher. Built from
    timm's Beit, whose blocks the original's copy (see the labram case)."""
    state = labram_pretraining_model().state_dict()
    assert {"lm_head.weight", "projection_head.0.weight", "student.lm_head.weight"} <= set(state)
    specs = map_names("labram", {k: tuple(v.shape) for k, v in state.items()})
    assert {s.id: s.shape for s in specs} == layers(2, 32, 128)
    assert all(s.sources[0].startswith("student.blocks.") for s in specs)
    q = next(s for s in specs if s.id == "01.attn_q")
    assert torch.equal(load_matrix(q, state.__getitem__), state["student.blocks.1.attn.qkv.weight"][:32])


def test_deberta_split_is_interleaved_per_head_not_thirds():
    i = case("deberta")
    spec = next(s for s in specs_of(i) if s.id == "00.attn_k")
    W = built(i, False).state_dict()[spec.sources[0]]  # (3*32, 32), rows (head, q/k/v, d_head=8)
    assert spec.transform == "split_qkv_heads:k:4"
    k = load_matrix(spec, {spec.sources[0]: W}.__getitem__)
    torch.testing.assert_close(k, torch.cat([W[24 * h + 8:24 * h + 16] for h in range(4)]))
    assert not torch.equal(k, W[32:64])  # not the middle third


# -------------------------------------------------------------------------------- ids, errors

@pytest.mark.parametrize("key, parts", [
    ("00.ffn_in", {"stack": "", "layer": 0, "kind": "ffn_in", "index": None}),
    ("11.attn_o", {"stack": "", "layer": 11, "kind": "attn_o", "index": None}),
    ("dec.03.xattn_v", {"stack": "dec", "layer": 3, "kind": "xattn_v", "index": None}),
    ("enc.05.attn_q", {"stack": "enc", "layer": 5, "kind": "attn_q", "index": None}),
    ("07.ffn_out.2", {"stack": "", "layer": 7, "kind": "ffn_out", "index": 2}),
    ("123.ffn_in", {"stack": "", "layer": 123, "kind": "ffn_in", "index": None}),
])
def test_parse_id_round_trips(key, parts):
    assert parse_id(key) == parts
    assert make_id(**parts) == key


@pytest.mark.parametrize("key", ["0.ffn_in", "003.ffn_in", "00.ffn", "00.mlp_in", "mid.00.attn_q", "00.attn_q.01",
                                 "00.attn_q.", "attn_q", "", "00..attn_q", "enc.00"])
def test_parse_id_refuses_malformed_ids(key):
    with pytest.raises(ValueError, match="malformed matrix id"):
        parse_id(key)


def test_unknown_family_says_what_is_known_and_how_to_add_one():
    with pytest.raises((KeyError, ValueError)) as err:
        map_names("llama", {"x.weight": (2, 2)})
    message = str(err.value)
    assert "'llama'" in message
    for family in FAMILIES:
        assert family in message
    assert "specbasis/io/namemaps.py" in message and "FAMILIES" in message and "tests/test_namemaps.py" in message


def bert_shapes() -> dict:
    return shapes_of(built(case("bert"), False))


@pytest.mark.parametrize("edit, pattern", [
    (lambda s: s.pop("encoder.layer.1.attention.self.key.weight"),
     r"layer 01 .* no attn_k: expected 'encoder.layer.1.attention.self.key.weight'"),
    (lambda s: s.update({"encoder.layer.1.intermediate.dense.weight": (37, 32)}),
     r"encoder.layer.1.intermediate.dense.weight has shape \(37, 32\).*encoder.layer.1.output.dense.weight"),
    (lambda s: s.update({"encoder.layer.0.attention.self.query.weight": (32,)}),
     r"tensor encoder.layer.0.attention.self.query.weight: .*2-D.*\(32,\)"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("encoder.layer.1.")],
     None),  # a whole last layer gone is indistinguishable from a shallower model: fine
    (lambda s: s.update({"teacher.encoder.layer.0.attention.self.query.weight": (32, 32)}),
     r"2 different prefixes \['', 'teacher.'\]"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("encoder.")], r"none of the \d+ tensors is a bert"),
])
def test_broken_checkpoints_name_the_tensor(edit, pattern):
    shapes = bert_shapes()
    edit(shapes)
    if pattern is None:
        assert {parse_id(s.id)["layer"] for s in map_names("bert", shapes)} == {0}
        return
    with pytest.raises(ValueError, match=pattern):
        map_names("bert", shapes)


def test_a_missing_middle_layer_is_an_error():
    shapes = shapes_of(built(case("vit"), False))
    shapes = {k: v for k, v in shapes.items() if not k.startswith("blocks.0.")}
    with pytest.raises(ValueError, match=r"layers \[0\] have no weight matrices"):
        map_names("vit", shapes)


@pytest.mark.parametrize("family, name, shape, pattern", [
    ("vit", "blocks.0.attn.qkv.weight", (97, 32), r"blocks.0.attn.qkv.weight: .*\(3\*out, in\).*\(97, 32\)"),
    ("efficientnet_lite", "blocks.1.0.conv_pw.weight", (96, 16, 3, 3),
     r"blocks.1.0.conv_pw.weight: .*1x1.*\(96, 16, 3, 3\)"),
    ("xlnet", "layer.0.rel_attn.q", (32, 32), r"layer.0.rel_attn.q: .*3-D.*\(32, 32\)"),
])
def test_misshapen_fused_tensors_name_the_tensor(family, name, shape, pattern):
    shapes = shapes_of(built(case(family), False))
    shapes[name] = shape
    with pytest.raises(ValueError, match=pattern):
        map_names(family, shapes)


def test_deberta_needs_the_head_count():
    with pytest.raises(ValueError, match="num_attention_heads"):
        map_names("deberta", shapes_of(built(case("deberta"), False)))


def test_load_matrix_names_a_missing_or_misshapen_tensor():
    spec = next(s for s in specs_of(case("vit")) if s.id == "01.attn_v")
    with pytest.raises(KeyError, match=re.escape("tensor 'blocks.1.attn.qkv.weight' is missing")):
        load_matrix(spec, {}.__getitem__)
    with pytest.raises(ValueError, match=r"blocks.1.attn.qkv.weight has shape \(99, 32\), expected \(96, 32\)"):
        load_matrix(spec, lambda name: torch.zeros(99, 32))
