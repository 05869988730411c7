"""A complete metrics.json record (specbasis.io.metrics.FinetuneMetrics) with chosen fields, for tests of its
readers."""
from specbasis.io.metrics import FinetuneMetrics


def fake_metrics(**fields) -> FinetuneMetrics:
    base = dict(family="bert", base_dir="results/models/base", modality="text", task_type="classification", task=None,
                classes=["a", "b"], num_classes=2, test_accuracy=0.5, val_accuracy=0.5, step0_test_accuracy=None,
                chance_accuracy=0.5, majority_accuracy=0.5, test_metric={"name": "accuracy", "value": 0.5},
                val_metric={"name": "accuracy", "value": 0.5}, step0_test_metric=None,
                test_scores={"accuracy": 0.5}, val_scores={"accuracy": 0.5}, loss_curve=[[1, 0.7]],
                val_curve=[[1, 0.5]], steps=1, batch_size=8, lr=1e-3, weight_decay=0.0, warmup_frac=0.0,
                warmup_steps=0, grad_clip=1.0, eval_every=1, max_length=16, seed=0, device="cpu", threads=1,
                sizes={"train": 8, "val": 4, "test": 4}, full_sizes={"train": 8, "val": 4, "test": 4},
                seconds_train=1.0, cpu_seconds_train=1.0, method={"method": "full"}, targets={},
                trainable_parameters=1000, parameter_counts={"trainable": 1000, "adapter": 900, "head": 100,
                                                             "base": 1000},
                adapter_config={}, seconds_prepare=0.0, step_seconds_mean=0.1, step_seconds_median=0.1,
                step_seconds_first=0.1, peak_memory={"device": "cpu", "measure": "-", "peak_bytes": 2 ** 20,
                                                     "peak_above_step_start_bytes": 2 ** 20},
                versions={}, seconds=10.0)
    if "test_accuracy" in fields and "test_metric" not in fields:
        fields["test_metric"] = {"name": "accuracy", "value": fields["test_accuracy"]}
    return FinetuneMetrics(**{**base, **fields})
