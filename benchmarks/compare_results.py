"""Did a change alter what the workflow computes? Fingerprint a results/ folder, then compare two fingerprints.

    python benchmarks/compare_results.py fingerprint results > after.json
    python benchmarks/compare_results.py compare benchmarks/reference/results-992a3ff.json after.json

A fingerprint holds, for every table (*.csv) under the folder, the sha256 of its bytes and the sha256 of its
content with the columns that measure time, memory or the machine dropped (VOLATILE, matched against column
names), and for every model's metrics.json the sha256 of its content without such keys; the figures (PDF/PNG
carry creation dates) and the weight and SVD stores (read by the tables fingerprinted here) are left out.
`compare` prints, per file, whether it is identical, identical but for volatile columns, different, or present
on one side only, and exits 1 when any file differs or is missing.

The fingerprint of the default suite's results before the package's redesign (issue 17) is committed as
benchmarks/reference/results-992a3ff.json: `make all` on commit 992a3ff, 2 cores, 2026-12-03.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
from pathlib import Path

import pandas as pd

# Columns and metrics.json keys that measure the run rather than the result: wall and CPU times, memory, rates,
# threads, the device, the machine's library versions.
VOLATILE = re.compile(r"(second|time|_s$|per_s|mib|memory|peak|threads|device|versions)", re.IGNORECASE)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_fingerprint(path: Path) -> dict:
    raw = path.read_bytes()
    frame = pd.read_csv(io.BytesIO(raw), keep_default_na=False, dtype=str)
    stable = frame[[c for c in frame.columns if not VOLATILE.search(str(c))]]
    return {"sha256": sha(raw), "stable_sha256": sha(stable.to_csv(index=False).encode()),
            "dropped": [c for c in frame.columns if VOLATILE.search(str(c))], "rows": len(frame)}


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def metrics_fingerprint(path: Path) -> dict:
    raw = path.read_bytes()
    data = json.loads(raw)
    return {"sha256": sha(raw), "stable_sha256": sha(json.dumps(_stable(data), sort_keys=True).encode()),
            "dropped": sorted(k for k in data if VOLATILE.search(k))}


def fingerprint(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("*.csv")):
        out[str(path.relative_to(folder))] = table_fingerprint(path)
    for path in sorted(folder.glob("models/*/metrics.json")):
        out[str(path.relative_to(folder))] = metrics_fingerprint(path)
    return out


def compare(before: dict, after: dict) -> int:
    counts = {"identical": 0, "identical but for volatile columns": 0, "different": 0, "only before": 0,
              "only after": 0}
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            verdict = "only before" if b is None else "only after"
        elif a["sha256"] == b["sha256"]:
            verdict = "identical"
        elif a["stable_sha256"] == b["stable_sha256"]:
            verdict = "identical but for volatile columns"
        else:
            verdict = "different"
        counts[verdict] += 1
        if verdict != "identical":
            extra = f" (dropped: {', '.join(a['dropped'])})" if verdict.startswith("identical but") else ""
            print(f"{verdict:<36} {name}{extra}")
    print("; ".join(f"{n} {v}" for v, n in counts.items()))
    return 1 if counts["different"] or counts["only before"] or counts["only after"] else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    fp = sub.add_parser("fingerprint")
    fp.add_argument("folder", type=Path)
    cp = sub.add_parser("compare")
    cp.add_argument("before", type=Path)
    cp.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    if args.command == "fingerprint":
        json.dump(fingerprint(args.folder), sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    load = lambda p: json.loads(p.read_text()) if p.is_file() else fingerprint(p)  # noqa: E731 (a folder too)
    return compare(load(args.before), load(args.after))


if __name__ == "__main__":
    sys.exit(main())
