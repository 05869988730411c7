"""Figures: pure functions from tidy tables to matplotlib figures, one module per analysis family
(alignment, spectra, cumgrad, generalization). One seaborn call per panel; the scripts in
workflow/scripts apply the shared style file and save PDF and PNG with `save`, which embeds what made the figure
(specbasis.io.provenance: the suite's config and its sha256, the specbasis commit) in the file's metadata.
"""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from specbasis.io.provenance import provenance as provenance_record  # noqa: E402
from specbasis.io.store import atomic_path  # noqa: E402
from specbasis.io.tables import base_kind  # noqa: E402

FFN_KINDS = ("ffn_in", "ffn_out")
RANK_EDGES = (10, 50, 100, 200, 500, 1000)  # upper edges of the rank buckets of panel C


def rank_bucket(rank: pd.Series) -> pd.Series:
    """Label each rank with its bucket: 1-10, 11-50, 51-100, ... up to the largest rank present."""
    top = int(rank.max())
    edges = [0] + [e for e in RANK_EDGES if e < top] + [top]
    labels = [f"{lo + 1}-{hi}" for lo, hi in zip(edges[:-1], edges[1:])]
    return pd.cut(rank, bins=edges, labels=labels)


def ffn_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of FFN matrices (any index of a repeated FFN)."""
    return table[base_kind(table["kind"]).isin(FFN_KINDS)]


def provenance_metadata(record: dict, fmt: str) -> dict | None:
    """savefig's `metadata` that embeds a provenance record in a file of format `fmt`: a PDF's Info dictionary
    (Subject: the record as one line of JSON; Creator: specbasis and its commit), a PNG's text chunk 'specbasis';
    None for any other format."""
    text = json.dumps(record, sort_keys=True)
    if fmt == "pdf":
        return {"Subject": text, "Creator": f"specbasis {record['specbasis_commit']}"}
    if fmt == "png":
        return {"specbasis": text}
    return None


def save(fig: plt.Figure, *paths, provenance: dict | None = None) -> None:
    """Save a figure to each path atomically (format from the suffix). `provenance`: the suite's record (the
    workflow's PROVENANCE), embedded with the specbasis commit in each PDF and PNG (`provenance_metadata`)."""
    record = provenance_record(provenance) if provenance is not None else None
    for path in paths:
        fmt = str(path).rsplit(".", 1)[-1]
        metadata = provenance_metadata(record, fmt) if record is not None else None
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=metadata)
    plt.close(fig)


def note(ax: plt.Axes, text: str) -> None:
    """A panel that says, in words, why it has nothing to plot."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def page_note(text: str) -> plt.Figure:
    """A one-panel figure that says why a figure has nothing to plot."""
    fig, ax = plt.subplots(figsize=(7, 2.5), layout="constrained")
    note(ax, text)
    return fig


def grid(n: int, width: float = 4.2, height: float = 3.4) -> tuple[plt.Figure, list[plt.Axes]]:
    """n panels, up to 4 a row; the unused cells of the last row hidden."""
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]
