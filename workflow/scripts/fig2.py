"""Figure 2: alignment of pretrained and finetuned singular vectors (FFN matrices)."""
import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.alignment import fig2
from specbasis.logs import setup_logging


def main(tables: list[str], style: str, pdf: str, png: str) -> None:
    plt.style.use(style)
    table = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True)
    save(fig2(table), pdf, png)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.style, snakemake.output.pdf, snakemake.output.png)  # noqa: F821
