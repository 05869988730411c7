"""Tidy tables: the columns every analysis shares, and atomic CSV output.

Every analysis table has one row per observation and starts with the columns that name the
matrix: `pair` (or `model`), `layer` and `kind`, taken from the canonical matrix id:
    '03.ffn_in'      -> layer 3,        kind 'ffn_in'
    'dec.01.xattn_q' -> layer 'dec.01', kind 'xattn_q'   (encoder-decoder stacks keep their prefix)
    '02.ffn_in.1'    -> layer 2,        kind 'ffn_in.1'  (MobileBERT's stacked FFNs keep their index)
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from specbasis.io.namemaps import parse_id
from specbasis.io.provenance import provenance as provenance_record
from specbasis.io.store import atomic_path

log = logging.getLogger(__name__)


def id_columns(key: str) -> dict:
    """{'layer': ..., 'kind': ...} of a canonical matrix id (see the module docstring)."""
    parts = parse_id(key)
    layer = f"{parts['stack']}.{parts['layer']:02d}" if parts["stack"] else parts["layer"]
    kind = parts["kind"] if parts["index"] is None else f"{parts['kind']}.{parts['index']}"
    return {"layer": layer, "kind": kind}


def split_ids(pretrained: Iterable[str], finetuned: Iterable[str]) -> tuple[list[str], list[str]]:
    """The matrix ids in both models, and those in only one (each sorted)."""
    pt, ft = set(pretrained), set(finetuned)
    return sorted(pt & ft), sorted(pt ^ ft)


def warn_one_sided(pair: str, only: Iterable[str], pretrained: Iterable[str]) -> None:
    """Log each id of `only` as skipped, saying which model of the pair has it."""
    pretrained = set(pretrained)
    for key in only:
        log.warning("%s: matrix %s is in only one model (%s); skipped", pair, key,
                    "pretrained" if key in pretrained else "finetuned")


def base_kind(kind: pd.Series) -> pd.Series:
    """'ffn_in.1' -> 'ffn_in': the kind without a repeated-FFN index."""
    return kind.astype(str).str.split(".").str[0]


def layer_order(layer) -> tuple[int, int]:
    """Sort key of a layer label, input to output: 3 -> (0, 3), 'enc.03' -> (1, 3), 'dec.01' -> (2, 1)."""
    stack, _, number = str(layer).rpartition(".")
    return ("", "enc", "dec").index(stack), int(number)


def last_layer(table: pd.DataFrame, by: str = "pair") -> pd.DataFrame:
    """Rows of the last block of each `by` group: the highest layer number (of the last stack,
    'dec' after 'enc', for encoder-decoder models)."""
    keep = table.groupby(by, sort=False)["layer"].transform(
        lambda s: s.map(layer_order) == max(s.map(layer_order)))
    return table[keep.astype(bool)]


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table to CSV atomically (no index column)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def read_csvs(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate the CSVs of several pairs (or models) into one table."""
    frames = [pd.read_csv(p) for p in paths]
    if not frames:
        raise ValueError("no tables to read")
    return pd.concat(frames, ignore_index=True)


def to_markdown(table: pd.DataFrame) -> str:
    """A markdown table, numbers to 4 significant digits."""
    filled = table.astype(object).where(table.notna(), None)  # tabulate writes missingval for None, not NaN
    return filled.to_markdown(index=False, floatfmt=".4g", missingval="—") + "\n"


def to_latex(table: pd.DataFrame) -> str:
    """A LaTeX tabular (booktabs), numbers to 4 significant digits, text escaped."""
    text = table.to_latex(index=False, float_format="{:.4g}".format, escape=True, na_rep="--")
    return text.replace("Δ", r"$\Delta$")


def provenance_path(csv: str | os.PathLike) -> Path:
    """Where write_table records what made a table, beside its CSV: table1.csv -> table1.provenance.json."""
    return Path(csv).with_suffix(".provenance.json")


def write_table(table: pd.DataFrame, csv: str | os.PathLike, md: str | os.PathLike, tex: str | os.PathLike,
                display: pd.DataFrame | None = None, provenance: dict | None = None) -> None:
    """A results table as CSV, markdown and LaTeX, each written atomically; `display`: a compact form of it for the
    markdown and LaTeX (the CSV keeps every column). `provenance`: the suite's record (the workflow's PROVENANCE):
    with the specbasis commit it is written to `provenance_path(csv)` and as a last comment line of the markdown and
    the LaTeX."""
    record = provenance_record(provenance) if provenance is not None else None
    write_csv(table, csv)
    shown = table if display is None else display
    md_text, tex_text = to_markdown(shown), to_latex(shown)
    if record is not None:
        line = json.dumps(record, sort_keys=True)
        md_text += f"\n<!-- specbasis provenance: {line} -->\n"
        tex_text += f"% specbasis provenance: {line}\n"
    for path, text in ((md, md_text), (tex, tex_text)):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    if record is not None:
        with atomic_path(provenance_path(csv)) as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
