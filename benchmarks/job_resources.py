"""What every job of a workflow run used, per rule: wall time, CPU time, peak memory, disk written, and the size of
what it read, gathered into one CSV.

    python benchmarks/job_resources.py .snakemake/log/<run>.snakemake.log --out benchmarks/results/<name>.csv
                                       [--directory DIR] [--machine "2 cores, 24 GiB, no GPU"]

The jobs, their rules, wildcards, inputs, outputs and log files come from the Snakemake log (job_seconds.parse);
what each used from the last line of its own log file (specbasis.logs: wall_s, cpu_s, peak_rss_mb, written_mb; a job
whose process was killed wrote none, and its row says so). Beside them, from the files as they are after the run:
input_mb (the inputs' total size, folders summed), output_mb, and for a rule that reads a model, the model's
checkpoint size and, for a weights or SVD store, its matrix count and largest shape. DIR is the run's working
directory (default: the current one). The rows are sorted by rule, then by input size; a summary per rule is
printed.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_seconds import parse  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from specbasis.logs import parse_resources  # noqa: E402

COLUMNS = ["rule", "wildcards", "wall_s", "cpu_s", "peak_rss_mb", "written_mb", "input_mb", "output_mb",
           "checkpoint_mb", "matrices", "largest_matrix", "snakemake_s", "machine", "log", "status"]
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".tar")


def size_mb(path: Path) -> float:
    """A file's size, or a folder's files summed, in MiB (0 for what is not there)."""
    if path.is_file():
        return path.stat().st_size / 2**20
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return 0.0


def checkpoint_mb(paths: list[Path]) -> float | None:
    """The weights files among the inputs (in a model folder: its checkpoint), summed; None when there are none."""
    found = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*") if path.is_dir() else [])
             if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES)]
    return round(sum(p.stat().st_size for p in found) / 2**20, 1) if found else None


def store_shapes(paths: list[Path]) -> tuple[int | None, str | None]:
    """For an .h5 weights or SVD store among the inputs: how many matrices it holds and the largest (out x in)."""
    stores = [p for p in paths if p.suffix == ".h5" and p.is_file()]
    if not stores:
        return None, None
    import h5py

    shapes = []
    with h5py.File(stores[0], "r") as f:  # a weights store: a dataset (out, in) per matrix; an SVD store: a group
        for key in f:
            item = f[key]
            if isinstance(item, h5py.Dataset) and item.ndim == 2:
                shapes.append(tuple(item.shape))
            elif isinstance(item, h5py.Group) and "shape" in item.attrs:
                shapes.append(tuple(int(x) for x in item.attrs["shape"]))
        count = len(shapes)
    largest = max(shapes, key=lambda s: s[0] * s[1]) if shapes else None
    return count, None if largest is None else f"{largest[0]}x{largest[1]}"


def gather(log: Path, directory: Path, machine: str = "") -> list[dict]:
    rows = []
    for job in parse(log):
        inputs = [directory / p for p in job["input"]]
        record, status = None, "no log file"
        for name in job["log"]:
            path = directory / name
            if path.is_file():
                status = "no resources line (killed?)"
                for line in path.read_text(errors="replace").splitlines():
                    record = parse_resources(line) or record
        if record is not None:
            status = "ok"
        matrices, largest = store_shapes(inputs)
        rows.append({"rule": job["rule"], "wildcards": ";".join(f"{k}={v}" for k, v in job["wildcards"].items()),
                     **{k: (record or {}).get(k) for k in ("wall_s", "cpu_s", "peak_rss_mb", "written_mb")},
                     "input_mb": round(sum(size_mb(p) for p in inputs), 1),
                     "output_mb": round(sum(size_mb(directory / p) for p in job["output"]), 1),
                     "checkpoint_mb": checkpoint_mb(inputs),
                     "matrices": matrices, "largest_matrix": largest,
                     "snakemake_s": (job["end"] - job["start"]).total_seconds(), "machine": machine,
                     "log": ";".join(job["log"]), "status": status})
    return sorted(rows, key=lambda r: (r["rule"], r["input_mb"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--directory", type=Path, default=Path.cwd())
    ap.add_argument("--machine", default="")
    args = ap.parse_args()
    rows = gather(args.log, args.directory, args.machine)
    if not rows:
        raise SystemExit(f"{args.log}: no finished jobs found")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} jobs -> {args.out}")
    print(f"{'rule':24s} {'jobs':>4s} {'max wall s':>10s} {'max peak MB':>11s} {'max written MB':>14s}")
    for rule in sorted({r["rule"] for r in rows}):
        mine = [r for r in rows if r["rule"] == rule and r["status"] == "ok"]
        top = lambda key: max((r[key] or 0) for r in mine) if mine else float("nan")  # noqa: E731
        print(f"{rule:24s} {len(mine):4d} {top('wall_s'):10.1f} {top('peak_rss_mb'):11.1f} {top('written_mb'):14.1f}")


if __name__ == "__main__":
    main()
