"""Figure 7 (Appendix C): alignment of the EEG and fMRI pairs (LaBraM; BrainLM, Brain-JEPA), by
rank and by layer, one column per modality. With no such pair the page says so.

input.tables: results/alignment/{pair}.csv of the EEG and fMRI pairs (may be none); input.style.
params.modality: {pair: 'vision' | 'language' | 'eeg' | 'fmri'}. params.provenance: the suite's record, embedded
with the specbasis commit in the PDF and PNG.
output.pdf, output.png.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.analysis.alignment import COLUMNS
from specbasis.figures import save
from specbasis.figures.alignment import fig7
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(tables: list[str], style: str, modality: dict, pdf: str, png: str, provenance: dict | None = None) -> None:
    plt.style.use(style)
    table = read_csvs(tables) if tables else pd.DataFrame(columns=COLUMNS)
    logging.getLogger("specbasis").info("EEG/fMRI pairs: %s", sorted(set(table["pair"])) or "none in this suite")
    save(fig7(table, dict(modality)), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(list(snakemake.input.tables), snakemake.input.style, snakemake.params.modality,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png, provenance=dict(snakemake.params.provenance))  # noqa: F821
