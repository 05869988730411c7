"""The workflow on a real one-node SLURM cluster (tests/slurm_cluster.py) through the SLURM profile, on
the tiny suite: its outputs equal a local run's, a job that fails on the cluster is reported as failed
while the independent jobs finish, and a rerun after the fix runs only what is left.

Needs root and apt-get where SLURM is not installed (it skips saying why otherwise). Run it alone with
    .venv/bin/python -m pytest -m slurm
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

import slurm_cluster
import tiny_suite
from workflow_helpers import ENV, ROOT, job_stats, snakemake, start_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
# The jobs that need the digits dataset, its fetch included: they fail while its download is cut short,
# and the rerun runs them (and the figures and tables over every pair), nothing else.
DIGITS_JOBS = {"fetch_dataset": 1, "finetune": 1, "extract_weights": 1, "svd": 1, "alignment": 1, "spectra": 1,
               "delta_svd": 1, "cumgrad": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        with slurm_cluster.running(tmp_path_factory.mktemp("slurm")) as cluster:
            yield cluster
    except slurm_cluster.Unavailable as why:
        pytest.skip(str(why))


def pinned_suite(folder: Path) -> Path:
    """The tiny suite without its PEFT stage, its digits file served as the member of a zip (fixtures/digits.zip),
    as a download would be. No sha256 is pinned: the workflow checks a pinned local file when it parses the config
    (tests/io/test_fetch.py, tests/workflow/test_faults.py), before any job, so a job that fails on the cluster needs a fault that only
    the fetch can see: an archive cut short."""
    config = tiny_suite.build(folder)
    spec = yaml.safe_load(config.read_text())
    with zipfile.ZipFile(folder / "fixtures/digits.zip", "w") as archive:
        archive.write(folder / "fixtures/digits.csv.gz", "digits.csv.gz")
    spec["datasets"]["digits"].update(source="local:fixtures/digits.zip", member="digits.csv.gz")
    # the PEFT stage's 15 finetunes are ordinary finetune jobs (tested locally by test_workflow); on the
    # cluster they would only add submission overhead to a test that runs everything else
    spec.pop("peft")
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    return config


def compared_outputs(config: Path) -> list[str]:
    """The analyses' tables and the SVD and weights stores of every model of a pair."""
    spec = yaml.safe_load(config.read_text())
    models = sorted({spec["pairs"][p][role] for p in spec["pairs"] for role in ("pretrained", "finetuned")})
    return ([f"results/{table}/{pair}.csv" for table in ("alignment", "spectra", "cumgrad") for pair in spec["pairs"]]
            + [f"results/spectra/{pair}.ranks.csv" for pair in spec["pairs"]]
            + [f"results/{store}/{model}.h5" for store in ("weights", "svd") for model in models])


def node_profile(cluster: slurm_cluster.Cluster, folder: Path) -> Path:
    """workflow/profiles/slurm fitted to the test node, as a user without GPUs would fit it: no `gpu`
    (docs/slurm.md's instruction), no more CPUs than the node has, and memory such that a job per CPU fits.
    Everything else (executor, retries, runtimes, which rules ask for what) is the profile's own."""
    profile = yaml.safe_load(PROFILE.read_text())
    per_cpu_mb = cluster.mem_mb // cluster.cpus
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        resources.pop("gpu", None)
        if "cpus_per_task" in resources:
            resources["cpus_per_task"] = min(resources["cpus_per_task"], cluster.cpus)
        if "mem_mb" in resources:
            resources["mem_mb"] = min(resources["mem_mb"], per_cpu_mb)
    path = folder / "profile" / "config.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path.parent


def on_cluster(cluster, workdir: Path, profile: Path, *args: str, check: bool = True):
    """Snakemake submitting every job to the test cluster through `profile`. The cluster has no
    accounting database, so job states come from squeue. The plugin polls init-seconds-before-status-checks
    (40 s) after a job has finished and 10 s more each time one finds nothing finished; the jobs here
    take about 5 s, so 6 s rather than 40 makes most levels of the job graph one poll long."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--workflow-profile", str(profile),
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "6", *args]
    env = {**ENV, "SLURM_CONF": cluster.env["SLURM_CONF"], "PATH": cluster.env["PATH"]}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-8000:]}\n{cluster.logs()}")
    return proc


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory):
    """The same suite run locally to the compared outputs, started in the background: the cluster runs
    spend most of their time waiting for squeue, so the two share the CPUs well. As many cores as the
    test node has CPUs, so that torch runs the same number of threads in both."""
    work = tmp_path_factory.mktemp("local")
    config = pinned_suite(work)
    log = work / "snakemake.out"
    proc = start_snakemake(work, *compared_outputs(config), "--configfile", str(config), cores=cluster.cpus, log=log)
    yield SimpleNamespace(work=work, proc=proc, log=log)
    if proc.poll() is None:  # a test failed before waiting for it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def local(local_run):
    returncode = local_run.proc.wait(timeout=600)
    assert returncode == 0, f"the local run failed ({returncode}):\n{local_run.log.read_text()[-6000:]}"
    return local_run.work


@pytest.fixture(scope="module")
def runs(cluster, local_run, tmp_path_factory):
    """`all` on the cluster with the digits download cut short (--keep-going), then again once it is fixed."""
    work = tmp_path_factory.mktemp("on-slurm")
    pinned_suite(work)
    profile = node_profile(cluster, work)
    digits = work / "fixtures/digits.zip"
    good = digits.read_bytes()
    digits.write_bytes(good[: len(good) // 2])  # a download cut half way
    failed = on_cluster(cluster, work, profile, "--keep-going", "all", check=False)
    after_failure = mtimes(work / "results")
    digits.write_bytes(good)
    rerun = on_cluster(cluster, work, profile, "all")
    return SimpleNamespace(work=work, profile=yaml.safe_load((profile / "config.yaml").read_text()),
                           failed=failed, failed_text=failed.stdout + failed.stderr, after_failure=after_failure,
                           rerun_text=rerun.stdout + rerun.stderr, jobs=cluster.jobs())


def test_a_job_that_fails_on_the_cluster_is_reported(runs):
    assert runs.failed.returncode != 0
    text = runs.failed_text
    assert "Error in rule fetch_dataset" in text and "dataset=digits" in text, text[-6000:]
    assert "digits.zip is not a zip or tar archive" in text, "the failed job's log is shown (show-failed-logs)"
    failed = [job for job in runs.jobs if job["state"] == "FAILED"]
    assert failed and {job["comment"] for job in failed} == {"rule_fetch_dataset_wildcards_digits"}, runs.jobs
    assert len(failed) == 1 + runs.profile["retries"]  # the profile's retry was a SLURM job too


def test_independent_jobs_finish_despite_the_failure(runs):
    done = set(runs.after_failure)
    for path in ["svd/bert.h5", "svd/bert-rt.h5", "svd/effnet.h5", "alignment/bert-rt.csv", "alignment/bert-self.csv",
                 "spectra/bert-rt.csv", "cumgrad/bert-rt.csv", "cumgrad/bert-self.csv", "energy/effnet.csv",
                 "models/bert-rt/metrics.json"]:
        assert path in done, f"results/{path} was not made while digits failed (--keep-going)"
    assert "fig16.png" in done  # it needs only the pretrained models
    assert not any("effnet-digits" in path for path in done)
    assert not {"fig2.png", "fig6.png", "table4.csv"} & done  # these need every pair


def test_the_rerun_runs_only_what_the_failure_left(runs):
    stats = job_stats(runs.rerun_text)
    for rule, count in DIGITS_JOBS.items():
        assert stats.get(rule) == count, (rule, stats)
    assert not {"fetch_model", "prepare_model", "energy"} & set(stats), stats
    touched = [path for path, mtime in runs.after_failure.items() if (runs.work / "results" / path).stat().st_mtime_ns
               != mtime]
    assert not touched, f"the rerun remade outputs of jobs that had succeeded: {touched}"
    plan = snakemake(runs.work, "-n", "all", "--configfile", str(runs.work / "config.yaml"))
    assert "Nothing to be done" in plan.stdout + plan.stderr, "every target of `all` is there"


def test_every_job_ran_as_a_slurm_job_with_the_profile_resources(runs):
    by_rule = {}
    for job in runs.jobs:
        by_rule.setdefault(job["comment"].split("_wildcards_")[0].removeprefix("rule_"), []).append(job)
    planned = job_stats(runs.failed_text)  # the first run planned everything
    for rule, count in planned.items():
        if rule in ("all", "total"):
            continue
        completed = [job for job in by_rule.get(rule, []) if job["state"] == "COMPLETED"]
        assert len(completed) == count, (rule, count, by_rule.get(rule))
    resources = runs.profile["set-resources"]
    for rule in ("finetune", "svd", "delta_svd"):
        for job in by_rule[rule]:
            assert (job["cpus"], job["mem"]) == (str(resources[rule]["cpus_per_task"]),
                                                 f"{resources[rule]['mem_mb']}M"), job
    default = runs.profile["default-resources"]
    for job in by_rule["alignment"]:
        assert (job["cpus"], job["mem"]) == (str(default["cpus_per_task"]), f"{default['mem_mb']}M"), job


def test_outputs_equal_a_local_run(runs, local):
    """Finetuning is seeded and deterministic on the CPU for a given number of threads, so the weights
    must be bit for bit the same; the numbers computed from them are held to 1e-6 (they were
    bit-identical too when this was written)."""
    for name in compared_outputs(runs.work / "config.yaml"):
        ours, theirs = runs.work / name, local / name
        if name.endswith(".csv"):
            pd.testing.assert_frame_equal(pd.read_csv(ours), pd.read_csv(theirs), check_exact=False, rtol=0,
                                          atol=1e-6, obj=name)
            continue
        with h5py.File(ours) as a, h5py.File(theirs) as b:
            assert sorted(a) == sorted(b), name
            for key in a:
                if name.startswith("results/svd/"):
                    np.testing.assert_allclose(a[key]["S"][:], b[key]["S"][:], rtol=0, atol=1e-6,
                                               err_msg=f"{name}:{key}")
                else:
                    np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=f"{name}:{key}")
