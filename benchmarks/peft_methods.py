"""Every finetuning method of Table 1 (config.yaml's peft.methods) on the real all-MiniLM-L6-v2, side by side.

Measured in one run: each method's training step (time, its parts, memory) and its merged model's inference
against the plain base classifier.

Usage:  python benchmarks/peft_methods.py [--rounds 5] [--steps-per-round 2] [--methods spectral lora_kaiming]
                                          [--inference-rounds 4] [--threads 2]

Needs results/models/minilm (`snakemake --cores 2 results/models/minilm`) and the rotten_tomatoes data
(resources/datasets/rotten_tomatoes, fetched by the same workflow). Each method is the config's spec (its `lr`
key is the optimizer's learning rate, not part of the spec), applied to its own freshly loaded classifier (2
classes, max_length 40) by specbasis.methods.apply.prepare with total_steps = finetune.text.steps, and trained by
its own AdamW (specbasis.training.loop.adamw, finetune.text's weight decay) with finetune's warm-up schedule.

1. Training steps at the table setting (batch 32 of real rotten_tomatoes training texts, tokenised by the
   classifier's own preprocess, max_length 40; the same batches, in the same order, for every method): a step
   is exactly specbasis.training.finetune.finetune's (forward through models.logits_of, cross-entropy, + AdaLoRA's
   regularizer; zero_grad, backward; clip_grad_norm_ to settings.GRAD_CLIP, optimizer and scheduler step,
   Adapted.after_step), with flush-denormal on as finetune sets it. Tokenisation is done beforehand and left
   out, as in finetune's step_seconds. Each method first takes 2 untimed steps (AdamW's state, lazy inits);
   then every round runs --steps-per-round steps of each method in an order that rotates round by round (this
   machine's speed drifts by tens of percent, and other work on it only ever adds time). Printed per method:
   the median and the best step, the ratios of both to the spectral method's (the row --reference
   names, default `spectral`), the median forward (to the loss), backward (zero_grad + backward) and update (clipping,
   optimizer, scheduler, after_step) parts of the same steps, the trainable parameters, and two memory
   figures from one more step taken after the timed rounds: its peak resident set above the resident set
   before it (specbasis.training.finetune.StepMemory; glibc's free memory handed back by malloc_trim first, or memory
   freed by earlier steps would hide the step's peak), and the activations autograd saved for the backward
   pass (saved_tensors_hooks; tensors that are parameters or buffers left out). The goal: the spectral
   adapter (last two blocks only, so the backward pass stops there) is the fastest method; the script says
   whether it is, and where its time goes against the fastest one if not.
2. Merged inference: after its training steps, each model is put in eval mode, its logits on 128 test texts
   are taken, then Adapted.merge merges the adapter into a plain model whose logits are compared
   (max abs difference; expected ~1e-5), and its weights outside the head with the base's (max |ΔW|: the
   trained adapter is not a no-op); `plain` says whether it has exactly the base's modules and parameter
   shapes (no wrapper left). Then one eval-mode forward of those 128 texts under torch.inference_mode is timed
   for every merged model right beside one of a freshly loaded base classifier (the same 2-class head size),
   the pair in alternating order, the methods in rotating order, --inference-rounds times. Printed: merged /
   base of best times (the base's best of all its calls), and the median over rounds of merged / the base
   call beside it, which slow drift in the machine's speed leaves alone (goal: ≤ 1.02). The merged models and
   the base all compute the same thing, so the spread of these ratios across methods is the timing noise.

Over these few steps AdaLoRA's allocator only scores importances (update_ipt, every step before total_steps -
tfinal, as in 80% of the table's 200 steps); its budget masks (from step tinit on, every delta_t steps) start
only when 3 + rounds x steps-per-round exceeds tinit (20). Its trained ΔW is tiny then (~1e-5: Λ starts at 0).

Measured here (2 cores shared with other jobs, whose load changed step times by up to 3x within a run): the
defaults took 3.6 min in a quieter spell, 11 min under a steady load of 4. spectral and psoft (the same
4 matrices, the same 90,770 trainable parameters) take the same step within the noise (±15% either way from
run to run): psoft's backward is often the shorter (its autograd keeps 42 MiB to spectral's 65: spectral's
auto path at 32 x 40 tokens is `dense`, whose weight gradient needs x; path `factored` keeps 42 too), and
spectral's forward the shorter. Every other method takes 1.2-2.2x spectral's step
(bitfit 1.2-1.7, the rank-8 adapters on all 36 matrices 1.3-1.9, dora and full 1.6-2.2). Every merged model
has exactly the base's modules, and its logits match the unmerged model's to ≤ 2e-7 (0 for spectral, whose
no-grad path adds the same ΔW merge adds); the merged/base ratios scatter 0.93-1.3 around 1 with the load.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
import yaml

from specbasis.methods.apply import prepare
from specbasis.data import load_splits
from specbasis.models import load_classifier, logits_of
from specbasis.methods.spectral_adapter import choose_path, spectral_layers
from specbasis.training.loop import StepMemory, adamw, batch_order, seed_everything, warmup_linear
from specbasis.training.settings import GRAD_CLIP

ROOT = Path(__file__).resolve().parents[1]
MODEL = Path("results/models/minilm")
DATA = Path("resources/datasets/rotten_tomatoes")
FAMILY, CLASSES, MAX_LENGTH, BATCH, EVAL_BATCH = "bert", 2, 40, 32, 128
WARMUP_STEPS = 2  # untimed steps per method before the rounds
MiB = 2 ** 20
W = 14  # width of the method column: main widens it to the longest name


def _malloc_trim() -> None:
    """Hand glibc's free memory back to the kernel, so that the resident set counts live memory only."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Runner:
    """One method: its own model, optimizer and schedule, stepped exactly as train.finetune steps."""

    def __init__(self, name: str, entry: dict, text: dict, total_steps: int, seed: int):
        self.name = name
        self.spec = {k: v for k, v in entry.items() if k != "lr"}
        lr = float(entry.get("lr", text["lr"]))
        seed_everything(seed)  # as finetune: before the load, so the fresh head is seeded
        model, _ = load_classifier(ROOT / MODEL, FAMILY, CLASSES, max_length=MAX_LENGTH)
        t0 = time.perf_counter()
        self.prepared = prepare(model, self.spec, FAMILY, total_steps=total_steps)
        self.model = self.prepared.model
        self.seconds_prepare = time.perf_counter() - t0
        self.optimizer = adamw(self.model, lr, float(text["weight_decay"]))
        warmup = int(round(float(text["warmup_frac"]) * total_steps))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_linear(s, total_steps, warmup))
        self.step_no = 0
        self.parts: dict[str, list[float]] = {"step": [], "forward": [], "backward": [], "update": []}
        self.memory_bytes = self.saved_bytes = 0

    def step(self, inputs: dict, target: torch.Tensor, record: bool = True) -> float:
        model, prepared = self.model, self.prepared
        self.step_no += 1
        model.train()
        t0 = time.perf_counter()
        loss = F.cross_entropy(logits_of(model, inputs), target)
        term = prepared.loss_term()
        objective = loss if term is None else loss + term
        t1 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        self.optimizer.step()
        self.schedule.step()
        prepared.after_step(self.step_no)
        t3 = time.perf_counter()
        if not torch.isfinite(objective):
            raise FloatingPointError(f"{self.name}: loss {objective.item()} at step {self.step_no}")
        if record:
            for key, value in (("step", t3 - t0), ("forward", t1 - t0), ("backward", t2 - t1), ("update", t3 - t2)):
                self.parts[key].append(value)
        return t3 - t0

    def measure_memory(self, inputs: dict, target: torch.Tensor) -> None:
        """One step's peak resident set above its start (StepMemory), and the activations saved for backward."""
        _malloc_trim()
        memory = StepMemory(torch.device("cpu"))
        memory.start()
        self.step(inputs, target, record=False)
        memory.stop()
        self.memory_bytes = memory.peak
        held = {t.untyped_storage().data_ptr() for t in (*self.model.parameters(), *self.model.buffers())}
        seen: dict[int, int] = {}

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in held:
                seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
            return t

        self.model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = F.cross_entropy(logits_of(self.model, inputs), target)
            term = self.prepared.loss_term()
            if term is not None:
                loss = loss + term
        del loss
        self.saved_bytes = sum(seen.values())

    def median(self, key: str) -> float:
        return statistics.median(self.parts[key])

    def best(self, key: str = "step") -> float:
        return min(self.parts[key])


def rotate(names: list[str], i: int) -> list[str]:
    return names[i % len(names):] + names[:i % len(names)]


def train_rounds(runners: dict[str, Runner], batches: list, rounds: int, per_round: int) -> None:
    names = list(runners)
    for r in runners.values():  # warm-up: untimed
        for b in range(WARMUP_STEPS):
            r.step(*batches[b], record=False)
    for i in range(rounds):
        for name in rotate(names, i):
            for j in range(per_round):
                runners[name].step(*batches[WARMUP_STEPS + i * per_round + j])
        print(f"  round {i + 1}/{rounds} done", file=sys.stderr, flush=True)


def training_table(runners: dict[str, Runner], spectral: str | None) -> None:
    ref = runners.get(spectral)
    print(f"{'method':<{W}} {'trainable':>10} | {'median s':>8} {'best s':>7} {'med/spec':>8} {'best/spec':>9} | "
          f"{'fwd ms':>7} {'bwd ms':>7} {'upd ms':>7} | {'peak MiB':>8} {'saved MiB':>9}")
    for name, r in runners.items():
        rel = (f"{r.median('step') / ref.median('step'):>8.2f} {r.best() / ref.best():>9.2f}" if ref
               else f"{'-':>8} {'-':>9}")
        print(f"{name:<{W}} {r.prepared.counts['trainable']:>10,} | {r.median('step'):>8.3f} {r.best():>7.3f} {rel} | "
              + " ".join(f"{1e3 * r.median(part):>7.0f}" for part in ("forward", "backward", "update")) + " | "
              f"{r.memory_bytes / MiB:>8.0f} {r.saved_bytes / MiB:>9.0f}")
    by_best = sorted(runners, key=lambda n: runners[n].best())
    by_median = sorted(runners, key=lambda n: runners[n].median("step"))
    print(f"fastest: {by_best[0]} by best step, {by_median[0]} by median step")
    if ref is None:
        print("(no spectral method among those run: no ratios)")
        return
    if by_best[0] == spectral and by_median[0] == spectral:
        second = by_best[1] if len(by_best) > 1 else None
        print("spectral is the fastest method" + (
            f": the next, {second}, takes {runners[second].best() / ref.best():.2f}x its best step" if second else ""))
        return
    for fast in dict.fromkeys((by_best[0], by_median[0])):
        if fast == spectral:
            continue
        f = runners[fast]
        gaps = {key: ref.median(key) - f.median(key) for key in ("forward", "backward", "update")}
        print(f"spectral is NOT the fastest: {fast} takes {f.median('step') / ref.median('step'):.2f}x its median step "
              f"({f.best() / ref.best():.2f}x its best); spectral - {fast}, medians: "
              + ", ".join(f"{key} {1e3 * gap:+.0f} ms" for key, gap in gaps.items()))


def _structure(model) -> list:
    return [(n, type(m).__name__) for n, m in model.named_modules()] + [
        (n, tuple(p.shape)) for n, p in model.named_parameters()]


def inference(runners: dict[str, Runner], texts_inputs: dict, rounds: int) -> None:
    shape = tuple(texts_inputs["input_ids"].shape)
    print(f"\nmerged inference: eval, inference_mode, {EVAL_BATCH} test texts {shape}; "
          f"{rounds} rounds, each timing every merged model next to the base (a pair, in alternating order; the "
          f"methods in rotating order)")
    models, diffs = {}, {}
    for name, r in runners.items():
        r.model.eval()
        with torch.inference_mode():
            before = logits_of(r.model, texts_inputs).float()
        merged = r.prepared.merge().eval()
        with torch.inference_mode():
            after = logits_of(merged, texts_inputs).float()
        diffs[name] = float((after - before).abs().max())
        models[name] = merged
        r.model = r.optimizer = r.schedule = None  # the merged model is the only copy kept
    seed_everything(0)
    base, _ = load_classifier(ROOT / MODEL, FAMILY, CLASSES, max_length=MAX_LENGTH)
    base.eval()
    gc.collect()
    plain = {k: v for k, v in base.state_dict().items() if not k.startswith("classifier.")}
    moved, same = {}, {}
    for name, model in models.items():
        state = model.state_dict()  # how far training moved the merged backbone: the adapter is not a no-op
        moved[name] = max(float((state[k] - v).abs().max()) for k, v in plain.items())
        same[name] = _structure(model) == _structure(base)  # no wrapper left: the base's modules and shapes

    def forward(model):
        def run():
            t0 = time.perf_counter()
            with torch.inference_mode():
                logits_of(model, texts_inputs)
            return time.perf_counter() - t0
        return run

    run_base = forward(base)
    runs = {n: forward(m) for n, m in models.items()}
    run_base()
    for run in runs.values():  # warm-up
        run()
    base_times, times, paired = [], {n: [] for n in runs}, {n: [] for n in runs}
    names = list(runs)
    for i in range(rounds):
        for k, n in enumerate(rotate(names, i)):
            first_base = (i + k) % 2 == 0
            tb = run_base() if first_base else None
            tm = runs[n]()
            tb = tb if first_base else run_base()
            base_times.append(tb)
            times[n].append(tm)
            paired[n].append(tm / tb)
    b = min(base_times)
    print(f"{'method':<{W}} {'plain':>5} | {'best ms':>7} {'best/base':>9} {'paired med':>10} | {'max |Δlogit|':>12} "
          f"{'max |ΔW|':>9}")
    print(f"{'base':<{W}} {'':>5} | {1e3 * b:>7.1f} {'1':>9} {'1':>10} |   (best of {len(base_times)})")
    slow, off = [], []
    for name, diff in diffs.items():
        ratio, med = min(times[name]) / b, statistics.median(paired[name])
        print(f"{name:<{W}} {'yes' if same[name] else 'NO':>5} | {1e3 * min(times[name]):>7.1f} {ratio:>9.3f} "
              f"{med:>10.3f} | {diff:>12.2e} {moved[name]:>9.1e}")
        if ratio > 1.02 and med > 1.02:
            slow.append(f"{name} ({ratio:.3f}, {med:.3f})")
        if not diff <= 1e-4:
            off.append(f"{name} ({diff:.1e})")
    print("plain: the merged model has the base's modules and parameter shapes; paired med: median over rounds of "
          "merged / the base call next to it")
    print("merged/base above the goal 1.02 by both ratios: " + (", ".join(slow) if slow else "none")
          + (f"; spread of best/base over models that are all plain: "
             f"{min(min(t) for t in times.values()) / b:.3f}-{max(min(t) for t in times.values()) / b:.3f} "
             f"(timing noise)" if all(same.values()) and len(times) > 1 else ""))
    print("merged logits off the unmerged ones by more than 1e-4: " + (", ".join(off) if off else "none"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved training rounds")
    ap.add_argument("--steps-per-round", type=int, default=2, help="training steps of each method per round")
    ap.add_argument("--methods", nargs="+", default=None, help="names of peft.methods to run (default: all)")
    ap.add_argument("--inference-rounds", type=int, default=4, help="interleaved rounds of merged inference")
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", default="spectral",
                    help="the peft.methods row the ratios are taken against (default: spectral, the paper's method)")
    args = ap.parse_args(argv)
    if not (ROOT / MODEL / "config.json").is_file():
        sys.exit(f"{ROOT / MODEL} is missing: make it first with  cd {ROOT} && snakemake --cores 2 {MODEL}")
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # one load report per classifier loaded: 11 of them
    transformers.logging.disable_progress_bar()
    torch.set_flush_denormal(True)  # as train.finetune on CPU

    config = yaml.safe_load(args.config.read_text())
    table, text, seed = config["peft"]["methods"], config["finetune"]["text"], int(config.get("seed", 0))
    task = config["peft"].get("tasks", {}).get("rotten_tomatoes") or {}
    if args.methods:
        unknown = [m for m in args.methods if m not in table]
        if unknown:
            sys.exit(f"--methods {unknown}: not in peft.methods ({', '.join(table)})")
        table = {m: table[m] for m in args.methods}
    spectral = args.reference if args.reference in table else None
    global W
    W = max(W, *map(len, table))
    n_steps = WARMUP_STEPS + args.rounds * args.steps_per_round + 1  # + the memory step
    total_steps = max(int(task.get("steps", text["steps"])), n_steps)

    splits = load_splits("rotten_tomatoes", ROOT / DATA, seed)
    runners = {}
    for name, entry in table.items():
        runners[name] = Runner(name, entry, text, total_steps, seed)
    preprocess = load_classifier(ROOT / MODEL, FAMILY, CLASSES, max_length=MAX_LENGTH)[1]
    order = batch_order(len(splits.train), n_steps, BATCH, np.random.default_rng(seed))
    batches = [(preprocess([splits.train.x[i] for i in idx]), torch.as_tensor(splits.train.y[idx])) for idx in order]
    lengths = sorted({b[0]["input_ids"].shape[1] for b in batches})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, flush-denormal on; MiniLM ({MODEL}), "
          f"{len(runners)} methods, batch {BATCH} rotten_tomatoes texts (padded lengths {lengths}), schedule of "
          f"{total_steps} steps; {WARMUP_STEPS} untimed + {args.rounds} rounds x {args.steps_per_round} timed steps "
          f"per method, rotating order; prepare took "
          + ", ".join(f"{n} {r.seconds_prepare:.1f} s" for n, r in runners.items()) + "\n", flush=True)

    train_rounds(runners, batches, args.rounds, args.steps_per_round)
    for r in runners.values():
        r.measure_memory(*batches[-1])
    print(f"training step ({args.rounds * args.steps_per_round} timed steps each; fwd/bwd/upd: medians of the "
          f"step's parts; peak: StepMemory's peak RSS above the step's start, one step after malloc_trim; saved: "
          f"activations autograd keeps for backward)")
    training_table(runners, spectral)
    tokens = BATCH * lengths[-1]
    for name, r in runners.items():  # which of SpectralLinear's two training paths ran (path auto: choose_path's)
        layers = spectral_layers(r.model).values()
        if layers:
            paths = {layer.path if layer.path != "auto" else
                     choose_path(layer.out_features, layer.in_features, layer.r, tokens) for layer in layers}
            print(f"{name}: training path at {BATCH} x {lengths[-1]} tokens: {', '.join(sorted(paths))}")

    test_inputs = preprocess(splits.test.x[:EVAL_BATCH])
    inference(runners, test_inputs, args.inference_rounds)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
