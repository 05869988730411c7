"""The own-pairs path as a new user walks it: config/own-pairs.example.yaml, as shipped, on two tiny BERTs placed
at its two paths, runs `all` with nothing but `models:` and `pairs:` into its own folder results/mine/ (the config
file's name), beside the folder's default suite's results/ without touching it; a model needs no `task`."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tiny_suite import tiny_bert
from workflow_helpers import ROOT, job_stats, snakemake

pytestmark = pytest.mark.workflow

EXAMPLE = ROOT / "config/own-pairs.example.yaml"


def _finetuned_copy(src: Path, dest: Path) -> None:
    """src's BERT with every Linear weight moved a little (seeded): a stand-in for a finetune."""
    from transformers import BertModel

    model = BertModel.from_pretrained(src)
    rng = np.random.default_rng(0)
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.add_(torch.as_tensor(1e-4 * rng.standard_normal(module.weight.shape),
                                                   dtype=module.weight.dtype))
    model.save_pretrained(dest)
    for f in src.iterdir():
        if not (dest / f.name).exists():
            shutil.copy(f, dest / f.name)


def test_the_own_pairs_example_runs_as_written(tmp_path):
    config = yaml.safe_load(EXAMPLE.read_text())
    assert set(config) == {"models", "pairs"}
    assert "task" not in config["models"]["my-pretrained"]  # optional for a model that is only analysed
    sources = {name: Path(spec["source"].removeprefix("local:")) for name, spec in config["models"].items()}
    tiny_bert(tmp_path / sources["my-pretrained"])
    _finetuned_copy(tmp_path / sources["my-pretrained"], tmp_path / sources["my-finetuned"])
    shutil.copy(EXAMPLE, tmp_path / "mine.yaml")
    default_fig2 = tmp_path / "results/fig2.pdf"  # the default suite's, built earlier in this folder
    default_fig2.parent.mkdir()
    default_fig2.write_bytes(b"the default suite's fig2")

    plan = snakemake(tmp_path, "-n", "all", f"--configfile={tmp_path / 'mine.yaml'}")
    stats = job_stats(plan.stdout)
    assert "finetune" not in stats and "swap" not in stats and stats["fetch_model"] == 2, stats
    snakemake(tmp_path, "all", f"--configfile={tmp_path / 'mine.yaml'}")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["fig2.pdf", "mine"]
    assert default_fig2.read_bytes() == b"the default suite's fig2"
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["mine"]
    out = tmp_path / "results/mine"
    for name in ("fig2", "fig3", "fig6", "fig8", "fig11", "fig16", "fig19", "fig20"):  # as the example says
        assert (out / f"{name}.pdf").stat().st_size > 0, name
    assert len(pd.read_csv(out / "table4.csv"))
    table3 = pd.read_csv(out / "table3.csv", keep_default_na=False)
    assert table3["pair"].tolist() == ["mine"] and table3["task"].tolist() == ["my task"]
    assert table3["top10_cos"].iloc[0] > 0.9  # a perturbation of 0.5% of the weights keeps the top vectors
    alignment = pd.read_csv(out / "alignment/mine.csv")
    assert set(alignment["kind"]) == {"attn_q", "attn_k", "attn_v", "attn_o", "ffn_in", "ffn_out"}
    assert alignment["cos"].between(0, 1 + 1e-9).all() and set(alignment["layer"]) == {0, 1}
