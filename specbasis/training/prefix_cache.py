"""Cached outputs of a text model's frozen first blocks, so that runs adapting only later blocks skip them.

When a finetune trains nothing before block `start` (the spectral adapter on the last blocks), those blocks see
the same inputs in every epoch and every run on the task: their output, the hidden states entering block
`start`, is computed once per task (`build`, in eval mode: dropout is off in the cached blocks, which is the one
way a cached run differs from an uncached one) and every run starts from it (`PrefixCache.attached`). Texts are
the keys (a sentence, or a (first, second) pair), so any split or subset of the task finds its examples.

    cache = build(model, preprocess, texts, start=4)       # {text: (tokens, hidden)} before block 4
    cache.save(path); cache = PrefixCache.load(path)      # one safetensors file (texts in its metadata)
    with cache.attached(model, preprocess) as pre:        # the model runs blocks start.. only, from the cache
        logits = logits_of(model, pre(texts))

While attached, the model's embeddings module returns the cached states (zero-padded to the batch's length:
padded positions are masked as keys and never reach the [CLS] position the head reads) and its encoder holds
blocks start.. only; both are put back on exit. Models: transformers encoders whose backbone has `embeddings`
and `encoder.layer` (BERT, RoBERTa, ELECTRA: MiniLM); others are refused, naming the model's class.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from specbasis.io.store import atomic_path


def _key(text) -> str | tuple:
    return tuple(text) if isinstance(text, (list, tuple)) else text


def backbone(model: nn.Module) -> nn.Module:
    """The encoder backbone (BertModel of a BertForSequenceClassification; peft and adapter wrappers looked through)."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    core = getattr(core, "base_model", core)
    if not (hasattr(core, "embeddings") and hasattr(getattr(core, "encoder", None), "layer")):
        raise ValueError(f"prefix cache: {type(model).__name__} has no embeddings + encoder.layer backbone "
                         "(BERT-like transformers encoders only)")
    return core


class _Cached(nn.Module):
    """Stands in for the embeddings: returns the hidden states set for the current batch."""

    def __init__(self):
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        if self.value is None:
            raise RuntimeError("prefix cache: no cached states set for this batch")
        value, self.value = self.value, None  # one forward per batch
        return value


class PrefixCache:
    """Hidden states entering block `start`, per text (unpadded: tokens x hidden)."""

    def __init__(self, start: int, states: dict, fingerprint: str = ""):
        self.start, self.states, self.fingerprint = start, states, fingerprint

    def __len__(self) -> int:
        return len(self.states)

    def batch(self, texts: Sequence, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H): each text's cached states, zero-padded to the batch's T; refuses a text it lacks or whose
        token count differs from the batch's mask (another tokenizer or max_length)."""
        lengths = attention_mask.sum(1).tolist()
        first = next(iter(self.states.values()))
        out = torch.zeros(len(texts), attention_mask.shape[1], first.shape[1], dtype=first.dtype)
        for i, (text, n) in enumerate(zip(texts, lengths)):
            state = self.states.get(_key(text))
            if state is None:
                raise KeyError(f"prefix cache: no cached states for {str(text)[:60]!r} (built on another task?)")
            if state.shape[0] != n:
                raise ValueError(f"prefix cache: {str(text)[:60]!r} has {state.shape[0]} cached tokens, the batch "
                                 f"{n} (another tokenizer or max_length?)")
            out[i, :n] = state
        return out

    @contextmanager
    def attached(self, model: nn.Module, preprocess: Callable):
        """Within: the model runs blocks start.. from the cache; yields the preprocess to use with it."""
        core = backbone(model)
        embeddings, layers = core.embeddings, core.encoder.layer
        if not 0 < self.start < len(layers):
            raise ValueError(f"prefix cache: start {self.start} outside 1..{len(layers) - 1} of the model's blocks")
        cached = _Cached()

        def pre(texts):
            inputs = preprocess(texts)
            cached.value = self.batch(texts, inputs["attention_mask"]).to(embeddings.word_embeddings.weight.device)
            return inputs

        core.embeddings, core.encoder.layer = cached, nn.ModuleList(list(layers)[self.start:])
        try:
            yield pre
        finally:
            core.embeddings, core.encoder.layer = embeddings, layers

    def save(self, path: Path, **metadata) -> None:
        keys = list(self.states)
        hidden = torch.cat([self.states[k] for k in keys]) if keys else torch.zeros(0)
        offsets = torch.tensor(np.cumsum([0] + [self.states[k].shape[0] for k in keys]), dtype=torch.int64)
        from safetensors.torch import save_file

        meta = {"start": str(self.start), "texts": json.dumps([list(k) if isinstance(k, tuple) else k for k in keys]),
                "fingerprint": self.fingerprint, **{k: str(v) for k, v in metadata.items()}}
        with atomic_path(path) as tmp:
            save_file({"hidden": hidden.contiguous(), "offsets": offsets}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path) -> "PrefixCache":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata()
            hidden, offsets = fh.get_tensor("hidden"), fh.get_tensor("offsets").tolist()
        texts = [_key(t) for t in json.loads(meta["texts"])]
        states = {t: hidden[offsets[i]:offsets[i + 1]] for i, t in enumerate(texts)}
        return cls(int(meta["start"]), states, meta.get("fingerprint", ""))


class _Stop(Exception):
    pass


@torch.inference_mode()
def build(model: nn.Module, preprocess: Callable, texts: Sequence, start: int, batch_size: int = 128) -> PrefixCache:
    """The hidden states entering block `start` of every distinct text, computed in eval mode (dropout off)."""
    core = backbone(model)
    if not 0 < start < len(core.encoder.layer):
        raise ValueError(f"prefix cache: start {start} outside 1..{len(core.encoder.layer) - 1} of the model's blocks")
    model.eval()
    unique = list(dict.fromkeys(_key(t) for t in texts))
    order = np.argsort([len(str(t)) for t in unique], kind="stable")  # similar lengths batch together: less padding
    captured = {}

    def grab(module, args, kwargs):
        captured["h"] = (args[0] if args else kwargs["hidden_states"]).float().cpu()
        raise _Stop

    states, digest = {}, hashlib.sha256()
    handle = core.encoder.layer[start].register_forward_pre_hook(grab, with_kwargs=True)
    device = next(model.parameters()).device
    try:
        for s in range(0, len(unique), batch_size):
            batch = [unique[i] for i in order[s:s + batch_size]]
            inputs = preprocess(batch)
            try:
                model(**{k: v.to(device) for k, v in inputs.items()})
            except _Stop:
                pass
            for text, h, n in zip(batch, captured["h"], inputs["attention_mask"].sum(1).tolist()):
                states[text] = h[:n].clone()
    finally:
        handle.remove()
    for t in unique:
        digest.update(json.dumps(list(t) if isinstance(t, tuple) else t).encode())
    return PrefixCache(start, states, digest.hexdigest())
