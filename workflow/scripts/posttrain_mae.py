"""Post-train one scale's best MAE checkpoint (classify, reconstruct or classify_shuffled), tracking |cos| of
its singular vectors to the pretrained ones -> results/dynamics/posttrain/{scale}-{mode}.csv (+ .curve.csv)
and results/models/mae-{scale}-{mode}/.

input.checkpoint: results/models/mae-{scale}; input.data: the post-training dataset folder.
params.settings: dynamics_posttrain_settings (common.smk); params.mode.
"""
from specbasis.dynamics.stage import posttrain_scale
from specbasis.logs import setup_logging


def main(checkpoint: str, data: str, settings: dict, mode: str, table: str, curve: str, model: str,
         threads: int) -> None:
    posttrain_scale(checkpoint, data, settings, mode, table, curve, model, threads=threads)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.checkpoint, snakemake.input.data, dict(snakemake.params.settings),  # noqa: F821
         snakemake.params.mode, snakemake.output.table, snakemake.output.curve, snakemake.output.model,  # noqa: F821
         snakemake.threads)  # noqa: F821
