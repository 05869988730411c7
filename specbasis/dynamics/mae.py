"""The masked autoencoder of the pretraining-dynamics study: transformers' ViTMAE, built from a spec.

Model: `ViTMAEForPreTraining` (encoder under `vit.`, decoder under `decoder.`), with
  - fixed 2-D sin-cos position embeddings (ViTMAE's own: a frozen Parameter, filled at init);
  - a per-patch MSE loss on the masked patches only: transformers computes
        loss = Σ_i mask_i · mean_p (pred_ip − target_ip)² / Σ_i mask_i,   mask_i = 1: patch i was removed,
    on raw (normalised) pixels: norm_pix_loss is off, because the paper says "per-patch MSE" and nothing
    about per-patch normalisation (MAE's own default is on; set it in the spec to compare);
  - no dropout, LayerNorm eps 1e-6 (MAE's), GELU, q/k/v biases, MLP width 4× the embedding (ViT-Tiny's).

Masking: ViTMAE keeps the int(L·(1 − mask_ratio)) patches with the smallest `noise` values. We always
pass `noise` (`mask_noise`, from a seeded torch.Generator), never let the model draw it from torch's
global generator, so masks are a function of the seed and the batch sequence.

Images: uint8 (N, H, W) grey or (N, H, W, C) colour, scaled to [0, 1], zero-padded (centred) to
image_size when smaller, then normalised with a fixed (mean, std) (Fashion-MNIST's by default: the
same constants at every data scale, so scales see the same pixels). The default suite uses
Fashion-MNIST at its native 28×28, 1 channel, 4×4 patches: 7×7 = 49 patches, 19 of them visible at
mask ratio 0.6 (the paper: CIFAR-10 32×32×3, 64 patches, 25 visible).

Matrices analysed: ids from specbasis.io.namemaps (family vit_mae) of the in-memory state-dict names,
W in torch Linear orientation (out, in): "LL.ffn_in" = `vit.layers.LL.mlp.fc1.weight` (4d, d),
"LL.ffn_out" = `mlp.fc2` (d, 4d), "LL.attn_{q,k,v,o}" = `attention.{q,k,v,o}_proj`. The classifier
(`MAEClassifier`, encoder under `encoder.`) gives the same ids for the same matrices.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

import numpy as np
import torch
from torch import nn

FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # of the 60k training images, pixels in [0, 1]


def from_mapping(cls, d: Mapping, what: str):
    """cls(**d) for a dataclass `cls`, refusing unknown keys with a message listing the allowed ones."""
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    return cls(**dict(d))


@dataclass(frozen=True)
class MAESpec:
    """Sizes of the ViTMAE; validated on construction. `mae_config` turns it into a ViTMAEConfig."""

    image_size: int = 28           # Fashion-MNIST native; 32 for CIFAR-10 (the paper)
    patch_size: int = 4            # the paper's; image_size must be a multiple
    num_channels: int = 1          # 1 grey (Fashion-MNIST), 3 colour (CIFAR-10)
    hidden_size: int = 64          # encoder width (paper: 192, ViT-Tiny); a multiple of 4 (2-D sin-cos)
    num_layers: int = 4            # encoder blocks (paper: 6)
    num_heads: int = 2             # encoder heads (paper: 3); must divide hidden_size
    mlp_ratio: int = 4             # FFN width / embedding width (ViT's 4): ffn_in is (mlp_ratio·d, d)
    decoder_hidden_size: int = 32  # paper: 64; a multiple of 4
    decoder_layers: int = 1        # paper: 2
    decoder_heads: int = 2         # paper: 4; must divide decoder_hidden_size
    mask_ratio: float = 0.6        # the paper's; fraction of patches removed
    norm_pix_loss: bool = False    # per-patch MSE on the pixels themselves (see the module docstring)

    def __post_init__(self):
        problems = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                problems.append(f"{f.name}={v!r}: want an integer >= 1")
        if problems:
            raise ValueError("MAE spec: " + "; ".join(problems))
        if self.num_channels not in (1, 3):
            problems.append(f"num_channels={self.num_channels}: want 1 (grey) or 3 (colour)")
        if self.image_size % self.patch_size:
            problems.append(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        for width, heads, what in ((self.hidden_size, self.num_heads, ""),
                                   (self.decoder_hidden_size, self.decoder_heads, "decoder_")):
            if width % 4:
                problems.append(f"{what}hidden_size={width}: the 2-D sin-cos position embedding needs a multiple of 4")
            if width % heads:
                problems.append(f"{what}hidden_size={width} is not divisible by {what or 'num_'}heads={heads}")
        if not (isinstance(self.mask_ratio, (int, float)) and 0 < self.mask_ratio < 1):
            problems.append(f"mask_ratio={self.mask_ratio!r}: want a number in (0, 1)")
        elif self.num_visible < 1:
            problems.append(f"mask_ratio={self.mask_ratio} leaves no visible patch of {self.num_patches}")
        if not isinstance(self.norm_pix_loss, bool):
            problems.append(f"norm_pix_loss={self.norm_pix_loss!r}: want true or false")
        if problems:
            raise ValueError("MAE spec: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: Mapping) -> "MAESpec":
        """From a config mapping; unknown keys are an error that lists the allowed ones."""
        return from_mapping(cls, d, "MAE spec")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_visible(self) -> int:  # what ViTMAE's random_masking keeps
        return int(self.num_patches * (1 - self.mask_ratio))


PAPER = MAESpec(image_size=32, patch_size=4, num_channels=3, hidden_size=192, num_layers=6, num_heads=3,
                decoder_hidden_size=64, decoder_layers=2, decoder_heads=4)  # the paper's CIFAR-10 model
PAPER_FMNIST = MAESpec(**{**PAPER.to_dict(), "image_size": 28, "num_channels": 1})  # same sizes, our data


def as_spec(spec: MAESpec | Mapping) -> MAESpec:
    return spec if isinstance(spec, MAESpec) else MAESpec.from_dict(spec)


def mae_config(spec: MAESpec | Mapping):
    """The transformers ViTMAEConfig of a spec (or of a mapping of MAESpec's fields)."""
    from transformers import ViTMAEConfig

    s = as_spec(spec)
    return ViTMAEConfig(
        image_size=s.image_size, patch_size=s.patch_size, num_channels=s.num_channels,
        hidden_size=s.hidden_size, num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads,
        intermediate_size=s.mlp_ratio * s.hidden_size,
        decoder_hidden_size=s.decoder_hidden_size, decoder_num_hidden_layers=s.decoder_layers,
        decoder_num_attention_heads=s.decoder_heads, decoder_intermediate_size=s.mlp_ratio * s.decoder_hidden_size,
        mask_ratio=float(s.mask_ratio), norm_pix_loss=s.norm_pix_loss,
        hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-6,
        qkv_bias=True, initializer_range=0.02,
    )


def build_mae(spec: MAESpec | Mapping, seed: int):
    """A freshly initialised ViTMAEForPreTraining, initialised as MAE does (`mae_init_`) from `seed`."""
    from transformers import ViTMAEForPreTraining

    torch.manual_seed(seed)
    model = ViTMAEForPreTraining(mae_config(spec))
    return mae_init_(model, seed)


def sincos_position_embedding(grid: int, width: int) -> torch.Tensor:
    """(1, 1 + grid², width) fixed 2-D sin-cos embedding, a zero row first for the CLS token, in the
    layout ViTMAE's checkpoints use ([sin_w | cos_w | sin_h | cos_h]: transformers rotates its own by half)."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

    pe = build_2d_sinusoidal_position_embedding(grid, grid, embed_dim=width, cls_token=True)  # (1 + grid², width)
    half = width // 2
    return torch.cat([pe[..., half:], pe[..., :half]], dim=-1).unsqueeze(0)


@torch.no_grad()
def mae_init_(model, seed: int):
    """Initialise a ViTMAEForPreTraining in place the way MAE's models_mae.initialize_weights does.

    Needed because a fresh transformers 5.23 ViTMAEForPreTraining is NOT: its encoder's sin-cos
    position embedding, CLS token, decoder position embedding and mask token are all left at zero
    (ViTMAEEmbeddings.initialize_weights returns early once the patch conv is marked initialised, and
    _init_weights zeroes the decoder's), so nothing would tell the patches' positions apart. Here:
    position embeddings (encoder, decoder) = fixed 2-D sin-cos, frozen; patch projection xavier-uniform
    as a (d, C·p·p) Linear, bias 0; CLS and mask tokens N(0, 0.02²); every nn.Linear xavier-uniform,
    bias 0; LayerNorms 1, 0. Draws from torch's global generator, seeded with `seed`.
    """
    torch.manual_seed(seed)
    c = model.config
    grid = c.image_size // c.patch_size
    emb = model.vit.embeddings
    emb.position_embeddings.copy_(sincos_position_embedding(grid, c.hidden_size))
    model.decoder.decoder_pos_embed.copy_(sincos_position_embedding(grid, c.decoder_hidden_size))
    assert not emb.position_embeddings.requires_grad and not model.decoder.decoder_pos_embed.requires_grad
    w = emb.patch_embeddings.projection.weight                    # (d, C, p, p)
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(emb.patch_embeddings.projection.bias)
    nn.init.normal_(emb.cls_token, std=0.02)
    nn.init.normal_(model.decoder.mask_token, std=0.02)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


# ------------------------------------------------------------------------------------------- inputs

def to_pixels(images: np.ndarray, image_size: int, mean: float = FASHION_MNIST_MEAN,
              std: float = FASHION_MNIST_STD) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, image_size, image_size): /255, centred zero
    padding up to image_size, then (x − mean) / std."""
    x = torch.as_tensor(np.asarray(images))
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 0..255, got {x.dtype}")
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)       # (N, C, H, W)
    h, w = x.shape[-2:]
    if h > image_size or w > image_size:
        raise ValueError(f"images are {h}x{w}, larger than the model's {image_size}x{image_size}; resize them first")
    x = x.float() / 255.0
    if (h, w) != (image_size, image_size):
        top, left = (image_size - h) // 2, (image_size - w) // 2
        x = nn.functional.pad(x, (left, image_size - w - left, top, image_size - h - top))
    return (x - mean) / std


def mask_noise(batch: int, num_patches: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, num_patches) uniform noise for ViTMAE's random_masking, from `generator` (on CPU)."""
    return torch.rand(batch, num_patches, generator=generator)


def keep_order_noise(batch: int, num_patches: int) -> torch.Tensor:
    """Noise that makes random_masking the identity permutation (with mask_ratio 0: nothing removed)."""
    return torch.arange(num_patches, dtype=torch.float32).expand(batch, num_patches)


# ----------------------------------------------------------------------------------- classifier

class MAEClassifier(nn.Module):
    """The MAE's encoder (no masking), mean of the patch tokens (the CLS token left out), a fresh linear head.

    Only encoder weights come from the MAE (`from_mae`); the decoder is dropped. The encoder is a
    ViTMAEModel with mask_ratio 0 fed `keep_order_noise`, so every patch is seen, in its own order.
    """

    def __init__(self, config, num_classes: int):
        super().__init__()
        from transformers import ViTMAEModel

        config = type(config).from_dict({**config.to_dict(), "mask_ratio": 0.0})
        self.config = config
        self.encoder = ViTMAEModel(config)
        self.head = nn.Linear(config.hidden_size, num_classes)  # init from torch's global generator

    @classmethod
    def from_mae(cls, mae, num_classes: int, seed: int) -> "MAEClassifier":
        """Encoder weights of `mae` (a ViTMAEForPreTraining) loaded exactly; head initialised from `seed`."""
        torch.manual_seed(seed)
        model = cls(mae.config, num_classes)
        missing, unexpected = model.encoder.load_state_dict(mae.vit.state_dict(), strict=True)
        assert not missing and not unexpected, (missing, unexpected)
        return model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b = pixel_values.shape[0]
        num_patches = self.encoder.embeddings.patch_embeddings.num_patches
        out = self.encoder(pixel_values=pixel_values, noise=keep_order_noise(b, num_patches).to(pixel_values.device))
        tokens = out.last_hidden_state[:, 1:, :]    # (B, L, d): patch tokens after the final LayerNorm
        return self.head(tokens.mean(dim=1))        # (B, classes)


# ------------------------------------------------------------------------------------- matrices

LAST_FFN, ENCODER = "last_ffn", "encoder"
ANALYSED = (LAST_FFN, ENCODER)


def matrix_specs(model) -> dict:
    """{id: MatrixSpec} of the encoder's weight matrices (namemaps family vit_mae), decoder left out."""
    from specbasis.io.namemaps import map_names

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return {s.id: s for s in map_names("vit_mae", shapes)}


def analysed_ids(model, which: str = LAST_FFN) -> list[str]:
    """`last_ffn`: the FFN matrices of the encoder's last block ["LL.ffn_in", "LL.ffn_out"]; `encoder`:
    every encoder matrix (q, k, v, o, ffn_in, ffn_out of every block), in namemaps' id order."""
    specs = matrix_specs(model)
    if which == ENCODER:
        return list(specs)
    if which != LAST_FFN:
        raise ValueError(f"analysed={which!r}: allowed {', '.join(ANALYSED)}")
    last = model.config.num_hidden_layers - 1
    ids = [f"{last:02d}.ffn_in", f"{last:02d}.ffn_out"]
    assert all(i in specs for i in ids), f"namemaps gave {sorted(specs)}, not {ids}"
    return ids


def matrices(model, ids: list[str]) -> dict[str, torch.Tensor]:
    """{id: W (out, in)}: detached float32 CPU copies of the model's current weights."""
    from specbasis.io.namemaps import load_matrix

    specs, state = matrix_specs(model), model.state_dict()
    missing = [i for i in ids if i not in specs]
    if missing:
        raise KeyError(f"matrix id(s) {missing} not in the model; it has {', '.join(specs)}")
    return {i: load_matrix(specs[i], state.__getitem__).detach().float().cpu().clone() for i in ids}
