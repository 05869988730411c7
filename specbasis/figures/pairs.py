"""Tables 2 and 3: the model pairs (vision, language) with the accuracy the paper reports for the
finetuned model and, where this workflow finetuned it, the accuracy it measured, side by side;
plus how aligned each pair stayed (mean matched |cos| of the top-10 FFN singular vectors).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from specbasis.figures import ffn_rows

COLUMNS = ["pair", "pretrained", "finetuned", "task", "reported_accuracy", "measured_accuracy", "top10_cos"]


def source_of(spec: Mapping) -> str:
    """Where a model comes from: its source, or '<base> finetuned on <dataset>' for a workflow finetune."""
    if "source" in spec:
        return str(spec["source"])
    return f"{spec['finetune']['from']} finetuned on {spec['finetune']['dataset']}"


def pair_table(pairs: Mapping[str, Mapping], models: Mapping[str, Mapping], measured: Mapping[str, float],
               alignment: pd.DataFrame) -> pd.DataFrame:
    """One row per pair: the two models' sources, the task, the reported accuracy (config `accuracy`
    of the finetuned model; empty when the config has none), the measured accuracy (metrics.json of a
    workflow finetune; empty otherwise) and the mean top-10 matched |cos| of its FFN matrices."""
    top = ffn_rows(alignment)
    top10 = top[top["rank"] <= 10].groupby("pair")["cos"].mean()
    rows = []
    for pair, spec in pairs.items():
        ft = models[spec["finetuned"]]
        rows.append({"pair": pair, "pretrained": source_of(models[spec["pretrained"]]), "finetuned": source_of(ft),
                     "task": ft.get("task", ""), "reported_accuracy": ft.get("accuracy", np.nan),
                     "measured_accuracy": measured.get(spec["finetuned"], np.nan),
                     "top10_cos": top10.get(pair, np.nan)})
    return pd.DataFrame(rows, columns=COLUMNS).astype({"reported_accuracy": float, "measured_accuracy": float})
