"""A one-node SLURM cluster on this machine, for tests: Debian's slurm-wlm and munge, run as root from a
folder of their own, so that they touch nothing of the machine's (no /etc/slurm, no system munged).

    with slurm_cluster.running(folder) as cluster:   # raises Unavailable (say why) if it cannot be had
        subprocess.run(["sbatch", ...], env=cluster.env)

`folder` gets munge/ (key, socket, log), slurm.conf, state/, spool/ and the daemons' logs. Every SLURM
command must run with cluster.env (SLURM_CONF points at our slurm.conf, which points at our munged).
The daemons are stopped by the pids we started, jobs first, whatever happened inside the block.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

PACKAGES = ["slurm-wlm", "munge"]
PROGRAMS = ["munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun"]
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # daemons live in sbin
PARTITION = "test"
MEMORY_MARGIN = 0.9  # slurmd drains a node that has less memory than slurm.conf says; leave some out
FINISHED_JOBS_KEPT_S = 3600  # MinJobAge: finished jobs stay in squeue, which answers the status queries


class Unavailable(Exception):
    """SLURM cannot be had here; the message says why (a test skips with it)."""


def which(program: str) -> str | None:
    return shutil.which(program, path=SEARCH_PATH)


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get when a program is missing; Unavailable says why not."""
    missing = [p for p in PROGRAMS if which(p) is None]
    if not missing:
        return
    why = f"SLURM is not installed ({', '.join(missing)} missing)"
    if os.geteuid() != 0:
        raise Unavailable(f"{why} and we are not root, so cannot apt-get install {' '.join(PACKAGES)}")
    if which("apt-get") is None:
        raise Unavailable(f"{why} and there is no apt-get to install {' '.join(PACKAGES)} with")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    out = subprocess.run(install, capture_output=True, text=True, env=env)
    if out.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env)
        out = subprocess.run(install, capture_output=True, text=True, env=env)
    still = [p for p in PROGRAMS if which(p) is None]
    if out.returncode != 0 or still:
        raise Unavailable(f"{why}, and `{' '.join(install)}` failed (exit {out.returncode}"
                          f"{', still missing ' + ', '.join(still) if still else ''}):\n"
                          f"{(out.stdout + out.stderr)[-2000:]}")


def node_resources() -> tuple[int, int]:
    """(CPUs, RealMemory in MB) of this machine, no more than slurmd will find (slurmd drains a node
    that has less than slurm.conf says): the CPUs this process may run on, MemTotal less a margin."""
    kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
              if line.startswith("MemTotal:"))
    return len(os.sched_getaffinity(0)), int(kb / 1024 * MEMORY_MARGIN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    folder: Path
    conf: Path
    host: str
    cpus: int
    mem_mb: int  # RealMemory of the node
    env: dict[str, str]  # for every SLURM command, and for Snakemake submitting to this cluster
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    node_state: str = ""

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        out = subprocess.run([which(cmd[0]) or cmd[0], *cmd[1:]], capture_output=True, text=True,
                             env=self.env, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}\n{self.logs()}")
        return out

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller still knows (finished ones included): id, state, comment, cpus, mem."""
        fields = ["id", "state", "comment", "cpus", "mem"]
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%C|%m")
        return [dict(zip(fields, line.split("|"))) for line in out.stdout.splitlines() if line.strip()]

    def logs(self, chars: int = 3000) -> str:
        """The tails of the daemons' logs, to show when something here fails."""
        parts = []
        for path in sorted(self.folder.glob("*.log")) + sorted(self.folder.glob("munge/*.log")):
            parts.append(f"--- {path.name}:\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def start(self) -> None:
        self._start_munged()
        self._start("slurmctld", [which("slurmctld"), "-D", "-f", str(self.conf)])
        self._wait("slurmctld answering", lambda: "UP" in self.run("scontrol", "ping", check=False).stdout)
        self._start("slurmd", [which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
        try:
            self._wait(f"node {self.host} idle", self._node_idle, timeout=90)
        except RuntimeError as error:
            raise RuntimeError(f"sinfo says: {self.node_state!r}\n{error}") from None

    def stop(self) -> None:
        """Cancel what still runs, then stop slurmd, slurmctld and munged by the pids we started."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                ids = [job["id"] for job in self.jobs() if job["state"] in ("PENDING", "RUNNING", "CONFIGURING",
                                                                              "COMPLETING")]
                if ids:
                    self.run("scancel", *ids, check=False)
                    time.sleep(2)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    def _start(self, name: str, cmd: list[str]) -> None:
        with open(self.folder / f"{name}.out", "w") as out:
            self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                                start_new_session=True)

    def _start_munged(self) -> None:
        """Our own munged with a fresh key, on a socket of its own (leaves any system munged alone)."""
        munge = self.folder / "munge"
        munge.mkdir(mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._start("munged", [which("munged"), "--foreground", "--force", f"--socket={munge / 'munge.socket'}",
                               f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"])

        def credential_works() -> bool:
            out = subprocess.run([which("munge"), "-n", f"--socket={munge / 'munge.socket'}"],
                                 capture_output=True, text=True)
            return out.returncode == 0 and out.stdout.startswith("MUNGE:")

        self._wait("munged answering", credential_works)

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "--noheader", "--Node", "--format=%N %t %E", check=False).stdout.split()
        self.node_state = " ".join(out)  # shown if it never gets idle: state and reason (e.g. drained, Low RealMemory)
        return out[:2] == [self.host, "idle"]

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"waiting for {what}: {name} exited with {proc.returncode}\n"
                                       f"{(self.folder / f'{name}.out').read_text()[-2000:]}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"the test SLURM cluster did not come up: no {what} after {timeout:.0f} s\n{self.logs()}")


def slurm_conf(folder: Path, host: str, cpus: int, mem_mb: int, munge_socket: Path) -> str:
    """slurm.conf for one node that is this machine; every path under `folder`."""
    return "\n".join([
        "ClusterName=specbasis-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU_Memory",  # CPUs and memory are what jobs ask for
        "AccountingStorageType=accounting_storage/none",  # no slurmdbd: sacct cannot answer
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        f"MinJobAge={FINISHED_JOBS_KEPT_S}",
        "ReturnToService=2",
        "KillWait=5",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


@contextlib.contextmanager
def running(folder: Path) -> Iterator[Cluster]:
    """A one-node cluster on this machine for the duration of the block (installing SLURM if need be)."""
    if os.geteuid() != 0:
        raise Unavailable("not root: slurmctld and slurmd must run as root here (SlurmUser=root) to start jobs")
    ensure_installed()
    folder = Path(folder)
    host = socket.gethostname().split(".")[0]  # `hostname -s`: the name slurmctld and slurmd go by
    cpus, mem_mb = node_resources()
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True)
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, host, cpus, mem_mb, folder / "munge" / "munge.socket"))
    # Inside each job, snakemake-executor-plugin-slurm-jobstep runs the rule under `srun` with every
    # SLURM_* variable but the allocation's ids removed, SLURM_CONF too: srun would look for
    # /etc/slurm/slurm.conf, where a real cluster keeps it. Ours is here, so srun is a shim that says so.
    shims = folder / "bin"
    shims.mkdir()
    (shims / "srun").write_text(f'#!/bin/sh\nSLURM_CONF="{conf}" exec "{which("srun")}" "$@"\n')
    (shims / "srun").chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": os.pathsep.join([str(shims), SEARCH_PATH])}
    cluster = Cluster(folder=folder, conf=conf, host=host, cpus=cpus, mem_mb=mem_mb, env=env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
