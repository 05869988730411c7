"""How one table1 run moved its pretrained basis -> results/peft/basis/{run}.csv (specbasis.analysis.intruders.basis_rows):
per matrix it changed, the relative change, the top vectors' alignment and the intruder dimensions at every ε.

input.pretrained / input.svd: the base model's weights and SVD store; input.finetuned: the run's weights;
params.top; output[0]; log[0].
"""
import logging
from pathlib import Path

from specbasis.analysis.intruders import basis_rows
from specbasis.io.extract import read_weights
from specbasis.io.tables import write_csv
from specbasis.logs import setup_logging
from specbasis.svd import read_svd


def main(pretrained: str, svd: str, finetuned: str, top: int, out: str) -> None:
    model = Path(finetuned).stem
    table = basis_rows(model, read_weights(Path(pretrained)), read_svd(svd), read_weights(Path(finetuned)), top=top)
    logging.getLogger("specbasis").info("%s: %d matrices changed; intruders at ε = 0.5: %d; mean alignment %.4f",
                                        model, len(table), int(table["intruders_0.5"].sum()) if len(table) else 0,
                                        table[["alignment_u", "alignment_v"]].to_numpy().mean() if len(table) else 1.0)
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.pretrained, snakemake.input.svd, snakemake.input.finetuned, snakemake.params.top,  # noqa: F821
         snakemake.output[0])  # noqa: F821
