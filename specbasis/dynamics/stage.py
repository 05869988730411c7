"""The workflow's pretraining-dynamics jobs, one function per rule (scripts in workflow/scripts call them).

    pretrain_scale(data_dir, settings, run_dir, model_dir, work_dir)  pretrain on the scale's nested subset:
        run_dir = specbasis.dynamics.train.pretrain's out_dir (best/, final/, snapshots.h5, curves.csv, metrics.json);
        model_dir = a copy of best/ + metrics.json: results/models/mae-<scale>, a model like any other
    posttrain_scale(checkpoint, data_dir, settings, mode, table, curve, model_dir)  one post-training run:
        table = |cos| to the checkpoint's vectors over the steps (dynamics.POST_COLUMNS + scale);
        model_dir = the post-trained model (see `save_posttrained`)

`settings` is the dict common.smk builds from the config's `dynamics:` section (dynamics_pretrain_settings,
dynamics_posttrain_settings): formats, sizes, TrainSettings fields, seed, device.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from specbasis.dynamics.train import is_shuffled, posttrain, pretrain, shuffled_labels
from specbasis.dynamics.data import NORMALISATION, first, last, load_images, nested_subset
from specbasis.io.store import atomic_dir, atomic_path

log = logging.getLogger(__name__)


def pretrain_scale(data_dir, settings: dict, run_dir, model_dir, work_dir, *, threads: int = 1,
                   progress: bool = True) -> dict:
    sets = load_images(settings["format"], Path(data_dir))
    if sets.train is None:
        raise ValueError(f"{data_dir}: format {settings['format']} has no training images to pretrain on")
    train_x, _ = sets.train
    idx = nested_subset(len(train_x), settings["scale"], settings["seed"])
    val_x, _ = last(sets.test, settings["val_images"], "validation (dynamics.val_images)")
    mean, std = NORMALISATION[settings["format"]]
    metrics = pretrain(train_x[idx], val_x, settings["spec"], settings["train"], work_dir=work_dir, out_dir=run_dir,
                       seed=settings["seed"], analysed=settings["analysed"], mean=mean, std=std,
                       device=settings["device"], threads=threads, progress=progress)
    metrics = {**metrics, "normalisation": {"mean": mean, "std": std}, "data_format": settings["format"]}
    with atomic_dir(model_dir) as tmp:
        for f in (Path(run_dir) / "best").iterdir():
            shutil.copy2(f, tmp / f.name)
        (tmp / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "curves"}, indent=2)
                                          + "\n")
    log.info("scale %d: %.0f images/s, best epoch %d (val loss %.5f) -> %s", settings["scale"],
             metrics["images_per_s"] or 0, metrics["best_epoch"], metrics["best_val_loss"], model_dir)
    return metrics


def save_posttrained(model, folder, metrics: dict) -> None:
    """A post-trained model as a save_pretrained folder (family vit_mae): reconstruct saves the whole
    ViTMAEForPreTraining; classify saves the encoder (ViTMAEModel, mask_ratio 0) and its linear head
    beside it in head.safetensors (extract reads model.safetensors)."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        if hasattr(model, "head"):
            model.encoder.save_pretrained(tmp)
            save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, tmp / "head.safetensors")
        else:
            model.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def posttrain_scale(checkpoint, data_dir, settings: dict, mode: str, table, curve, model_dir, *,
                    threads: int = 1, progress: bool = True) -> dict:
    sets = load_images(settings["format"], Path(data_dir))
    images, labels = first(sets.test, settings["images"], f"post-training {mode} (dynamics images)")
    mean, std = NORMALISATION[settings["pretrain_format"]]
    result = posttrain(checkpoint, mode, images, None if mode == "reconstruct" else labels, settings["train"],
                       seed=settings["seed"], analysed=settings["analysed"], track_every=settings["track_every"],
                       max_rank=settings["max_rank"], num_classes=int(labels.max()) + 1, mean=mean, std=std,
                       device=settings["device"], threads=threads, progress=progress)
    table_df = result.alignment.assign(scale=settings["scale"])
    curve_df = result.curve.assign(scale=settings["scale"], mode=mode)
    used = shuffled_labels(labels, settings["seed"]) if is_shuffled(mode) else labels
    last_step = table_df[table_df["step"] == table_df["step"].max()]
    metrics = {"mode": mode, "scale": settings["scale"], "images": len(images), "settings": settings["train"],
               "final_loss": float(curve_df["loss"].iloc[-1]), "steps": int(curve_df["step"].iloc[-1]),
               "labels_changed": float(np.mean(used != labels)) if mode != "reconstruct" else None,
               "final_top_cos": float(last_step[last_step["rank"] <= settings["top"]]["cos"].mean())}
    if result.train_accuracy is not None:
        metrics["train_accuracy"] = result.train_accuracy  # after the last step, every image (eval mode)
        table_df = table_df.assign(train_accuracy=result.train_accuracy)  # fig9 reports it
    if "accuracy" in curve_df:
        metrics["final_epoch_train_accuracy"] = float(curve_df[curve_df["epoch"] > curve_df["epoch"].max() - 1]
                                                      ["accuracy"].mean())
    for df, path in ((table_df, table), (curve_df, curve)):
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    save_posttrained(result.model, model_dir, metrics)
    log.info("scale %d %s: final loss %.4f, mean |cos| of the top %d vectors %.4f", settings["scale"], mode,
             metrics["final_loss"], settings["top"], metrics["final_top_cos"])
    return metrics
