"""metrics.json of a finetuned model, written and read by one typed record (`FinetuneMetrics`); beside it, its
test predictions (test_predictions.csv: `write_predictions`, `read_predictions`).

specbasis.training.finetune writes it; table1, table5, fig5 (specbasis.analysis.peft), fig18's accuracies
(specbasis.analysis.generalization) and the intervention sweep's split check read it, through this class
alone. Torch-free. The file's keys and their order are the record's fields; fields that only some runs have
are left out of the file where they do not apply (the five accuracies of a regression run, max_length of an
image model or image_size of a text model, prefix_cache of a run without one, inference of a run from before it), so a file reads back as it was
written.

    family, base_dir, modality, task_type ("classification" | "regression"), task (GLUE's or None), classes,
    num_classes, [test_accuracy, val_accuracy, step0_test_accuracy, chance_accuracy, majority_accuracy],
    test_metric / val_metric / step0_test_metric ({"name", "value"}; value None where undefined),
    test_scores, val_scores, loss_curve, val_curve, steps, batch_size, lr, weight_decay, warmup_frac,
    warmup_steps, grad_clip, eval_every, [max_length | image_size], seed, device, threads, sizes, full_sizes,
    seconds_train, cpu_seconds_train, method (the method's flat spec), targets, trainable_parameters,
    parameter_counts (trainable, adapter, head, base), adapter_config, seconds_prepare, step_seconds_mean,
    step_seconds_median, step_seconds_first, peak_memory, versions, test_logits_head, [prefix_cache],
    adapter_files, reload_max_abs_diff, seconds, [inference] ({mergeable, forward_ratio: the forward's time against
    the base model's, 1 for a merged adapter; timed ones add forward_seconds_adapted/_base, batch, reps, device}),
    [validation_only] (true: the test split was withheld, `test` scores are the validation split's)
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE = "metrics.json"
PREDICTIONS_FILE = "test_predictions.csv"  # beside it: example, label, prediction of every test example
CLASSIFICATION_ONLY = ("test_accuracy", "val_accuracy", "step0_test_accuracy", "chance_accuracy",
                       "majority_accuracy")


@dataclass(kw_only=True)
class FinetuneMetrics:
    family: str
    base_dir: str
    modality: str                       # text | image
    task_type: str                      # classification | regression
    task: str | None
    classes: list
    num_classes: int
    test_accuracy: float | None = None  # classification runs only (the five accuracies)
    val_accuracy: float | None = None
    step0_test_accuracy: float | None = None
    chance_accuracy: float | None = None
    majority_accuracy: float | None = None
    test_metric: dict
    val_metric: dict
    step0_test_metric: dict | None
    test_scores: dict
    val_scores: dict
    loss_curve: list
    val_curve: list
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float
    warmup_steps: int
    grad_clip: float
    eval_every: int
    max_length: int | None = None       # text models
    image_size: int | None = None       # image models
    seed: int
    device: str
    threads: int
    sizes: dict
    full_sizes: dict
    seconds_train: float
    cpu_seconds_train: float
    method: dict
    targets: dict
    trainable_parameters: int
    parameter_counts: dict
    adapter_config: dict
    seconds_prepare: float
    step_seconds_mean: float
    step_seconds_median: float
    step_seconds_first: float
    peak_memory: dict
    versions: dict
    test_logits_head: list = field(default_factory=list)
    prefix_cache: dict | None = None    # runs from a prefix cache only
    adapter_files: list = field(default_factory=list)
    reload_max_abs_diff: float | None = None
    seconds: float | None = None
    inference: dict | None = None       # {mergeable, forward_ratio, ...}: runs since the bottleneck adapters
    validation_only: bool = False       # the test split withheld: "test" is the validation split (lr selection)
    resumed_after_steps: list = field(default_factory=list)  # a run stopped and resumed: after these steps

    def applies(self, name: str) -> bool:
        """Whether the field belongs in this run's file."""
        if name in CLASSIFICATION_ONLY:
            return self.task_type == "classification"
        if name == "max_length":
            return self.modality == "text"
        if name == "image_size":
            return self.modality != "text"
        if name in ("prefix_cache", "inference"):
            return getattr(self, name) is not None
        if name == "validation_only":
            return self.validation_only
        if name == "resumed_after_steps":
            return bool(self.resumed_after_steps)
        return True

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if self.applies(f.name)}

    @classmethod
    def from_dict(cls, data: dict, where: str = "metrics") -> "FinetuneMetrics":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}: not a specbasis finetune's metrics")
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data
                         and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
        return cls(**data)

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> "FinetuneMetrics":
        """From a model folder (results/models/<model>) or its metrics.json."""
        path = Path(path)
        path = path / FILE if path.is_dir() else path
        return cls.from_dict(json.loads(path.read_text()), str(path))

    @property
    def score(self) -> float | None:
        """The main metric on test (accuracy, or GLUE's metric of the task); None where undefined."""
        return self.test_metric["value"]

    @property
    def trained_every_parameter(self) -> bool:
        """Full finetuning: every parameter of the model trained."""
        return self.parameter_counts["trainable"] == self.parameter_counts["base"]


def write_predictions(folder: str | Path, labels, predictions) -> Path:
    """The run's test predictions (class labels, or the one output of a regression head) beside its metrics, in
    the order of the test split: what paired comparisons of two runs read (specbasis.analysis.paired)."""
    import pandas as pd

    path = Path(folder) / PREDICTIONS_FILE
    pd.DataFrame({"example": range(len(labels)), "label": labels, "prediction": predictions}).to_csv(path, index=False)
    return path


def read_predictions(folder: str | Path) -> "pd.DataFrame":
    """example, label, prediction of a model folder's test predictions (write_predictions)."""
    import pandas as pd

    path = Path(folder) / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no test predictions (runs from before they were saved have none); "
                                f"rerun the finetune")
    return pd.read_csv(path)
