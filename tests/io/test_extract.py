"""Extraction: tiny models saved the ways checkpoints come (save_pretrained, safetensors shards,
torch.save .bin/.pth), extracted, read back and compared with the state dict after the transform;
failures leave nothing behind and name what broke."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from test_namemaps import built, case, labram_pretraining_model, layers  # tiny models of the libraries' classes

from specbasis.io import extract
from specbasis.io.extract import extract_weights, find_checkpoint, list_ids, load_state_dict, read_weights
from specbasis.io.namemaps import load_matrix, map_names, sort_key


def expected_matrices(state: dict, family: str, config: dict | None) -> dict[str, np.ndarray]:
    specs = map_names(family, {k: tuple(v.shape) for k, v in state.items()}, config)
    return {s.id: load_matrix(s, state.__getitem__).to(torch.float32).numpy() for s in specs}


def state_of(family: str, classifier: bool = True) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in built(case(family), classifier).state_dict().items()}


def save_pretrained(model_dir: Path, family: str, **kw) -> dict:
    model = built(case(family), True)
    model.save_pretrained(model_dir, **kw)
    return {k: v.clone() for k, v in model.state_dict().items()}


def files_in(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("family", ["bert", "deberta", "gpt2", "xlnet", "bart", "albert"])
def test_save_pretrained_round_trip(tmp_path, family):
    state = save_pretrained(tmp_path / "model", family)
    config = json.loads((tmp_path / "model/config.json").read_text())  # deberta needs its head count
    expected = expected_matrices(state, family, config)
    out = tmp_path / "weights.h5"
    summary = extract_weights(tmp_path / "model", family, out)

    got = read_weights(out)
    assert sorted(got) == sorted(expected) and summary["ids"] == list_ids(out) == sorted(expected, key=sort_key)
    for key, W in expected.items():
        assert got[key].dtype == np.float32 and got[key].shape == W.shape
        np.testing.assert_array_equal(got[key], W, err_msg=key)
    assert summary["n_matrices"] == len(expected)
    assert summary["checkpoint"] == ["model.safetensors"]
    assert summary["checkpoint_bytes"] == (tmp_path / "model/model.safetensors").stat().st_size
    with safe_open(tmp_path / "model/model.safetensors", "pt") as f:
        names = set(f.keys())
    assert set(summary["skipped"]) == names - _sources(out) and summary["n_skipped"] == len(summary["skipped"])
    assert not any(".LayerNorm." in n or "layer_norm" in n for n in _sources(out))
    assert files_in(tmp_path) == ["model", "weights.h5"]  # no temporary file left


def _sources(path: Path) -> set[str]:
    with h5py.File(path) as f:
        return {name for key in f for name in json.loads(f[key].attrs["source"])}


def test_attributes(tmp_path):
    state = save_pretrained(tmp_path / "model", "bert")
    extract_weights(tmp_path / "model", "bert", tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5") as f:
        assert dict(f.attrs) == {"family": "bert", "format_version": 1, "orientation": "torch Linear (out, in)",
                                 "checkpoint_bytes": (tmp_path / "model/model.safetensors").stat().st_size}
        ds = f["01.ffn_in"]
        assert ds.shape == (48, 32)  # (out, in)
        assert json.loads(ds.attrs["source"]) == ["bert.encoder.layer.1.intermediate.dense.weight"]
        assert ds.attrs["transform"] == "none" and "note" not in ds.attrs
        np.testing.assert_array_equal(ds[()], state["bert.encoder.layer.1.intermediate.dense.weight"].numpy())


def test_shared_albert_layer_carries_its_note(tmp_path):
    save_pretrained(tmp_path / "model", "albert")
    extract_weights(tmp_path / "model", "albert", tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5") as f:
        assert sorted(f) == sorted(["00.attn_q", "00.attn_k", "00.attn_v", "00.attn_o", "00.ffn_in", "00.ffn_out"])
        assert f["00.attn_q"].attrs["note"] == "shared by all 2 layers (ALBERT layer group 0)"


def test_sharded_safetensors(tmp_path):
    state = save_pretrained(tmp_path / "model", "bert", max_shard_size="20KB")
    shards = sorted((tmp_path / "model").glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model/model.safetensors.index.json").is_file()
    summary = extract_weights(tmp_path / "model", "bert", tmp_path / "w.h5")
    assert summary["checkpoint"] == [p.name for p in shards]
    got, expected = read_weights(tmp_path / "w.h5"), expected_matrices(state, "bert", None)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize("family, filename, wrap", [
    ("bert", "pytorch_model.bin", lambda s: s),
    ("roberta", "weights.bin", lambda s: s),
    ("vit", "model.pth", lambda s: {"state_dict": s, "epoch": 3}),
    ("convnext", "checkpoint.pt", lambda s: {"model": s}),
    ("efficientnet_lite", "efficientnet-lite0.pth", lambda s: {"module." + k: v for k, v in s.items()}),
])
def test_torch_save_checkpoints(tmp_path, monkeypatch, family, filename, wrap):
    monkeypatch.setattr(extract, "REOPEN_BYTES", 1000)  # reopen the memory map often, as on a big model
    state = state_of(family)
    (tmp_path / "model").mkdir()
    torch.save(wrap(state), tmp_path / "model" / filename)
    torch.save({"lr": 0.1}, tmp_path / "model/training_args.bin")  # trainer leftovers are not weights
    torch.save({"lr": 0.1}, tmp_path / "model/optimizer.pt")
    summary = extract_weights(tmp_path / "model", family, tmp_path / "w.h5")
    assert summary["checkpoint"] == [filename]
    got, expected = read_weights(tmp_path / "w.h5"), expected_matrices(state, family, None)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_widened_exactly(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(extract, "BLOCK_BYTES", 4 * 32 * 3)  # three rows a block: exercise the blocks
    state = {k: v.to(dtype) for k, v in state_of("gpt2", classifier=False).items()}  # transposed matrices
    (tmp_path / "model").mkdir()
    save_file(state, str(tmp_path / "model/model.safetensors"))
    extract_weights(tmp_path / "model", "gpt2", tmp_path / "w.h5")
    got, expected = read_weights(tmp_path / "w.h5"), expected_matrices(state, "gpt2", None)
    for key in expected:
        assert got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], expected[key])


def test_read_weights_subset_and_errors(tmp_path):
    save_pretrained(tmp_path / "model", "bert")
    extract_weights(tmp_path / "model", "bert", tmp_path / "w.h5")
    assert list(read_weights(tmp_path / "w.h5", ["01.attn_q"])) == ["01.attn_q"]
    with pytest.raises(KeyError, match="02.attn_q"):
        read_weights(tmp_path / "w.h5", ["02.attn_q"])
    assert list_ids(tmp_path / "w.h5")[:6] == ["00.ffn_in", "00.ffn_out", "00.attn_q", "00.attn_k", "00.attn_v",
                                               "00.attn_o"]


# --------------------------------------------------------------------------------- failures

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_matrix_fails_and_leaves_nothing(tmp_path, bad):
    state = state_of("bert")
    state["bert.encoder.layer.1.attention.self.value.weight"][3, 5] = bad
    (tmp_path / "model").mkdir()
    save_file(state, str(tmp_path / "model/model.safetensors"))
    out = tmp_path / "out" / "w.h5"
    with pytest.raises(ValueError, match=r"matrix 01.attn_v \(from bert.encoder.layer.1.attention.self.value.weight\)"
                                         r" holds 1 NaN/Inf"):
        extract_weights(tmp_path / "model", "bert", out)
    assert not out.exists()
    assert files_in(out.parent) == []  # no temporary file either


def test_failure_keeps_an_earlier_output_whole(tmp_path):
    state = state_of("bert")
    (tmp_path / "model").mkdir()
    save_file(state, str(tmp_path / "model/model.safetensors"))
    out = tmp_path / "w.h5"
    extract_weights(tmp_path / "model", "bert", out)
    before = out.read_bytes()
    state["bert.encoder.layer.0.output.dense.weight"][0, 0] = float("nan")
    save_file(state, str(tmp_path / "model/model.safetensors"))
    with pytest.raises(ValueError, match="00.ffn_out"):
        extract_weights(tmp_path / "model", "bert", out)
    assert out.read_bytes() == before and files_in(tmp_path) == ["model", "w.h5"]


@pytest.mark.parametrize("edit, pattern", [
    (lambda s: s.pop("bert.encoder.layer.1.attention.self.key.weight"),
     r"no attn_k: expected 'bert.encoder.layer.1.attention.self.key.weight', missing"),
    (lambda s: s.update({"bert.encoder.layer.1.intermediate.dense.weight": torch.zeros(37, 32)}),
     r"bert.encoder.layer.1.intermediate.dense.weight has shape \(37, 32\)"),
    (lambda s: s.update({"bert.encoder.layer.0.attention.self.query.weight": torch.zeros(32, 32, 1)}),
     r"tensor bert.encoder.layer.0.attention.self.query.weight: .*\(32, 32, 1\)"),
])
def test_missing_or_misshapen_tensor_is_named(tmp_path, edit, pattern):
    state = state_of("bert")
    edit(state)
    (tmp_path / "model").mkdir()
    save_file(state, str(tmp_path / "model/model.safetensors"))
    with pytest.raises(ValueError, match=pattern):
        extract_weights(tmp_path / "model", "bert", tmp_path / "w.h5")
    assert files_in(tmp_path) == ["model"]


def test_tensor_missing_at_read_time_is_named(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    save_file(state_of("bert"), str(tmp_path / "model/model.safetensors"))
    real_get = extract.Checkpoint.get

    def flaky(self, name):  # the header listed it, the read does not find it (a truncated shard)
        if name.endswith("layer.1.output.dense.weight"):
            raise KeyError(name)
        return real_get(self, name)
    monkeypatch.setattr(extract.Checkpoint, "get", flaky)
    missing = r"matrix 01.ffn_out: tensor 'bert.encoder.layer.1.output.dense.weight' is missing"
    with pytest.raises(KeyError, match=missing):
        extract_weights(tmp_path / "model", "bert", tmp_path / "w.h5")
    assert files_in(tmp_path) == ["model"]


def test_unknown_family_fails_before_writing(tmp_path):
    save_pretrained(tmp_path / "model", "bert")
    with pytest.raises(KeyError, match="unknown architecture family 'bertt'"):
        extract_weights(tmp_path / "model", "bertt", tmp_path / "w.h5")
    assert files_in(tmp_path) == ["model"]


@pytest.mark.parametrize("names, found", [
    (["model.safetensors", "pytorch_model.bin", "training_args.bin"], ["model.safetensors"]),
    (["pytorch_model.bin", "training_args.bin", "optimizer.pt", "rng_state.pth"], ["pytorch_model.bin"]),
    (["efficientnet-lite0.pth", "config.json"], ["efficientnet-lite0.pth"]),
    (["weights.pt"], ["weights.pt"]),
    (["a.safetensors", "b.safetensors"], FileNotFoundError),
    (["config.json", "training_args.bin"], FileNotFoundError),
])
def test_find_checkpoint(tmp_path, names, found):
    for name in names:
        (tmp_path / name).write_bytes(b"")
    if found is FileNotFoundError:
        with pytest.raises(FileNotFoundError, match=str(tmp_path)):
            find_checkpoint(tmp_path)
    else:
        assert [p.name for p in find_checkpoint(tmp_path)] == found


# ------------------------------------------------------------ brain models' training checkpoints

def brain_jepa_checkpoint() -> tuple[dict, dict]:
    """(checkpoint, the target encoder's state). Brain-JEPA's save_checkpoint (src/train.py, after I-JEPA)
    saves encoder, predictor and target_encoder, each DDP-wrapped (`module.`), beside opt, scaler, epoch, ..."""
    target = {"module." + k: v for k, v in state_of("brain_jepa", classifier=False).items()}
    encoder = {k: torch.randn_like(v) for k, v in target.items()}  # the online encoder: other values
    predictor = {"module.predictor_embed.weight": torch.randn(16, 32),
                 "module.predictor_blocks.0.attn.qkv.weight": torch.randn(48, 16)}
    ckpt = {"encoder": encoder, "predictor": predictor, "target_encoder": target,
            "opt": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}, "scaler": None,
            "epoch": 3, "loss": 0.25, "batch_size": 8, "world_size": 1, "lr": 1e-3}
    return ckpt, target


def labram_checkpoint() -> tuple[dict, dict]:
    """LaBraM's utils.save_model after pretraining: the NeuralTransformerForMEM state under 'model' (the
    encoder as `student.`), with the optimizer, the epoch, the command line as an argparse.Namespace."""
    state = {k: v.clone() for k, v in labram_pretraining_model().state_dict().items()}
    ckpt = {"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0]}]},
            "epoch": 49, "args": argparse.Namespace(model="labram_base_patch200_1600_8k_vocab", lr=5e-4),
            "scaler": {"scale": 65536.0, "growth_factor": 2.0}}
    return ckpt, state


def test_brain_jepa_checkpoint_gives_the_target_encoder(tmp_path):
    ckpt, target = brain_jepa_checkpoint()
    torch.save(ckpt, tmp_path / "jepa-ep300.pth.tar")  # the name Brain-JEPA gives its checkpoints
    state = load_state_dict(tmp_path / "jepa-ep300.pth.tar", "brain_jepa")
    assert state.keys() == target.keys() and all(torch.equal(state[k], target[k]) for k in target)
    specs = map_names("brain_jepa", {k: tuple(v.shape) for k, v in state.items()})
    assert {s.id: s.shape for s in specs} == layers(2, 32, 128)
    assert all(s.sources[0].startswith("module.blocks.") for s in specs)

    del ckpt["target_encoder"]  # a checkpoint with the online encoder only
    torch.save(ckpt, tmp_path / "encoder.pth")
    state = load_state_dict(tmp_path / "encoder.pth", "brain_jepa")
    assert all(torch.equal(state[k], ckpt["encoder"][k]) for k in target)


def test_extract_weights_unnests_a_brain_jepa_checkpoint(tmp_path):
    ckpt, target = brain_jepa_checkpoint()
    (tmp_path / "model").mkdir()
    torch.save(ckpt, tmp_path / "model/checkpoint.pth")
    summary = extract_weights(tmp_path / "model", "brain_jepa", tmp_path / "w.h5")
    got, expected = read_weights(tmp_path / "w.h5"), expected_matrices(target, "brain_jepa", None)
    assert summary["ids"] == sorted(layers(2, 32, 128), key=sort_key) and sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    assert not any(n.startswith("module.predictor") for n in summary["skipped"])  # not even read


def test_labram_pretraining_checkpoint_with_its_args(tmp_path):
    ckpt, state = labram_checkpoint()
    (tmp_path / "model").mkdir()
    torch.save(ckpt, tmp_path / "model/labram-base.pth")
    assert load_state_dict(tmp_path / "model/labram-base.pth", "labram").keys() == state.keys()
    summary = extract_weights(tmp_path / "model", "labram", tmp_path / "w.h5")
    got, expected = read_weights(tmp_path / "w.h5"), expected_matrices(state, "labram", None)
    assert sorted(got) == sorted(layers(2, 32, 128)) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    with h5py.File(tmp_path / "w.h5") as f:
        assert json.loads(f["00.attn_k"].attrs["source"]) == ["student.blocks.0.attn.qkv.weight"]
        np.testing.assert_array_equal(f["00.attn_k"][()], state["student.blocks.0.attn.qkv.weight"][32:64].numpy())
    assert {"lm_head.weight", "projection_head.0.weight", "student.lm_head.weight"} <= set(summary["skipped"])


def test_load_state_dict_of_a_safetensors_file_and_a_flat_state_dict(tmp_path):
    state = state_of("labram")
    save_file(state, str(tmp_path / "model.safetensors"))
    got = load_state_dict(tmp_path / "model.safetensors", "labram")
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    torch.save(state, tmp_path / "flat.pt")
    assert load_state_dict(tmp_path / "flat.pt", "labram").keys() == state.keys()


def test_load_state_dict_says_what_it_found_when_there_is_no_state_dict(tmp_path):
    ckpt, _ = brain_jepa_checkpoint()
    path = tmp_path / "jepa.pth"
    torch.save(ckpt, path)
    with pytest.raises(ValueError) as err:  # the wrong family: vit has no keys of its own
        load_state_dict(path, "vit")
    message = str(err.value)
    for part in (str(path), "no state dict found", "'target_encoder'", "'predictor'", "'epoch'",
                 "state_dict, model, model_state_dict", "brain_jepa: target_encoder, encoder", "is the family right"):
        assert part in message, part
    torch.save({"model": {"epoch": 3}}, tmp_path / "empty.pth")
    empty = r"empty.pth: no state dict found: no tensors under 'model' \(its keys: 'epoch'\)"
    with pytest.raises(ValueError, match=empty):
        load_state_dict(tmp_path / "empty.pth", "labram")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt: holds a list, not a state dict"):
        load_state_dict(tmp_path / "list.pt", "labram")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_state_dict(tmp_path / "missing.pth", "labram")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="weights.npz: not a checkpoint file name"):
        load_state_dict(tmp_path / "weights.npz", "labram")
    with pytest.raises(KeyError, match="unknown architecture family 'labrum'"):
        load_state_dict(path, "labrum")



# -- a corrupt or truncated checkpoint is caught where it enters (prepare_model), naming the file -----------

def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _hf_folder(tmp_path: Path, weights: str) -> Path:
    from tiny_suite import tiny_bert

    folder = tmp_path / "fetched"
    tiny_bert(folder)
    if weights == "bin":
        from safetensors.torch import load_file

        state = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
    return folder


CORRUPTIONS = {
    "random-safetensors": ("safetensors", lambda f: (f / "model.safetensors").write_bytes(
        np.random.default_rng(0).bytes(4096)), "model.safetensors: not a safetensors file"),
    "truncated-safetensors": ("safetensors", lambda f: _truncate(f / "model.safetensors"),
                              "model.safetensors: truncated safetensors file"),
    "truncated-bin": ("bin", lambda f: _truncate(f / "pytorch_model.bin"), "pytorch_model.bin: "),
    "random-bin": ("bin", lambda f: (f / "pytorch_model.bin").write_bytes(np.random.default_rng(1).bytes(4096)),
                   "pytorch_model.bin: not a readable torch or safetensors checkpoint"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_prepare_refuses_a_corrupt_checkpoint_naming_the_file(tmp_path, case):
    from specbasis.io.extract import CorruptCheckpointError
    from specbasis.models import prepare_pretrained

    weights, corrupt, said = CORRUPTIONS[case]
    folder = _hf_folder(tmp_path, weights)
    prepare_pretrained(folder, tmp_path / "good", "bert", "hf")  # the intact folder prepares
    corrupt(folder)
    with pytest.raises(CorruptCheckpointError) as info:
        prepare_pretrained(folder, tmp_path / "out", "bert", "hf")
    assert str(folder) in str(info.value) and said in str(info.value), str(info.value)
    assert not (tmp_path / "out").exists()
