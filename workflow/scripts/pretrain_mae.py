"""Pretrain the dynamics MAE on one scale -> results/dynamics/pretrain/{scale}/ and results/models/mae-{scale}/.

input.data: the pretraining dataset folder. params.settings: dynamics_pretrain_settings (common.smk);
params.work_dir: the resumable state (kept beside the outputs, never an output: Snakemake would delete it
before a rerun). output.run, output.model.
"""
from specbasis.dynamics.stage import pretrain_scale
from specbasis.logs import setup_logging


def main(data: str, settings: dict, work_dir: str, run: str, model: str, threads: int) -> None:
    pretrain_scale(data, settings, run, model, work_dir, threads=threads)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.data, dict(snakemake.params.settings), snakemake.params.work_dir,  # noqa: F821
         snakemake.output.run, snakemake.output.model, snakemake.threads)  # noqa: F821
