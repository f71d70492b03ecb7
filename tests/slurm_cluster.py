"""A real SLURM cluster on this machine for the tests: one node, or two nodes (two slurmd).

Installs SLURM and munge with apt-get when they are missing (CI: a fresh Debian machine, as root;
`apt-get update` then install took 36 s here), starts munged, slurmctld and the slurmd(s) on their
own socket, ports and folders (so they never meet another cluster on the machine), and stops them
all afterwards: `scontrol shutdown` (the controller and every slurmd), then munged by its pid.
Clients find this cluster through SLURM_CONF. Recipe: ../shared/ENVIRONMENT.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
DAEMONS = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged"]


def installed() -> bool:
    return all(Path(path).is_file() for path in DAEMONS) and shutil.which("sbatch") is not None


def install() -> float:
    """apt-get update + install (only when missing); returns the seconds it took."""
    if installed():
        return 0.0
    if os.geteuid() != 0:
        raise RuntimeError("SLURM is not installed and installing it needs root (apt-get)")
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    return time.monotonic() - started


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


class SlurmCluster:
    """`nodes` = 1: this host as one node with both cores; 2: nodes n1 and n2 (one core each),
    both on 127.0.0.1, each its own slurmd."""

    def __init__(self, nodes: int):
        self.nodes = nodes
        self.folder = Path(tempfile.mkdtemp(prefix="emoscale-slurm-"))
        self.folder.chmod(0o755)  # munged runs as the munge user and must reach its socket
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.started_seconds = 0.0

    def write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        controller, *node_ports = free_ports(1 + self.nodes)
        folder = self.folder
        memory = 2000  # MB; at most the real memory, or the node drains
        lines = [
            "ClusterName=emoscaletest",
            f"SlurmctldHost={host}",
            f"SlurmctldPort={controller}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={folder}/munge/munge.socket",
            f"StateSaveLocation={folder}/state",
            f"SlurmdSpoolDir={folder}/spool-%n",
            f"SlurmctldPidFile={folder}/slurmctld.pid",
            f"SlurmdPidFile={folder}/slurmd-%n.pid",
            f"SlurmctldLogFile={folder}/slurmctld.log",
            f"SlurmdLogFile={folder}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"JobCompType=jobcomp/filetxt\nJobCompLoc={folder}/jobcomp.txt",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerParameters=sched_min_interval=0",
        ]
        if self.nodes == 1:
            lines.append(f"NodeName={host} Port={node_ports[0]} CPUs=2 RealMemory={memory}")
        else:
            for index, port in enumerate(node_ports, start=1):
                lines.append(
                    f"NodeName=n{index} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
                    f"CPUs=1 RealMemory={memory // 2}"
                )
        lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> SlurmCluster:
        started = time.monotonic()
        self.write_conf()
        munge = self.folder / "munge"
        munge.mkdir()
        shutil.chown(munge, "munge", "munge")
        subprocess.run(
            ["runuser", "-u", "munge", "--", "/usr/sbin/munged", f"--socket={munge}/munge.socket",
             f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log",
             f"--seed-file={munge}/munged.seed"],
            check=True, capture_output=True,
        )  # fmt: skip
        (self.folder / "state").mkdir()
        subprocess.run(["/usr/sbin/slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        names = [None] if self.nodes == 1 else [f"n{i}" for i in range(1, self.nodes + 1)]
        for name in names:
            subprocess.run(
                ["/usr/sbin/slurmd", "-f", str(self.conf), *(["-N", name] if name else [])],
                check=True, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = self.run("sinfo", "-h", "-N", "-o", "%T").stdout.split()
            if len(states) == self.nodes and all(state == "idle" for state in states):
                self.started_seconds = time.monotonic() - started
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SLURM nodes not idle after 60 s: {states}; logs in {self.folder}")

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), capture_output=True, text=True, env=self.env)

    def wait(self, job_id: str, timeout: float = 600) -> None:
        """Until no task of the job is in the queue."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-j", job_id).stdout.strip():
                return
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still queued after {timeout} s")

    def stop(self) -> None:
        self.run("scontrol", "shutdown")
        for pid_file in [self.folder / "slurmctld.pid", *self.folder.glob("slurmd-*.pid")]:
            wait_gone(pid_file)
        pid_file = self.folder / "munge" / "munged.pid"
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            wait_gone(pid_file)
        shutil.rmtree(self.folder, ignore_errors=True)  # its conf, logs, state and spool


def wait_gone(pid_file: Path, timeout: float = 20) -> None:
    """The daemon that wrote pid_file has exited (or kill it when it outstays the timeout)."""
    if not pid_file.is_file():
        return
    try:
        pid = int(pid_file.read_text())
    except ValueError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
