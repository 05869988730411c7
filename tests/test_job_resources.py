"""benchmarks/job_resources.py: every job's use, joined with its rule and the size of what it read."""
import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("job_resources", ROOT / "benchmarks" / "job_resources.py")
job_resources = importlib.util.module_from_spec(spec)
spec.loader.exec_module(job_resources)

SNAKEMAKE_LOG = """\
[Mon Dec  7 10:00:00 2026]
rule svd:
    input: results/weights/m.h5
    output: results/svd/m.h5
    log: logs/svd/m.log
    jobid: 3
    reason: Missing output files: results/svd/m.h5
    wildcards: model=m
    resources: tmpdir=/tmp

[Mon Dec  7 10:00:00 2026]
rule prepare_model:
    input: resources/models/m
    output: results/models/m
    log: logs/models/m.prepare.log
    jobid: 2
    wildcards: model=m

[Mon Dec  7 10:00:07 2026]
Finished jobid: 3 (Rule: svd)
[Mon Dec  7 10:00:09 2026]
Finished jobid: 2 (Rule: prepare_model)
"""


def test_rows_join_the_snakemake_log_the_job_logs_and_the_files(tmp_path):
    (tmp_path / "results/weights").mkdir(parents=True)
    with h5py.File(tmp_path / "results/weights/m.h5", "w") as f:
        f["00.ffn_in"] = np.zeros((64, 16), np.float32)
        f["00.ffn_out"] = np.zeros((16, 64), np.float32)
        f["01.attn_q"] = np.zeros((16, 16), np.float32)
    (tmp_path / "results/svd").mkdir(parents=True)
    (tmp_path / "results/svd/m.h5").write_bytes(b"\0" * 2**20)
    (tmp_path / "resources/models/m").mkdir(parents=True)
    (tmp_path / "resources/models/m/model.safetensors").write_bytes(b"\0" * 3 * 2**20)
    (tmp_path / "resources/models/m/config.json").write_text("{}")
    (tmp_path / "logs/svd").mkdir(parents=True)
    (tmp_path / "logs/svd/m.log").write_text(
        "2026-12-07 10:00:01 INFO specbasis: svd\n2026-12-07 10:00:06 INFO specbasis.job: job resources: "
        + json.dumps({"wall_s": 6.5, "cpu_s": 11.0, "peak_rss_mb": 420.0, "written_mb": 1.0}) + "\n")
    (tmp_path / "logs/models").mkdir(parents=True)
    (tmp_path / "logs/models/m.prepare.log").write_text("2026-12-07 10:00:01 INFO specbasis: preparing\n")  # killed
    log = tmp_path / "run.snakemake.log"
    log.write_text(SNAKEMAKE_LOG)

    out = tmp_path / "jobs.csv"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/job_resources.py"), str(log), "--out", str(out),
                    "--directory", str(tmp_path), "--machine", "test"], check=True, capture_output=True)
    rows = {r["rule"]: r for r in csv.DictReader(out.open())}
    svd, prepare = rows["svd"], rows["prepare_model"]
    assert (svd["wall_s"], svd["peak_rss_mb"], svd["written_mb"], svd["status"]) == ("6.5", "420.0", "1.0", "ok")
    assert svd["matrices"] == "3" and svd["largest_matrix"] == "64x16" and svd["output_mb"] == "1.0"
    assert svd["snakemake_s"] == "7.0" and svd["wildcards"] == "model=m" and svd["machine"] == "test"
    assert prepare["status"].startswith("no resources line") and prepare["wall_s"] == ""
    assert prepare["checkpoint_mb"] == "3.0" and prepare["snakemake_s"] == "9.0"
