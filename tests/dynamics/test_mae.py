"""The ViTMAE of the pretraining-dynamics study (specbasis.dynamics.mae), on tiny random instances of transformers' classes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from specbasis.analysis.alignment import matched_cos, random_cos
from specbasis.dynamics.mae import (PAPER, PAPER_FMNIST, MAEClassifier, MAESpec, analysed_ids, build_mae, keep_order_noise,
                           mae_config, mask_noise, matrix_specs, matrices, sincos_position_embedding, to_pixels)
from specbasis.svd import svd_batch

TINY = MAESpec(image_size=16, patch_size=4, num_channels=1, hidden_size=16, num_layers=2, num_heads=2,
               decoder_hidden_size=8, decoder_layers=1, decoder_heads=2)


def _images(n: int, side: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)


@pytest.mark.parametrize("change, words", [
    ({"image_size": 30}, "not a multiple of patch_size"),
    ({"hidden_size": 18, "num_heads": 3}, "multiple of 4"),
    ({"hidden_size": 20, "num_heads": 3}, "not divisible"),
    ({"decoder_hidden_size": 12, "decoder_heads": 5}, "decoder_hidden_size=12 is not divisible"),
    ({"mask_ratio": 1.0}, "mask_ratio=1.0"),
    ({"mask_ratio": 0.99}, "leaves no visible patch"),
    ({"num_channels": 2}, "num_channels=2"),
    ({"num_layers": 0}, "num_layers=0"),
    ({"patch_size": 2.5}, "patch_size=2.5"),
    ({"norm_pix_loss": "no"}, "norm_pix_loss"),
])
def test_spec_rejects_bad_values_naming_them(change, words):
    with pytest.raises(ValueError, match=words):
        MAESpec(**{**TINY.to_dict(), **change})


def test_spec_from_dict_lists_allowed_keys():
    assert MAESpec.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hidden'\]; allowed: image_size"):
        MAESpec.from_dict({"hidden": 3})


def test_paper_sizes_and_config():
    assert (PAPER.num_patches, PAPER.num_visible) == (64, 25)                # 32x32 / 4x4, 60% masked
    assert (PAPER_FMNIST.num_patches, PAPER_FMNIST.num_visible) == (49, 19)  # 28x28 / 4x4
    c = mae_config(PAPER)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (192, 6, 3, 768)
    assert (c.decoder_hidden_size, c.decoder_num_hidden_layers, c.decoder_num_attention_heads) == (64, 2, 4)
    assert (c.mask_ratio, c.norm_pix_loss, c.hidden_dropout_prob, c.attention_probs_dropout_prob) == (0.6, False, 0, 0)
    assert mae_config(TINY.to_dict()).to_dict() == mae_config(TINY).to_dict()


def test_build_fills_fixed_sincos_positions_and_tokens():
    """transformers 5.23 leaves a fresh ViTMAE's positions and tokens at zero; build_mae must not."""
    m = build_mae(TINY, 0)
    pe, dpe = m.vit.embeddings.position_embeddings, m.decoder.decoder_pos_embed
    assert torch.equal(pe, sincos_position_embedding(4, 16)) and torch.equal(dpe, sincos_position_embedding(4, 8))
    assert not pe.requires_grad and not dpe.requires_grad
    assert pe[0, 1:].abs().sum(1).min() > 0 and len(torch.unique(pe[0, 1:], dim=0)) == TINY.num_patches
    assert m.vit.embeddings.cls_token.abs().sum() > 0 and m.decoder.mask_token.abs().sum() > 0


def test_build_is_seeded():
    a, b, c = (build_mae(TINY, s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["vit.layers.1.mlp.fc1.weight"], c["vit.layers.1.mlp.fc1.weight"])


def test_save_and_reload_keep_every_tensor(tmp_path):
    from transformers import ViTMAEForPreTraining

    m = build_mae(TINY, 3)
    m.save_pretrained(tmp_path / "m")
    back = ViTMAEForPreTraining.from_pretrained(tmp_path / "m")
    a, b = m.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_to_pixels_pads_centred_and_normalises():
    x = np.full((2, 12, 12), 255, np.uint8)
    p = to_pixels(x, 16, mean=0.5, std=0.25)
    assert p.shape == (2, 1, 16, 16) and p.dtype == torch.float32
    assert torch.allclose(p[:, :, 2:14, 2:14], torch.tensor(2.0)) and torch.allclose(p[:, :, :2], torch.tensor(-2.0))
    assert to_pixels(np.zeros((1, 16, 16, 3), np.uint8), 16).shape == (1, 3, 16, 16)
    with pytest.raises(TypeError, match="uint8"):
        to_pixels(x.astype(np.float32), 16)
    with pytest.raises(ValueError, match="larger than"):
        to_pixels(x, 8)


def test_noise_fixes_the_mask():
    m = build_mae(TINY, 0).eval()
    x = to_pixels(_images(4), 16)
    noise = mask_noise(4, TINY.num_patches, torch.Generator().manual_seed(5))
    a, b = m(pixel_values=x, noise=noise), m(pixel_values=x, noise=noise.clone())
    assert torch.equal(a.loss, b.loss) and torch.equal(a.mask, b.mask)
    assert (a.mask.sum(1) == TINY.num_patches - TINY.num_visible).all()          # 1 = removed
    assert torch.equal(a.mask, (noise.argsort(1).argsort(1) >= TINY.num_visible).float())  # the largest noise goes


def test_loss_counts_masked_patches_only():
    """Against transformers' own mask: a change of the prediction at a visible patch leaves the loss alone,
    a change at a removed one changes it. (Changing the *input* pixels of a visible patch would change the
    predictions of the removed ones too, through the encoder; a removed patch's pixels enter only the target.)"""
    m = build_mae(TINY, 0).eval()
    x = to_pixels(_images(2), 16)
    noise = mask_noise(2, TINY.num_patches, torch.Generator().manual_seed(1))
    base = m(pixel_values=x, noise=noise)
    target = m.patchify(x)
    manual = (((base.logits - target) ** 2).mean(-1) * base.mask).sum() / base.mask.sum()
    assert torch.allclose(base.loss, manual, rtol=1e-6)

    def loss_with_pred_changed_at(patch: int) -> torch.Tensor:
        def hook(module, args, out):
            out = out.clone()
            out[0, 1 + patch] += 10.0        # decoder_pred's output still has the CLS token first
            return out
        handle = m.decoder.decoder_pred.register_forward_hook(hook)
        try:
            return m(pixel_values=x, noise=noise).loss
        finally:
            handle.remove()

    visible = torch.nonzero(base.mask[0] == 0).flatten().tolist()
    removed = torch.nonzero(base.mask[0] == 1).flatten().tolist()
    for p in visible:
        assert torch.equal(loss_with_pred_changed_at(p), base.loss), f"visible patch {p} entered the loss"
    for p in removed[:3]:
        assert loss_with_pred_changed_at(p) > base.loss + 1e-3

    # pixels: a removed patch is never seen by the encoder (same predictions) but is a target (loss changes)
    r = removed[0]
    row, col = divmod(r, 16 // 4)
    x2 = x.clone()
    x2[0, :, 4 * row:4 * row + 4, 4 * col:4 * col + 4] += 3.0
    out2 = m(pixel_values=x2, noise=noise)
    assert torch.equal(out2.logits, base.logits) and not torch.equal(out2.loss, base.loss)


def test_classifier_reuses_the_encoder_and_sees_every_patch():
    mae = build_mae(TINY, 0)
    clf = MAEClassifier.from_mae(mae, num_classes=5, seed=1)
    enc, vit = clf.encoder.state_dict(), mae.vit.state_dict()
    assert enc.keys() == vit.keys() and all(torch.equal(enc[k], vit[k]) for k in enc)
    assert clf.config.mask_ratio == 0.0 and mae.config.mask_ratio == TINY.mask_ratio  # the MAE's is untouched
    assert torch.equal(MAEClassifier.from_mae(mae, 5, 1).head.weight, clf.head.weight)  # fresh head, seeded
    clf.eval()
    x = to_pixels(_images(3), 16)
    logits = clf(x)
    assert logits.shape == (3, 5)
    for patch in range(TINY.num_patches):                 # nothing is masked: every patch moves the output
        row, col = divmod(patch, 4)
        x2 = x.clone()
        x2[:, :, 4 * row:4 * row + 4, 4 * col:4 * col + 4] += 1.0
        assert not torch.allclose(clf(x2), logits)
    assert torch.equal(keep_order_noise(2, 5).argsort(1), torch.arange(5).expand(2, 5))


def test_analysed_ids_come_from_namemaps_on_in_memory_names():
    mae = build_mae(TINY, 0)
    specs = matrix_specs(mae)
    assert analysed_ids(mae) == ["01.ffn_in", "01.ffn_out"]
    assert specs["01.ffn_in"].sources == ("vit.layers.1.mlp.fc1.weight",) and specs["01.ffn_in"].shape == (64, 16)
    assert specs["01.ffn_out"].sources == ("vit.layers.1.mlp.fc2.weight",) and specs["01.ffn_out"].shape == (16, 64)
    every = analysed_ids(mae, "encoder")
    assert len(every) == 6 * TINY.num_layers and not any("decoder" in s for i in every for s in specs[i].sources)
    clf = MAEClassifier.from_mae(mae, 3, 0)
    assert analysed_ids(clf, "encoder") == every        # `encoder.` prefix: the same ids, the same matrices
    a, b = matrices(mae, every), matrices(clf, every)
    assert all(torch.equal(a[k], b[k]) for k in every)
    with pytest.raises(ValueError, match="allowed last_ffn, encoder"):
        analysed_ids(mae, "ffn")


def _top_vectors(W: torch.Tensor):
    U, S, Vh = svd_batch(W[None])
    return U[0].numpy(), Vh[0].numpy()


def test_self_alignment_is_one_and_independent_inits_are_random():
    spec = MAESpec(**{**TINY.to_dict(), "hidden_size": 64, "num_layers": 1, "num_heads": 2})
    a, b = (matrices(build_mae(spec, s), ["00.ffn_in", "00.ffn_out"]) for s in (0, 1))
    for key in a:
        Ua, Vha = _top_vectors(a[key])
        again = _top_vectors(a[key].clone())
        assert np.allclose(matched_cos(Ua, again[0], 0), 1, atol=1e-6)
        assert np.allclose(matched_cos(Vha, again[1], 1), 1, atol=1e-6)
        Ub, Vhb = _top_vectors(b[key])
        for got, dim in ((matched_cos(Ua, Ub, 0), Ua.shape[0]), (matched_cos(Vha, Vhb, 1), Vha.shape[1])):
            assert abs(got.mean() / random_cos(dim) - 1) < 0.35, (key, got.mean(), random_cos(dim))
