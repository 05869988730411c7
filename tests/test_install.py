"""The plain pip install (docs/library.md): a fresh venv, `pip install -c constraints.txt <the package>`, then the
spectral adapter on a tiny BERT. It downloads torch and the rest from the package indexes (several minutes), so it
runs only when asked: SPECBASIS_INSTALL_TESTS=1 python -m pytest -m install."""
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run by the fresh venv's python: what a user of the library does, and nothing from the workflow or the tests.
CHECK = r'''
import importlib.metadata as md, importlib.util, sys
import torch
from transformers import BertConfig, BertForSequenceClassification
from specbasis.methods.spectral_adapter import (SpectralConfig, apply_spectral, merge_and_unload, save_spectral,
                                        load_spectral, spectral_parameter_counts)

assert importlib.util.find_spec("torchvision") is None, "torchvision got installed: it is no dependency"
torch.manual_seed(0)
cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=32, num_labels=2)
model = BertForSequenceClassification(cfg).eval()
x = torch.randint(0, 100, (3, 10))
with torch.no_grad():
    base = model(input_ids=x).logits                                   # (3, 2)
config = SpectralConfig(k=0, m=8, layers=[1], kinds=["ffn_in", "ffn_out"], family="bert",
                        modules_to_save=["classifier"])
model = apply_spectral(model, config)
with torch.no_grad():
    init = model(input_ids=x).logits
assert (init - base).abs().max() < 1e-6, "the adapter at init is not a no-op"
counts = spectral_parameter_counts(model)
assert counts["adapter"] == 2 * 8 ** 2, counts
opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
model.train()
loss = torch.nn.functional.cross_entropy(model(input_ids=x).logits, torch.tensor([0, 1, 0]))
loss.backward()
opt.step()
model.eval()
with torch.no_grad():
    trained = model(input_ids=x).logits
assert (trained - base).abs().max() > 1e-4, "a training step changed nothing"
save_spectral(model, sys.argv[1])
torch.manual_seed(0)
fresh = BertForSequenceClassification(cfg).eval()
reloaded = load_spectral(fresh, sys.argv[1])
merged = merge_and_unload(model)
with torch.no_grad():
    assert (merged(input_ids=x).logits - trained).abs().max() < 1e-5, "merged differs from unmerged"
    assert (reloaded(input_ids=x).logits - trained).abs().max() < 1e-5, "the reloaded adapter differs"
versions = {p: md.version(p) for p in ("specbasis", "torch", "transformers", "safetensors", "numpy", "peft")}
print("spectral adapter OK:", counts, versions)
'''


@pytest.mark.install
@pytest.mark.skipif(os.environ.get("SPECBASIS_INSTALL_TESTS") != "1", reason="set SPECBASIS_INSTALL_TESTS=1")
def test_pip_install_gives_a_working_spectral_adapter(tmp_path):
    # Build from a copy of what the package is made of, so the checkout gets no build/ or egg-info.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "specbasis", src / "specbasis", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The user's own environment, without this one's venv leaking in.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", src],
                             capture_output=True, text=True, timeout=3600, env=env)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    out = subprocess.run([python, "-c", CHECK, tmp_path / "adapter.safetensors"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "spectral adapter OK" in out.stdout
    print(out.stdout)
