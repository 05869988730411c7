"""Name maps: checkpoint parameter names -> canonical matrix ids, in torch Linear orientation.

Every architecture family has one map function, registered in `FAMILIES`. It reads the names and
shapes of *all* parameters of a checkpoint and returns one `MatrixSpec` per weight matrix we
study: which tensor(s) it comes from and how to turn them into a 2-D matrix W of shape
(out, in), the orientation of `torch.nn.Linear.weight`, so that the layer computes y = x @ W.T.

Matrix ids
----------
::

    id     := [stack "."] layer "." kind ["." index]
    stack  := "enc" | "dec"       omitted for single-stack models (BERT, ViT, ...); DistilBART/BART uses both
    layer  := block index, 0-based, two digits zero-padded ("00", "11"); for hierarchical vision models
              (Swin, ConvNeXt, EfficientNet) blocks are numbered in order across all stages
    kind   := ffn_in | ffn_out | attn_q | attn_k | attn_v | attn_o
              | xattn_q | xattn_k | xattn_v | xattn_o      (decoder cross-attention)
    index  := 0-based index of a repeated sub-module in one layer, omitted when there is only one
              (MobileBERT's extra stacked FFNs, ALBERT's inner layers: numbered as below)

Examples: "03.attn_q" (BERT layer 3), "dec.01.xattn_v" (BART decoder layer 1, cross-attention),
"07.ffn_in.2" (MobileBERT layer 7, third FFN). Layers of 100 and more get three digits ("100").

Numbering of repeated sub-modules (`index`):
  - MobileBERT with num_feedforward_networks = F > 1: the F feed-forward networks of a layer are
    numbered in the order the forward pass applies them. The F - 1 stacked extra FFNs
    `ffn.{i}.intermediate/output` come first and get index i (0 .. F-2); the layer's main
    `intermediate`/`output` pair runs last and gets index F - 1. With F = 1 no index is written.
    (The bottleneck projections of MobileBERT are none of the kinds and are skipped.)
  - ALBERT with inner_group_num > 1: the inner layers of a layer group, index = inner layer.

Shared weights (ALBERT): one layer group is shared by all layers. It is stored once, as layer
`{group}` (so "00.*" for every released ALBERT), with `note` saying which layers share it.

Transforms (`MatrixSpec.transform`): "+"-separated steps applied left to right to the one source
tensor; each step checks the shape it is given and says which tensor broke.

    none                 stored (out, in) already: nn.Linear
    transpose            stored (in, out): GPT-2 Conv1D
    squeeze_1x1          1x1 conv kernel (out, in, 1, 1) -> (out, in)
    split_qkv:{q|k|v}    fused (3*out, in), contiguous thirds [q; k; v]: timm ViT/Swin `qkv`,
                         GPT-2 `c_attn` (after transpose)
    split_qkv_heads:{q|k|v}:{H}
                         fused (3*out, in) interleaved per head: rows ordered (head, q/k/v, d_head),
                         DeBERTa v1 `in_proj` (transpose_for_scores, then chunk(3, dim=-1))
    hnd:in               XLNet q/k/v (h, n, d) used as einsum("ibh,hnd->ibnd"): h = d_model is
                         the input -> W = reshape(h, n*d).T, (n*d, h)
    hnd:out              XLNet o (h, n, d) used as einsum("ibnd,hnd->ibh"): h = d_model is the
                         output -> W = reshape(h, n*d), (h, n*d)

Prefixes: each family's names are matched after any leading module prefix, so BertModel
(`encoder.layer.0...`), BertForSequenceClassification and old hub checkpoints (`bert.encoder...`)
give the same ids. All matched names of one checkpoint must share one prefix.

Skipped: biases, norms, embeddings, heads/poolers/classifiers, relative-position projections,
depthwise convs, SE, stems, downsampling and anything else that is none of the kinds. Also skipped:
the decoder of a masked autoencoder (`vit_mae`: ViTMAEForPreTraining's and BrainLM's `decoder.*`), which
is thrown away after pretraining; its layers never count as a second model under the one-prefix rule.

Brain-signal foundation models (families named after the model; layouts as their checkpoints hold them):
  - vit_mae     transformers' ViTMAE (ViTMAEModel, ViTMAEForPreTraining with the encoder under `vit.`, a
                ViTForImageClassification loaded from it) and BrainLM, whose released checkpoints are a copy of
                it. Three spellings of one layer, all accepted: on disk, as hub checkpoints, BrainLM and
                transformers' own save_pretrained write them, `encoder.layer.N.attention.attention.{query,key,
                value}`, `attention.output.dense`, `intermediate.dense`, `output.dense`; BrainLM's Nystromformer
                encoder has `attention.self.{query,key,value}` (transformers' NystromformerLayer); in memory,
                transformers >= 5 renames them on load to `layers.N.attention.{q,k,v,o}_proj`, `mlp.fc1/fc2`.
  - labram      LaBraM (github 935963004/LaBraM, BEiT-v2 blocks): `blocks.N.attn.qkv` (fused [q; k; v], no
                bias: `attn.q_bias`/`attn.v_bias` apart), `attn.proj`, `mlp.fc1/fc2`; a pretraining checkpoint
                has them under `student.`. braindecode's Labram: the same, except its MLP is a Sequential,
                `mlp.0` / `mlp.2`.
  - brain_jepa  Brain-JEPA: timm ViT blocks, the `vit` names, under DDP's `module.`.

Training checkpoints (one torch.save'd dict) keep the weights under a key: `CHECKPOINT_KEYS` says where,
per family, before the generic `state_dict`, `model`, `model_state_dict` (see `checkpoint_keys`).

Adding an architecture: write a `map_<family>(shapes, config)` function below (usually one name
table and a call to `_map_table`), register it in `FAMILIES`, and test it against a tiny random
instance of the library's own class in tests/test_namemaps.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

import torch

from specbasis import families
from specbasis.kinds import CROSS_KINDS, FFN_KINDS, KINDS, SELF_KINDS, STACKS  # noqa: F401 (re-exported)

_ID = re.compile(r"^(?:(?P<stack>enc|dec)\.)?(?P<layer>\d{2,})\.(?P<kind>[a-z_]+)(?:\.(?P<index>\d+))?$")


@dataclass(frozen=True)
class MatrixSpec:
    id: str                       # canonical id, see the module docstring
    sources: tuple[str, ...]      # original parameter names, as in the checkpoint
    transform: str                # how the source becomes (out, in); see the module docstring
    note: str = ""                # e.g. ALBERT: which layers share this matrix
    shape: tuple[int, int] | None = None                 # the (out, in) it must come out as
    source_shapes: tuple[tuple[int, ...], ...] = ()     # the shapes the sources must have


# ---------------------------------------------------------------------------------------- ids

def make_id(layer: int, kind: str, stack: str = "", index: int | None = None) -> str:
    assert kind in KINDS, f"kind {kind!r} is none of {KINDS}"
    assert stack in ("", *STACKS), f"stack {stack!r} is none of {STACKS} (or '' for one stack)"
    assert layer >= 0 and (index is None or index >= 0)
    parts = ([stack] if stack else []) + [f"{layer:02d}", kind] + ([str(index)] if index is not None else [])
    return ".".join(parts)


def parse_id(id: str) -> dict:
    """'dec.03.xattn_q' -> {'stack': 'dec', 'layer': 3, 'kind': 'xattn_q', 'index': None}."""
    m = _ID.match(id)
    if m is None or m["kind"] not in KINDS:
        raise ValueError(f"malformed matrix id {id!r}: expected [enc.|dec.]LL.KIND[.INDEX] with LL a two-digit "
                         f"layer and KIND one of {', '.join(KINDS)} (e.g. '03.attn_q', 'dec.01.xattn_v')")
    parts = {"stack": m["stack"] or "", "layer": int(m["layer"]), "kind": m["kind"],
             "index": int(m["index"]) if m["index"] is not None else None}
    if make_id(**parts) != id:  # '003.ffn_in', '03.ffn_in.01': not how we write ids
        raise ValueError(f"malformed matrix id {id!r}: not zero-padded to two digits exactly "
                         f"(the canonical spelling is {make_id(**parts)!r})")
    return parts


def sort_key(id: str) -> tuple:
    """Order ids by stack (none, enc, dec), layer, index, then kind as in KINDS."""
    p = parse_id(id)
    return (("", *STACKS).index(p["stack"]), p["layer"], -1 if p["index"] is None else p["index"],
            KINDS.index(p["kind"]))


# ----------------------------------------------------------------------------------- transforms

def _split_rows(t: torch.Tensor, which: str, name: str, step: str) -> int:
    if which not in "qkv" or len(which) != 1:
        raise ValueError(f"transform step {step!r}: part {which!r} is none of q, k, v")
    if t.ndim != 2 or t.shape[0] % 3:
        raise ValueError(f"tensor {name}: step {step!r} needs a 2-D fused (3*out, in) matrix, "
                         f"got shape {tuple(t.shape)}")
    return "qkv".index(which)


def _step(t: torch.Tensor, step: str, name: str) -> torch.Tensor:
    op, _, arg = step.partition(":")
    if op in ("none", "transpose", "split_qkv", "split_qkv_heads") and t.ndim != 2:
        raise ValueError(f"tensor {name}: step {step!r} needs a 2-D matrix, got shape {tuple(t.shape)}")
    if op == "none":
        return t                                      # (out, in)
    if op == "transpose":
        return t.T                                    # (in, out) -> (out, in)
    if op == "squeeze_1x1":
        if t.ndim != 4 or tuple(t.shape[2:]) != (1, 1):
            raise ValueError(f"tensor {name}: step 'squeeze_1x1' needs a 1x1 conv kernel (out, in, 1, 1), "
                             f"got shape {tuple(t.shape)}")
        return t[:, :, 0, 0]                          # (out, in, 1, 1) -> (out, in)
    if op == "split_qkv":
        i = _split_rows(t, arg, name, step)
        out = t.shape[0] // 3
        return t[i * out:(i + 1) * out]               # rows [q; k; v] -> (out, in)
    if op == "split_qkv_heads":
        which, _, heads = arg.partition(":")
        i = _split_rows(t, which, name, step)
        H = int(heads)
        if t.shape[0] % (3 * H):
            raise ValueError(f"tensor {name}: step {step!r} needs 3*{H} heads to divide the {t.shape[0]} rows "
                             f"of shape {tuple(t.shape)}")
        d_head = t.shape[0] // (3 * H)
        per_head = t.reshape(H, 3, d_head, t.shape[1])  # rows ordered (head, q/k/v, d_head)
        return per_head[:, i].reshape(H * d_head, t.shape[1])  # (H*d_head, in)
    if op == "hnd":
        if t.ndim != 3 or arg not in ("in", "out"):
            raise ValueError(f"tensor {name}: step {step!r} needs a 3-D (d_model, n_head, d_head) tensor and "
                             f"side in/out, got shape {tuple(t.shape)}")
        flat = t.reshape(t.shape[0], -1)              # (h, n*d)
        return flat.T if arg == "in" else flat        # in: (n*d, h); out: (h, n*d)
    raise ValueError(f"tensor {name}: unknown transform step {step!r}; known: none, transpose, squeeze_1x1, "
                     f"split_qkv:q|k|v, split_qkv_heads:q|k|v:H, hnd:in|out")


def apply_transform(transform: str, t: torch.Tensor, name: str = "?") -> torch.Tensor:
    """The (out, in) matrix that `transform` makes of tensor `t` (named `name` in errors)."""
    for step in transform.split("+"):
        t = _step(t, step, name)
    assert t.ndim == 2, f"transform {transform!r} of {name} gave shape {tuple(t.shape)}, not (out, in)"
    return t


def transformed_shape(transform: str, shape: Sequence[int], name: str = "?") -> tuple[int, int]:
    """Shape of apply_transform(transform, tensor of `shape`), without any data (a meta tensor)."""
    return tuple(apply_transform(transform, torch.empty(tuple(shape), device="meta"), name).shape)


def load_matrix(spec: MatrixSpec, get: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Read the source of `spec` with `get(name)` and return its (out, in) matrix (maybe a view)."""
    assert len(spec.sources) == 1, f"matrix {spec.id}: every transform reads one tensor, got {spec.sources}"
    name = spec.sources[0]
    try:
        t = get(name)
    except KeyError:
        raise KeyError(f"matrix {spec.id}: tensor {name!r} is missing from the checkpoint") from None
    if spec.source_shapes and tuple(t.shape) != tuple(spec.source_shapes[0]):
        raise ValueError(f"matrix {spec.id}: tensor {name} has shape {tuple(t.shape)}, "
                         f"expected {tuple(spec.source_shapes[0])}")
    W = apply_transform(spec.transform, t, name)      # (out, in)
    assert spec.shape is None or tuple(W.shape) == spec.shape, (
        f"matrix {spec.id}: transform {spec.transform!r} of {name} gave {tuple(W.shape)}, expected {spec.shape}")
    return W


# ------------------------------------------------------------------------------ table matching

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_GROUP = {"stack": r"(?P<stack>encoder|decoder)", "layer": r"(?P<layer>\d+)", "stage": r"(?P<stage>\d+)",
          "block": r"(?P<block>\d+)", "index": r"(?P<index>\d+)"}
_STACK_ID = {"encoder": "enc", "decoder": "dec"}

# A name table: pattern (after the prefix) -> the matrices that tensor holds, as (kind, transform);
# a transform may be a function of the tensor's shape (ConvNeXt: Linear or 1x1 conv).
Table = Mapping[str, Sequence[tuple[str, "str | Callable[[tuple[int, ...]], str]"]]]


@dataclass(frozen=True)
class _Hit:
    name: str                     # full parameter name
    prefix: str                   # what came before the table's pattern ("bert.", "model.", "")
    pattern: str                  # the table pattern it matched
    groups: tuple[tuple[str, str], ...]  # placeholder values, as in the name
    kind: str
    transform: str
    shape: tuple[int, ...]
    stack: str = ""
    layer: int = -1
    index: int | None = None
    note: str = ""

    def group(self, key: str) -> int:
        return int(dict(self.groups)[key])


def _compile(pattern: str) -> re.Pattern:
    body, pos = [], 0
    for m in _PLACEHOLDER.finditer(pattern):
        body += [re.escape(pattern[pos:m.start()]), _GROUP[m[1]]]
        pos = m.end()
    body.append(re.escape(pattern[pos:]))
    return re.compile(r"^(?P<prefix>(?:[^.]+\.)*?)" + "".join(body) + "$")


def _find(family: str, shapes: Mapping[str, Sequence[int]], table: Table) -> list[_Hit]:
    """Every (tensor, kind) the table finds among the names; one shared prefix; numbered by `layer`."""
    compiled = [(pattern, _compile(pattern), entries) for pattern, entries in table.items()]
    hits = []
    for name, shape in shapes.items():
        matches = [(pattern, m, entries) for pattern, rx, entries in compiled if (m := rx.match(name))]
        assert len(matches) <= 1, f"{family}: {name} matches several patterns {[p for p, _, _ in matches]}"
        for pattern, m, entries in matches:
            groups = tuple((k, v) for k, v in m.groupdict().items() if k != "prefix")
            for kind, transform in entries:
                tf = transform(tuple(shape)) if callable(transform) else transform
                g = dict(groups)
                hits.append(_Hit(name, m["prefix"], pattern, groups, kind, tf, tuple(shape),
                                 stack=_STACK_ID.get(g.get("stack", ""), ""), layer=int(g.get("layer", -1)),
                                 index=int(g["index"]) if "index" in g else None))
    if not hits:
        sample = ", ".join(sorted(shapes)[:6])
        raise ValueError(f"{family}: none of the {len(shapes)} tensors is a {family} weight matrix "
                         f"(first names: {sample}); is the family right? Known patterns: {', '.join(table)}")
    prefixes = sorted({h.prefix for h in hits})
    if len(prefixes) > 1:
        examples = "; ".join(next(h.name for h in hits if h.prefix == p) for p in prefixes)
        raise ValueError(f"{family}: the weight matrices sit under {len(prefixes)} different prefixes "
                         f"{prefixes} (e.g. {examples}); a checkpoint must hold one model - keep one of them")
    return hits


def _number_blocks(hits: list[_Hit]) -> list[_Hit]:
    """Hierarchical models: layer = running index of (stage, block) across all stages."""
    blocks = sorted({(h.group("stage"), h.group("block")) for h in hits})
    running = {b: i for i, b in enumerate(blocks)}
    return [replace(h, layer=running[(h.group("stage"), h.group("block"))]) for h in hits]


def _expected_name(table: Table, kind: str, hit: _Hit) -> str:
    """The name a missing `kind` would have next to `hit` (for error messages)."""
    groups = dict(hit.groups)
    candidates = [p for p, entries in table.items() if any(k == kind for k, _ in entries)]
    exact = [p for p in candidates if set(_PLACEHOLDER.findall(p)) == set(groups)]
    subset = [p for p in candidates if set(_PLACEHOLDER.findall(p)) <= set(groups)]
    for p in exact + subset:
        return hit.prefix + p.format(**groups)
    return f"a tensor for {kind}"


# Invariants inside one layer: (kind a, kind b, which dim of a's (out, in), which of b's, why)
_PAIRS = (("ffn_in", "ffn_out", 0, 1, "ffn_in's output width must be ffn_out's input width"),
          ("attn_q", "attn_k", 0, 0, "q and k must have the same output width (their dot product)"),
          ("attn_v", "attn_o", 0, 1, "v's output width must be o's input width"),
          ("xattn_q", "xattn_k", 0, 0, "q and k must have the same output width (their dot product)"),
          ("xattn_v", "xattn_o", 0, 1, "v's output width must be o's input width"))


def _check_shapes(family: str, slot: str, by_kind: Mapping[str, _Hit], out_in: Mapping[str, tuple[int, int]]) -> None:
    for a, b, ia, ib, why in _PAIRS:
        if a in by_kind and b in by_kind and out_in[a][ia] != out_in[b][ib]:
            raise ValueError(f"{family}: layer {slot}: {why}, but {a} {by_kind[a].name} has shape "
                             f"{by_kind[a].shape} -> (out, in) {out_in[a]} and {b} {by_kind[b].name} has shape "
                             f"{by_kind[b].shape} -> (out, in) {out_in[b]}; one of them is misshapen")


def _assemble(family: str, hits: list[_Hit], table: Table,
              required: Callable[[_Hit], Iterable[str]]) -> list[MatrixSpec]:
    """Specs from numbered hits; checks every layer is complete, consistent and numbered 0..n-1.

    `required(hit)` gives the kinds the slot (stack, layer, index) of `hit` must hold."""
    slots: dict[tuple, dict[str, _Hit]] = {}
    for h in hits:
        slot = slots.setdefault((h.stack, h.layer, h.index), {})
        assert h.kind not in slot, f"{family}: {h.name} and {slot.get(h.kind, h).name} both give {h.kind}"
        slot[h.kind] = h
    specs = []
    for (stack, layer, index), by_kind in slots.items():
        label = ".".join(filter(None, [stack, f"{layer:02d}"])) + ("" if index is None else f" (index {index})")
        any_hit = next(iter(by_kind.values()))
        need = set(required(any_hit))
        missing = [k for k in KINDS if k in need and k not in by_kind]
        if missing:
            names = ", ".join(repr(_expected_name(table, k, any_hit)) for k in missing)
            raise ValueError(f"{family}: layer {label} has {', '.join(sorted(by_kind))} but no {', '.join(missing)}: "
                             f"expected {names}, missing from the checkpoint")
        out_in = {k: transformed_shape(h.transform, h.shape, h.name) for k, h in by_kind.items()}
        _check_shapes(family, label, by_kind, out_in)
        for kind, h in by_kind.items():
            specs.append(MatrixSpec(make_id(layer, kind, stack, index), (h.name,), h.transform, h.note,
                                    out_in[kind], (h.shape,)))
    for stack in sorted({s for s, _, _ in slots}):
        layers = sorted({l for s, l, _ in slots if s == stack})
        missing = sorted(set(range(layers[-1] + 1)) - set(layers))
        if missing:
            where = f"stack {stack}: " if stack else ""
            raise ValueError(f"{family}: {where}layers {missing} have no weight matrices while layers up to "
                             f"{layers[-1]} do; the checkpoint is missing whole layers")
    return sorted(specs, key=lambda s: sort_key(s.id))


def _map_table(family: str, shapes, table: Table, required=lambda hit: SELF_KINDS) -> list[MatrixSpec]:
    return _assemble(family, _find(family, shapes, table), table, required)


def _linear_or_1x1(shape: tuple[int, ...]) -> str:
    return "squeeze_1x1" if len(shape) == 4 else "none"


def _qkv(fmt: str) -> list[tuple[str, str]]:
    return [(f"attn_{p}", fmt.format(p=p)) for p in "qkv"]


# ----------------------------------------------------------------------------- the families

_BERT = {  # BertModel and its descendants: RoBERTa, ELECTRA, BigBird, MiniLM
    "encoder.layer.{layer}.attention.self.query.weight": [("attn_q", "none")],
    "encoder.layer.{layer}.attention.self.key.weight": [("attn_k", "none")],
    "encoder.layer.{layer}.attention.self.value.weight": [("attn_v", "none")],
    "encoder.layer.{layer}.attention.output.dense.weight": [("attn_o", "none")],
    "encoder.layer.{layer}.intermediate.dense.weight": [("ffn_in", "none")],
    "encoder.layer.{layer}.output.dense.weight": [("ffn_out", "none")],
}


def map_bert(shapes, config=None):
    return _map_table("bert", shapes, _BERT)


def map_roberta(shapes, config=None):
    return _map_table("roberta", shapes, _BERT)


def map_electra(shapes, config=None):
    return _map_table("electra", shapes, _BERT)


def map_bigbird(shapes, config=None):
    return _map_table("bigbird", shapes, _BERT)


_FFN_AND_O = {k: v for k, v in _BERT.items() if "attention.self" not in k}


def map_deberta(shapes, config=None):
    """DeBERTa v1: q, k, v fused in `in_proj`, interleaved per head (needs num_attention_heads)."""
    heads = (config or {}).get("num_attention_heads")
    if not heads:
        raise ValueError("deberta: DeBERTa v1 `in_proj` interleaves q, k, v per attention head, so splitting it "
                         "needs num_attention_heads: pass the model's config (config.json) to map_names")
    table = {"encoder.layer.{layer}.attention.self.in_proj.weight": _qkv(f"split_qkv_heads:{{p}}:{int(heads)}"),
             **_FFN_AND_O}
    return _map_table("deberta", shapes, table)


def map_deberta_v2(shapes, config=None):
    table = {f"encoder.layer.{{layer}}.attention.self.{n}_proj.weight": [(f"attn_{n[0]}", "none")]
             for n in ("query", "key", "value")}
    return _map_table("deberta_v2", shapes, {**table, **_FFN_AND_O})


_DISTILBERT = {
    "transformer.layer.{layer}.attention.q_lin.weight": [("attn_q", "none")],
    "transformer.layer.{layer}.attention.k_lin.weight": [("attn_k", "none")],
    "transformer.layer.{layer}.attention.v_lin.weight": [("attn_v", "none")],
    "transformer.layer.{layer}.attention.out_lin.weight": [("attn_o", "none")],
    "transformer.layer.{layer}.ffn.lin1.weight": [("ffn_in", "none")],
    "transformer.layer.{layer}.ffn.lin2.weight": [("ffn_out", "none")],
}


def map_distilbert(shapes, config=None):
    return _map_table("distilbert", shapes, _DISTILBERT)


_MOBILEBERT = {  # extra FFNs first, so that a missing one is named with its ffn.{index}
    "encoder.layer.{layer}.ffn.{index}.intermediate.dense.weight": [("ffn_in", "none")],
    "encoder.layer.{layer}.ffn.{index}.output.dense.weight": [("ffn_out", "none")],
    **_BERT,
}


def map_mobilebert(shapes, config=None):
    """The F-1 extra FFNs `ffn.{i}` get index i, the main intermediate/output pair index F-1."""
    hits = _find("mobilebert", shapes, _MOBILEBERT)
    extra = sorted({h.index for h in hits if h.index is not None})
    if not extra:  # num_feedforward_networks = 1: a plain BERT-like layer, no index
        return _assemble("mobilebert", hits, _MOBILEBERT, lambda hit: SELF_KINDS)
    main = extra[-1] + 1  # F - 1: the main FFN runs after the extra ones
    hits = [replace(h, index=main) if h.kind in FFN_KINDS and h.index is None else h for h in hits]
    present = {(h.layer, h.index) for h in hits if h.kind in FFN_KINDS}
    for layer in sorted({h.layer for h in hits}):
        for i in [i for i in range(main + 1) if (layer, i) not in present]:
            pattern = next(p for p in _MOBILEBERT if "intermediate" in p and ("{index}" in p) == (i < main))
            raise ValueError(f"mobilebert: layer {layer:02d} lacks FFN {i} of {main + 1}: expected tensor "
                             f"{hits[0].prefix + pattern.format(layer=layer, index=i)!r}, which is missing")
    # a layer's attention matrices have no index; each of its FFNs has its own
    return _assemble("mobilebert", hits, _MOBILEBERT,
                     lambda hit: FFN_KINDS if hit.index is not None else ("attn_q", "attn_k", "attn_v", "attn_o"))


_ALBERT = {
    "encoder.albert_layer_groups.{layer}.albert_layers.{index}.attention.query.weight": [("attn_q", "none")],
    "encoder.albert_layer_groups.{layer}.albert_layers.{index}.attention.key.weight": [("attn_k", "none")],
    "encoder.albert_layer_groups.{layer}.albert_layers.{index}.attention.value.weight": [("attn_v", "none")],
    "encoder.albert_layer_groups.{layer}.albert_layers.{index}.attention.dense.weight": [("attn_o", "none")],
    "encoder.albert_layer_groups.{layer}.albert_layers.{index}.ffn.weight": [("ffn_in", "none")],
    "encoder.albert_layer_groups.{layer}.albert_layers.{index}.ffn_output.weight": [("ffn_out", "none")],
}


def _albert_note(group: int, config: Mapping) -> str:
    n, groups = config.get("num_hidden_layers"), config.get("num_hidden_groups", 1)
    if not n:
        return (f"ALBERT layer group {group}: shared by every layer that uses it (all layers when "
                f"num_hidden_groups is 1; the layer count is in config.json, not in the checkpoint)")
    layers = [i for i in range(n) if int(i / (n / groups)) == group]  # as AlbertTransformer.forward
    if len(layers) == n:
        return f"shared by all {n} layers (ALBERT layer group {group})"
    return f"shared by layers {layers[0]}-{layers[-1]} of {n} (ALBERT layer group {group})"


def map_albert(shapes, config=None):
    """Layer = the layer group (00 for every released ALBERT); index = inner layer if a group has several."""
    hits = _find("albert", shapes, _ALBERT)
    inner = any(h.index for h in hits)
    hits = [replace(h, index=h.index if inner else None, note=_albert_note(h.layer, config or {})) for h in hits]
    return _assemble("albert", hits, _ALBERT, lambda hit: SELF_KINDS)


_BART = {
    **{f"{{stack}}.layers.{{layer}}.self_attn.{p}_proj.weight": [(f"attn_{p}", "none")] for p in "qkv"},
    "{stack}.layers.{layer}.self_attn.out_proj.weight": [("attn_o", "none")],
    **{f"{{stack}}.layers.{{layer}}.encoder_attn.{p}_proj.weight": [(f"xattn_{p}", "none")] for p in "qkv"},
    "{stack}.layers.{layer}.encoder_attn.out_proj.weight": [("xattn_o", "none")],
    "{stack}.layers.{layer}.fc1.weight": [("ffn_in", "none")],
    "{stack}.layers.{layer}.fc2.weight": [("ffn_out", "none")],
}


def map_bart(shapes, config=None):
    """BART / DistilBART: encoder layers 'enc.LL.*', decoder layers 'dec.LL.*' with cross-attention."""
    specs = _map_table("bart", shapes, _BART, lambda hit: SELF_KINDS + (CROSS_KINDS if hit.stack == "dec" else ()))
    assert not any(s.id.startswith("enc.") and ".xattn_" in s.id for s in specs), "encoder with cross-attention"
    return specs


_GPT2 = {  # Conv1D stores (in, out): every matrix is transposed
    "h.{layer}.attn.c_attn.weight": _qkv("transpose+split_qkv:{p}"),
    "h.{layer}.attn.c_proj.weight": [("attn_o", "transpose")],
    "h.{layer}.mlp.c_fc.weight": [("ffn_in", "transpose")],
    "h.{layer}.mlp.c_proj.weight": [("ffn_out", "transpose")],
}


def map_gpt2(shapes, config=None):
    return _map_table("gpt2", shapes, _GPT2)


_XLNET = {
    **{f"layer.{{layer}}.rel_attn.{p}": [(f"attn_{p}", "hnd:in")] for p in "qkv"},
    "layer.{layer}.rel_attn.o": [("attn_o", "hnd:out")],
    "layer.{layer}.ff.layer_1.weight": [("ffn_in", "none")],
    "layer.{layer}.ff.layer_2.weight": [("ffn_out", "none")],
}


def map_xlnet(shapes, config=None):
    return _map_table("xlnet", shapes, _XLNET)


_VIT = {  # timm VisionTransformer
    "blocks.{layer}.attn.qkv.weight": _qkv("split_qkv:{p}"),
    "blocks.{layer}.attn.proj.weight": [("attn_o", "none")],
    "blocks.{layer}.mlp.fc1.weight": [("ffn_in", "none")],
    "blocks.{layer}.mlp.fc2.weight": [("ffn_out", "none")],
}


def map_vit(shapes, config=None):
    return _map_table("vit", shapes, _VIT)


_SWIN = {"layers.{stage}.blocks.{block}." + k.removeprefix("blocks.{layer}."): v for k, v in _VIT.items()}


def map_swin(shapes, config=None):
    """timm SwinTransformer: layer = running block index across the stages."""
    return _assemble("swin", _number_blocks(_find("swin", shapes, _SWIN)), _SWIN, lambda hit: SELF_KINDS)


_CONVNEXT = {  # timm ConvNeXt (also the CLIP ConvNeXts): Linear MLP, or 1x1 convs with conv_mlp=True
    "stages.{stage}.blocks.{block}.mlp.fc1.weight": [("ffn_in", _linear_or_1x1)],
    "stages.{stage}.blocks.{block}.mlp.fc2.weight": [("ffn_out", _linear_or_1x1)],
}


def map_convnext(shapes, config=None):
    """ConvNeXt blocks have no attention: ffn_in/ffn_out per block, numbered across stages."""
    return _assemble("convnext", _number_blocks(_find("convnext", shapes, _CONVNEXT)), _CONVNEXT,
                     lambda hit: FFN_KINDS)


_EFFICIENTNET = {  # timm EfficientNet blocks.{stage}.{block}
    "blocks.{stage}.{block}.conv_pw.weight": [("ffn_in", "squeeze_1x1")],
    "blocks.{stage}.{block}.conv_pwl.weight": [("ffn_out", "squeeze_1x1")],
}


def map_efficientnet_lite(shapes, config=None):
    """Inverted residual: 1x1 expansion conv_pw -> ffn_in, 1x1 projection conv_pwl -> ffn_out.
    Depthwise-separable block (no expansion): its 1x1 pointwise projection conv_pw -> ffn_out."""
    hits = _number_blocks(_find("efficientnet_lite", shapes, _EFFICIENTNET))
    expanded = {h.layer for h in hits if h.pattern.endswith("conv_pwl.weight")}
    hits = [h if h.layer in expanded else
            replace(h, kind="ffn_out", note="pointwise projection of a depthwise-separable block (no expansion)")
            for h in hits]
    return _assemble("efficientnet_lite", hits, _EFFICIENTNET, lambda hit: ("ffn_out",))


# --------------------------------------------------------------------- brain-signal models

_VIT_MAE = {  # transformers ViTMAE / ViT, three spellings of one layer (module docstring)
    **_BERT,  # BrainLM's Nystromformer encoder: NystromformerLayer has BERT's names (`attention.self`)
    **{f"encoder.layer.{{layer}}.attention.attention.{n}.weight": [(f"attn_{n[0]}", "none")]
       for n in ("query", "key", "value")},  # on disk: hub, BrainLM, save_pretrained (transformers < 5 names)
    **{f"layers.{{layer}}.attention.{p}_proj.weight": [(f"attn_{p}", "none")] for p in "qkvo"},  # in memory, >= 5
    "layers.{layer}.mlp.fc1.weight": [("ffn_in", "none")],
    "layers.{layer}.mlp.fc2.weight": [("ffn_out", "none")],
}


def map_vit_mae(shapes, config=None):
    """The encoder only: every tensor with a `decoder` component (the MAE decoder) is left out first."""
    encoder = {k: v for k, v in shapes.items() if "decoder" not in k.split(".")}
    return _map_table("vit_mae", encoder, _VIT_MAE)


# How the original LaBraM layout was checked: github 935963004/LaBraM read through the code-search index
# (stored versions of the files below, 2024-25), nothing run:
#   modeling_finetune.py  Attention: `self.qkv = nn.Linear(dim, all_head_dim * 3, bias=False)`, with
#       `q_bias`/`v_bias` Parameters when qkv_bias, `self.proj`; forward F.linear(x, qkv.weight,
#       cat(q_bias, 0, v_bias)).reshape(B, N, 3, heads, -1): contiguous thirds [q; k; v]. Block: norm1,
#       attn, norm2, `mlp` = Mlp(fc1, fc2), gamma_1/gamma_2; NeuralTransformer: `self.blocks` (ModuleList),
#       `head`. Also q_norm/k_norm LayerNorms (labram_*_patch200_200 pass qk_norm).
#   modeling_pretrain.py  NeuralTransformerForMEM: `self.student` (NeuralTransformerForMaskedEEGModeling:
#       the same Blocks as `blocks`, plus `norm`, `lm_head`), `self.lm_head`, `self.projection_head`
#       (Linear, ReLU); labram_*_1600_8k_vocab build it with qkv_bias=False. No teacher, no EMA copy: the
#       only blocks of a pretraining checkpoint are `student.blocks.N`; `lm_head`, `student.lm_head` and
#       `projection_head` are none of the kinds, so they do not trip the one-prefix check.
#   utils.py save_model (run_labram_pretraining.py and run_class_finetuning.py call it): torch.save of
#       {'model': model_without_ddp.state_dict(), 'optimizer', 'epoch', 'args' (an argparse.Namespace),
#       'scaler', and 'model_ema' when --model_ema}; the tokenizer (VQNSP) is a separate model, not saved.
#   run_class_finetuning.py (README: --finetune ./checkpoints/labram-base.pth, the released weights) takes
#       the file's 'model' (model_key 'model|module') and keeps the keys that start with 'student.', stripped:
#       the released file nests `student.blocks.N` under 'model'; a fine-tuned one has `blocks.N` there.
_LABRAM = {
    **_VIT,  # the original: timm's (BEiT's) names; timm's Beit is the test's stand-in
    "blocks.{layer}.mlp.0.weight": [("ffn_in", "none")],   # braindecode's Labram: MLP = Sequential(Linear,
    "blocks.{layer}.mlp.2.weight": [("ffn_out", "none")],  # GELU, Linear, Dropout)
}


def map_labram(shapes, config=None):
    return _map_table("labram", shapes, _LABRAM)


def map_brain_jepa(shapes, config=None):
    """Brain-JEPA's VisionTransformer (src/models/vision_transformer.py, after I-JEPA) names its blocks as
    timm does; the prefix (`module.` from DDP, `encoder.` in a fine-tuned classifier) is the usual one."""
    return _map_table("brain_jepa", shapes, _VIT)


# Where a torch.save'd training checkpoint keeps the weights to analyse: tried in this order, then the
# generic keys. Brain-JEPA (src/train.py save_checkpoint) saves encoder, predictor and target_encoder, plus
# opt, scaler, epoch, loss, ...: target_encoder first, the EMA copy of the encoder, which is what Brain-JEPA's
# own fine-tuning starts from (downstream_tasks/main_finetune.py loads checkpoint['target_encoder'], as
# I-JEPA evaluates its target encoder); `encoder` (the online one) when a file has only that. LaBraM:
# save_model's 'model' (not 'model_ema').
CHECKPOINT_KEYS: dict[str, tuple[str, ...]] = {f.name: f.checkpoint_keys for f in families.FAMILIES.values()
                                             if f.checkpoint_keys}  # specbasis.families
GENERIC_CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict")


def checkpoint_keys(family: str | None) -> tuple[str, ...]:
    """The keys under which a checkpoint of `family` may nest its state dict, in order of preference."""
    keys = CHECKPOINT_KEYS.get(family or "", ()) + GENERIC_CHECKPOINT_KEYS
    return tuple(dict.fromkeys(keys))


FAMILIES: dict[str, Callable[..., list[MatrixSpec]]] = {
    "bert": map_bert,
    "roberta": map_roberta,
    "xlnet": map_xlnet,
    "deberta": map_deberta,
    "deberta_v2": map_deberta_v2,
    "distilbert": map_distilbert,
    "bigbird": map_bigbird,
    "mobilebert": map_mobilebert,
    "electra": map_electra,
    "albert": map_albert,
    "bart": map_bart,
    "gpt2": map_gpt2,
    "convnext": map_convnext,
    "vit": map_vit,
    "swin": map_swin,
    "efficientnet_lite": map_efficientnet_lite,
    "vit_mae": map_vit_mae,
    "labram": map_labram,
    "brain_jepa": map_brain_jepa,
}
assert set(FAMILIES) == set(families.FAMILIES), \
    f"name maps and specbasis.families differ: {sorted(set(FAMILIES) ^ set(families.FAMILIES))}"


class UnknownFamilyError(KeyError, ValueError):
    def __str__(self) -> str:  # KeyError would print the message as a quoted repr
        return str(self.args[0])


def map_names(family: str, shapes: Mapping[str, Sequence[int]], config: Mapping | None = None) -> list[MatrixSpec]:
    """The weight matrices of a checkpoint, as MatrixSpecs sorted by id.

    shapes: every parameter name of the checkpoint with its shape. config: the model's config.json
    as a dict, where a family needs more than the shapes (DeBERTa v1: num_attention_heads; ALBERT:
    the layer count for its sharing note)."""
    if family not in FAMILIES:
        raise UnknownFamilyError(
            f"unknown architecture family {family!r}; known families: {', '.join(sorted(FAMILIES))}. To add one, "
            f"write a map function in specbasis/io/namemaps.py, register it in FAMILIES, and test it against a tiny "
            f"instance of the library's class in tests/test_namemaps.py")
    specs = FAMILIES[family]({k: tuple(v) for k, v in shapes.items()}, dict(config or {}))
    ids = [s.id for s in specs]
    assert len(ids) == len(set(ids)), f"{family}: duplicate ids {sorted(i for i in ids if ids.count(i) > 1)}"
    for s in specs:
        parse_id(s.id)
    return specs
