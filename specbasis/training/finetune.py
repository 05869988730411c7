"""Finetuning of a prepared pretrained model on a labelled data set: the finetuned half of a pair.

One loop for every method of specbasis.methods (`method`: full by default, every weight trains; or
bitfit, spectral, lora, dora, pissa, adalora, psoft): the method decides what trains, the loop trains it
the same way: AdamW, linear warm-up then linear decay to 0, gradient-norm clipping, cross-entropy (for a
regression task, STS-B, the mean squared error of the one output against the float target; plus
AdaLoRA's orthogonality penalty, which the loss curve leaves out). Weight decay applies to matrices and
conv kernels only (not to biases and norm scales), as is usual for both BERT and EfficientNet finetuning.
Everything is seeded (python, numpy, torch, the batch order), so a rerun on CPU gives the same loss curve.

The output folder is written atomically (a temporary folder beside it, renamed at the end) and holds
the model in its library's own format (an adapter merged into the weights, its own files in adapter/:
Adapted.save; a method that cannot merge, the bottleneck adapters, leaves the weights as they were and its
adapter in adapter/, loaded with methods.apply.load_trained), `preprocess.json` (how inputs were made) and
`metrics.json`, and `test_predictions.csv` (every test example's label and prediction, for paired
comparisons of runs). Before the rename the saved model is loaded back and must reproduce the trained (unmerged)
model's logits. `inference` records the forward's cost against the base model's (1 for a merged adapter;
timed for one that cannot merge: inference_cost).

metrics.json records, for every method, the trainable parameters, the mean seconds per optimizer step
(forward, backward, clipping, optimizer and scheduler step, AdaLoRA's allocator; on CUDA synchronised
before each reading; tokenisation and evaluation left out; nothing reused across steps) and the peak
memory of the training steps (`peak_memory`, which says how it was measured: CPU, the peak resident set
above the resident set before the step, from the kernel's high-water mark reset before each step; CUDA,
torch.cuda.max_memory_allocated, reset before each step).

The score of a model is its task's metric (specbasis.glue_metrics: GLUE's for a GLUE task, e.g. CoLA's
Matthews correlation, STS-B's Pearson; accuracy for every other data set). metrics.json holds, for every
run: `task_type` ("classification" | "regression"), `task` (the GLUE task or null), `test_metric` and
`val_metric` ({"name", "value"}: the main metric), `test_scores` / `val_scores` (every metric of the task,
main first), `step0_test_metric` (null without eval_step0), and `val_curve` ([step, main metric] pairs).
Classification runs also keep `test_accuracy`, `val_accuracy`, `step0_test_accuracy`, `chance_accuracy`
and `majority_accuracy` (for a data set that is not GLUE, test_metric's value is test_accuracy);
regression runs have none of these five keys (no classes: an accuracy means nothing) and record `classes`
[] and `num_classes` 1 (the one output). A metric that is undefined (a correlation of constant
predictions) is null.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from specbasis import glue_metrics
from specbasis.evaluate import predict_logits, predictions, scores, select, to_device

from specbasis.methods import parse as parse_method
from specbasis.methods.apply import load_trained, prepare
from specbasis.data import Splits
from specbasis.models import (PREPROCESS_FILE, REGRESSION_LABEL, load_classifier, logits_of, save_weights,
                              timm_config)
from specbasis.io.metrics import FinetuneMetrics, write_predictions
from specbasis.io.store import atomic_dir
from specbasis.training.loop import (Optimization, StepMemory, batch_order, clock, progress, seed_everything,
                                     setup_torch)
from specbasis.training.resume import Checkpoints, StopRequest, rng_state, set_rng_state, stop_on_sigterm
from specbasis.training.settings import FinetuneSettings

log = logging.getLogger(__name__)

RELOAD_ATOL = 1e-4  # saved-and-reloaded logits must match the trained model's to this
N_LOGITS_RECORDED = 8  # test examples whose final logits go into metrics.json (a reload check for anyone)


def task_loss(logits: torch.Tensor, target: torch.Tensor, task_type: str) -> torch.Tensor:
    """Cross-entropy of (N, C) logits against int labels; for regression, the mean squared error of the
    one output against the float targets."""
    if task_type == "regression":
        return F.mse_loss(logits.squeeze(1), target.to(logits.dtype))  # (N, 1) -> (N,)
    return F.cross_entropy(logits, target)


def _metric(name: str, value: float | None) -> dict:
    """{"name", "value"}, an undefined (NaN) value as None: metrics.json stays strict JSON."""
    return {"name": name, "value": _finite(value)}


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def save_finetuned(model, preprocess, splits: Splits, base_dir: Path, out: Path) -> None:
    """The finetuned model in its library's own format, plus preprocess.json. A regression model's one
    output is named models.REGRESSION_LABEL in id2label, and transformers' problem_type says regression."""
    if splits.modality == "text":
        names = list(splits.classes) if splits.task_type == "classification" else [REGRESSION_LABEL]
        model.config.id2label = dict(enumerate(names))
        model.config.label2id = {c: i for i, c in enumerate(names)}
        if splits.task_type == "regression":
            model.config.problem_type = "regression"
        model.save_pretrained(out)  # model.safetensors + config.json, transformers names
        preprocess.tokenizer.save_pretrained(out)
    else:
        base = json.loads((Path(base_dir) / "config.json").read_text())
        extra = {k: v for k, v in base.items()
                 if k not in ("library", "architecture", "num_classes", "num_features", "pretrained_cfg",
                              "label_names")}
        config = timm_config(model, base["architecture"], **extra)
        config["pretrained_cfg"] = {**base.get("pretrained_cfg", {}), **config["pretrained_cfg"]}
        config["label_names"] = list(splits.classes)
        save_weights(model.state_dict(), out / "model.safetensors")  # timm names
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / PREPROCESS_FILE).write_text(json.dumps(preprocess.describe(), indent=2) + "\n")


def finetune(base_dir: Path, family: str, splits: Splits, out_dir: Path, settings: FinetuneSettings | None = None, *,
             method=None, prefix_cache=None, spectral_factors=None, work_dir: Path | None = None,
             checkpoint_every: int | None = None, checkpoint_seconds: float | None = None, **keywords) -> dict:
    """Finetune the model in base_dir on `splits` by `method`; write out_dir; return the metrics.

    settings: a FinetuneSettings, or its fields as keywords (steps, batch_size, lr, ...; specbasis.training.settings).
    method: a specbasis.methods.Method or its spec (None or "full": every weight trains, today's finetuning); it is
    checked before the model is loaded and applied (methods.apply.prepare) before the first step; the saved
    model has the adapter merged in (Adapted.merge), its own files in adapter/ (Adapted.save).
    max_length applies to text models, image_size to image models. The task's metric (accuracy, or
    GLUE's for splits.task: module docstring) is measured on val every `eval_every` steps and at the end;
    on test at the end (and at step 0, pretrained backbone with a fresh head, when eval_step0).
    splits.task_type picks the head and the loss: classification (cross-entropy over num_classes
    outputs) or regression (MSE of one output). The splits are used as given: cap them in load_splits.
    spectral_factors: for a method that reads the SVD store, precomputed SVDs of the pretrained weights by matrix
    id (e.g. specbasis.svd.StoredSVDs of the workflow's results/svd store; methods.apply.prepare).
    prefix_cache: a specbasis.training.prefix_cache.PrefixCache of the texts' hidden states before block `start`
    (built from the same base model and tokenisation): training and evaluation run blocks start.. only (the method
    must train nothing before them; dropout is off in the cached blocks); the saved model is the whole model,
    and its test logits must match the cached run's (metrics.json `prefix_cache`).
    work_dir: where the run keeps its resumable state (specbasis.training.resume; None: not resumable), every
    `checkpoint_every` steps or `checkpoint_seconds` of training (default: every 10 minutes) and on SIGTERM; run
    again with the same arguments, it goes on after the last saved step and ends as an unstopped run would (bit for
    bit on CPU with the same threads). metrics.json `resumed_after_steps` lists where it was resumed; work_dir is
    removed once out_dir is written.
    """
    t_start = time.perf_counter()
    s = (settings or FinetuneSettings.from_mapping(keywords)).for_train_split(len(splits.train))
    if settings is not None and keywords:
        raise TypeError(f"finetune: give settings or their keywords, not both ({', '.join(keywords)})")
    method = parse_method(method)  # a bad method fails before anything is loaded
    dev = setup_torch(s.device, s.threads)
    seed_everything(s.seed)  # before building the model: the fresh head's init is seeded too
    model, preprocess = load_classifier(base_dir, family, splits.num_classes, image_size=s.image_size,
                                        max_length=s.max_length)
    model.to(dev)
    t_prepare = time.perf_counter()
    adapted = prepare(model, method, family, total_steps=s.steps, factors=spectral_factors)  # full: the model as is
    seconds_prepare = time.perf_counter() - t_prepare
    model = adapted.model
    log.info("method %s: %d trainable parameters of %d (head %d)", method.name, adapted.counts["trainable"],
             adapted.counts["base"], adapted.counts["head"])
    log.info("finetune %s from %s on %s (%s): %s examples, device %s, %d threads", family, base_dir,
             splits.classes, splits.modality, splits.sizes(), dev, torch.get_num_threads())

    with contextlib.ExitStack() as cached:  # a prefix cache (fig5's sweeps): the model runs the blocks after it only
        run_preprocess = preprocess
        if prefix_cache is not None:
            _check_prefix_frozen(model, prefix_cache.start)
            run_preprocess = cached.enter_context(prefix_cache.attached(model, preprocess))
        step0 = scores(model, run_preprocess, splits, splits.test, dev, s.eval_batch_size) if s.eval_step0 else None
        checkpoints = None
        if work_dir is not None:
            fingerprint = {"base_dir": str(base_dir), "family": family, "settings": s, "method": method.to_dict(),
                           "splits": splits.sizes(), "task": splits.task, "classes": list(splits.classes),
                           "train_labels": hashlib.sha256(np.ascontiguousarray(splits.train.y).tobytes()).hexdigest(),
                           "prefix_cache": None if prefix_cache is None else prefix_cache.fingerprint}
            checkpoints = Checkpoints(work_dir, fingerprint, checkpoint_every,
                                      **({} if checkpoint_seconds is None else {"every_seconds": checkpoint_seconds}))
        run = train_steps(adapted, run_preprocess, splits, s, dev, desc=f"finetune {family}", checkpoints=checkpoints)
        result = evaluate_run(model, run_preprocess, splits, s, dev, step0)
        run.val_curve.append(result.final_val)
        metrics = {"family": family, "base_dir": str(base_dir), **result.record, **run.record(s, splits.modality),
                   "seed": s.seed, "device": str(dev), "threads": torch.get_num_threads(),
                   "sizes": splits.sizes(), "full_sizes": dict(splits.full_sizes), **run.timing(),
                   "method": method.to_dict(), "targets": adapted.targets,
                   "trainable_parameters": adapted.counts["trainable"], "parameter_counts": adapted.counts,
                   "adapter_config": adapted.config, "seconds_prepare": seconds_prepare, **run.step_timing(),
                   "versions": _versions(splits.modality, method.libraries),
                   **({"resumed_after_steps": run.resumed} if run.resumed else {}),
                   **({"validation_only": True} if splits.test_withheld else {})}
    metrics["inference"] = inference_cost(adapted, preprocess, splits, dev, s.eval_batch_size)
    model.cpu()  # the whole model again, for the checks and the save
    head = select(splits.test.x, np.arange(min(N_LOGITS_RECORDED, len(splits.test))))
    expected = predict_logits(model, preprocess, head, torch.device("cpu"))  # on CPU, like the reload
    metrics["test_logits_head"] = expected.tolist()  # first test examples: anyone can check a reload
    if prefix_cache is not None:  # the cached run's test logits against the whole model's
        diff = float((result.test_logits[:len(expected)] - expected).abs().max()) if len(expected) else 0.0
        if not diff <= RELOAD_ATOL:
            raise AssertionError(f"the prefix cache's logits differ from the whole model's by {diff:.3g}")
        metrics["prefix_cache"] = {"start": prefix_cache.start, "texts": len(prefix_cache),
                                   "fingerprint": prefix_cache.fingerprint, "max_abs_diff_vs_uncached": diff,
                                   "dropout": f"off in blocks 0..{prefix_cache.start - 1} (cached in eval mode)"}
    with atomic_dir(out_dir) as tmp:
        metrics["adapter_files"] = adapted.save(tmp)  # before the merge: [] for full
        model = adapted.merge()  # the adapter merged into the weights: a plain model
        save_finetuned(model, preprocess, splits, base_dir, tmp)
        write_predictions(tmp, splits.test.y, predictions(result.test_logits, splits.task_type))
        metrics["reload_max_abs_diff"] = _reload_check(tmp, family, splits.num_classes, head, expected)
        metrics["seconds"] = time.perf_counter() - t_start
        record = FinetuneMetrics.from_dict(metrics, "finetune")  # the one typed record of metrics.json
        record.write(tmp)
    if checkpoints is not None:
        checkpoints.clear()  # the run is written: nothing left to resume
    log.info("test %s %.4f (step 0: %s) in %.0f s -> %s", result.metric, result.test_scores[result.metric],
             None if step0 is None else step0[result.metric], record.seconds, out_dir)
    return record.to_dict()


@dataclass
class Run:
    """What the training steps recorded."""

    losses: list            # [step, task loss] (AdaLoRA's penalty left out)
    val_curve: list         # [step, val metric] every eval_every steps
    step_seconds: list      # per optimizer step: forward, backward, clipping, optimizer and schedule, after_step
    memory: StepMemory
    seconds_train: float
    cpu_seconds_train: float  # summed over threads; wall time is inflated by other load
    warmup_steps: int
    resumed: list = field(default_factory=list)  # steps after which it was resumed (training.resume)

    def record(self, s: FinetuneSettings, modality: str) -> dict:
        return {"loss_curve": self.losses, "val_curve": self.val_curve,
                "steps": s.steps, "batch_size": s.batch_size, "lr": s.lr, "weight_decay": s.weight_decay,
                "warmup_frac": s.warmup_frac, "warmup_steps": self.warmup_steps, "grad_clip": s.grad_clip,
                "eval_every": s.eval_every,
                **({"max_length": s.max_length} if modality == "text" else {"image_size": s.image_size})}

    def timing(self) -> dict:
        return {"seconds_train": self.seconds_train, "cpu_seconds_train": self.cpu_seconds_train}

    def step_timing(self) -> dict:
        return {"step_seconds_mean": float(np.mean(self.step_seconds)),
                "step_seconds_median": float(np.median(self.step_seconds)),
                "step_seconds_first": self.step_seconds[0], "peak_memory": self.memory.record()}


def train_steps(adapted, preprocess, splits: Splits, s: FinetuneSettings, dev: torch.device, desc: str,
                checkpoints: Checkpoints | None = None) -> Run:
    """The loop: s.steps optimizer steps over seeded batches of splits.train, the val metric every eval_every
    steps (the last step's is evaluate_run's); the method's hooks (loss_term, after_step) called, never its name.
    With checkpoints: resumed from their saved state (the batches before it drawn again and skipped), saved when
    due and on SIGTERM (then SystemExit 143)."""
    model = adapted.model
    metric = glue_metrics.metric_name(splits.task)
    opt = Optimization(model, lr=s.lr, weight_decay=s.weight_decay, total_steps=s.steps,
                       warmup_steps=s.warmup_steps, schedule="linear", grad_clip=s.grad_clip, device=dev)
    rng = np.random.default_rng(s.seed)
    losses, val_curve, step_seconds, resumed, done = [], [], [], [], 0
    memory = StepMemory(dev)
    before = {"seconds_train": 0.0, "cpu_seconds_train": 0.0}  # of the runs this one resumes
    state = checkpoints.load() if checkpoints is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimization"])
        adapted.load_training_state(state["adapted"])
        set_rng_state(state["rng"])
        losses, val_curve, step_seconds = state["losses"], state["val_curve"], state["step_seconds"]
        done, resumed, before = state["step"], state["resumed"] + [state["step"]], state["timing"]
        memory.peak, memory.peak_abs = state["memory"]
    t_train, cpu_train = time.perf_counter(), time.process_time()

    def save_state(step: int) -> None:
        checkpoints.save({"step": step, "model": model.state_dict(), "optimization": opt.state_dict(),
                          "adapted": adapted.training_state(), "rng": rng_state(), "losses": losses,
                          "val_curve": val_curve, "step_seconds": step_seconds, "resumed": resumed,
                          "memory": (memory.peak, memory.peak_abs),
                          "timing": {"seconds_train": before["seconds_train"] + time.perf_counter() - t_train,
                                     "cpu_seconds_train": before["cpu_seconds_train"] + time.process_time()
                                     - cpu_train}})

    watch = stop_on_sigterm() if checkpoints is not None else contextlib.nullcontext(StopRequest())
    bar = progress(batch_order(len(splits.train), s.steps, s.batch_size, rng), total=s.steps, desc=desc,
                   initial=done)
    with watch as stopping:
        for step, idx in enumerate(bar, start=1):
            if step <= done:  # trained before the state was saved: the batch drawn again (the order stays), skipped
                continue
            model.train()
            inputs = to_device(preprocess(select(splits.train.x, idx)), dev)
            target = torch.as_tensor(splits.train.y[idx], device=dev)
            memory.start()
            t_step = clock(dev)
            loss = task_loss(logits_of(model, inputs), target, splits.task_type)
            term = adapted.loss_term()  # AdaLoRA's orthogonality penalty; None for most methods
            opt.step(loss if term is None else loss + term, f"step {step}")
            adapted.after_step(step)  # AdaLoRA's budget allocator
            step_seconds.append(clock(dev) - t_step)
            memory.stop()
            losses.append([step, float(loss.item())])
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if step % s.eval_every == 0 and step < s.steps:
                value = scores(model, preprocess, splits, splits.val, dev, s.eval_batch_size)[metric]
                val_curve.append([step, _finite(value)])
                log.info("step %d: loss %.4f, val %s %.4f", step, loss.item(), metric, value)
            if checkpoints is not None and step < s.steps and (stopping.requested or checkpoints.due(step)):
                save_state(step)
                if stopping.requested:
                    bar.close()
                    raise SystemExit(128 + signal.SIGTERM)
    bar.close()
    return Run(losses, val_curve, step_seconds, memory, before["seconds_train"] + time.perf_counter() - t_train,
               before["cpu_seconds_train"] + time.process_time() - cpu_train, s.warmup_steps, resumed)


@dataclass
class Result:
    """The trained model's scores: the fields of metrics.json they fill, and the test logits."""

    metric: str
    test_scores: dict
    test_logits: torch.Tensor
    record: dict            # metrics.json's fields from modality to val_scores
    final_val: list         # [steps, val metric]: val_curve's last point


def evaluate_run(model, preprocess, splits: Splits, s: FinetuneSettings, dev: torch.device,
                 step0: dict | None) -> Result:
    """The task's metrics on val and test after the last step (val's closes val_curve), and for classification the
    accuracies beside them."""
    metric = glue_metrics.metric_name(splits.task)  # the main metric: val_curve's, test_metric's
    val_scores = scores(model, preprocess, splits, splits.val, dev, s.eval_batch_size)
    test_logits = predict_logits(model, preprocess, splits.test.x, dev, s.eval_batch_size)
    test_scores = glue_metrics.score(splits.task, splits.test.y, predictions(test_logits, splits.task_type))
    if splits.task_type == "classification":
        # every classification task's metrics include accuracy (glue_metrics.TASK_METRICS)
        test_acc = float((test_logits.argmax(1).numpy() == splits.test.y).mean())
        counts = np.bincount(splits.test.y, minlength=splits.num_classes)
        accuracies = {"test_accuracy": test_acc, "val_accuracy": val_scores["accuracy"],
                      "step0_test_accuracy": None if step0 is None else step0["accuracy"],
                      "chance_accuracy": 1.0 / splits.num_classes,
                      "majority_accuracy": float(counts.max() / max(1, counts.sum()))}  # always the commonest class
    else:
        accuracies = {}
    record = {
        "modality": splits.modality, "task_type": splits.task_type, "task": splits.task,
        "classes": list(splits.classes), "num_classes": splits.num_classes,
        **accuracies,
        "test_metric": _metric(metric, test_scores[metric]), "val_metric": _metric(metric, val_scores[metric]),
        "step0_test_metric": None if step0 is None else _metric(metric, step0[metric]),
        "test_scores": {k: _finite(v) for k, v in test_scores.items()},
        "val_scores": {k: _finite(v) for k, v in val_scores.items()},
    }
    return Result(metric, test_scores, test_logits, record, [s.steps, _finite(val_scores[metric])])


def _check_prefix_frozen(model, start: int) -> None:
    """A prefix cache stands for blocks 0..start-1 and the embeddings: nothing there may train."""
    from specbasis.training.prefix_cache import backbone

    core = backbone(model)
    frozen = [core.embeddings] + list(core.encoder.layer)[:start]
    training = [n for part in frozen for n, p in part.named_parameters() if p.requires_grad]
    if training:
        raise ValueError(f"prefix cache before block {start}: the method trains {training[:3]} there; a cache "
                         f"needs every parameter before its block frozen")


INFERENCE_REPS = 12  # timed forwards of each kind, in ABBA order after one warm-up of each; the fastest compared


def inference_cost(adapted, preprocess, splits: Splits, dev: torch.device, batch_size: int) -> dict:
    """What the trained model costs at inference against the base model's forward. A merged adapter is the base
    architecture (ratio 1 by construction, not timed). One that cannot merge is timed: the forward of one test
    batch (eval_batch_size examples, no grad, eval mode) with the adapter and with it switched off, INFERENCE_REPS
    of each in ABBA order (so a slow phase of the machine falls on both) after one warm-up of each; the ratio of
    the fastest of each, which other load on the machine can only slow (as timeit takes the minimum)."""
    if adapted.method.mergeable:
        return {"mergeable": True, "forward_ratio": 1.0}
    data = splits.test if len(splits.test) else splits.val
    n = min(batch_size, len(data))
    inputs = to_device(preprocess(select(data.x, np.arange(n))), dev)
    model = adapted.model.eval()

    def forward_seconds(base: bool) -> float:
        with torch.no_grad(), (adapted.disabled() if base else contextlib.nullcontext()):
            t = clock(dev)
            logits_of(model, inputs)
            return clock(dev) - t

    forward_seconds(False), forward_seconds(True)  # warm-up
    times = {"adapted": [], "base": []}
    for rep in range(INFERENCE_REPS):
        for base in ((False, True) if rep % 2 == 0 else (True, False)):
            times["base" if base else "adapted"].append(forward_seconds(base))
    fastest = {k: float(min(v)) for k, v in times.items()}
    return {"mergeable": False, "forward_ratio": fastest["adapted"] / fastest["base"],
            "forward_seconds_adapted": fastest["adapted"], "forward_seconds_base": fastest["base"],
            "forward_seconds_median": {k: float(np.median(v)) for k, v in times.items()},
            "batch": n, "reps": INFERENCE_REPS, "device": str(dev)}


def _reload_check(folder: Path, family: str, num_classes: int, x, expected: torch.Tensor) -> float:
    """Load the saved model back (with its adapter where it could not merge) and compare its logits on x with the
    trained model's."""
    model, preprocess = load_trained(folder, family, num_classes)
    got = predict_logits(model, preprocess, x, torch.device("cpu"))
    diff = float((got - expected).abs().max()) if len(expected) else 0.0
    if not diff <= RELOAD_ATOL:
        raise AssertionError(f"{folder}: the saved model does not reproduce the trained logits "
                             f"(max abs diff {diff:.3g} > {RELOAD_ATOL})")
    return diff


def _versions(kind: str, extra: tuple[str, ...] = ()) -> dict:
    import importlib.metadata as md

    libs = ["torch", "transformers", "tokenizers"] if kind == "text" else ["torch", "timm"]
    libs += list(extra)
    return {"python": platform.python_version(), **{lib: md.version(lib) for lib in libs}}
