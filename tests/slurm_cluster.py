"""A private one-node Slurm cluster (munged, slurmctld, slurmd) for tests.

`slurm_cluster(root)` writes /etc/slurm/slurm.conf (the executor plugin's job step clears
SLURM_CONF, so the file must be at the default path), keeps state, spool, pid and log files
under `root`, starts the daemons in the foreground (so the pids it records are the daemons'
own), waits until the node is idle, and on exit cancels the cluster's jobs, stops exactly the
pids it started and puts back any previous slurm.conf. Needs root and Debian's slurm-wlm and
munge (`.ci/install-slurm.sh`). See ../shared/notes/slurm.md for why each setting is there.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_RUN = Path("/run/munge")
MUNGE_SOCKET = MUNGE_RUN / "munge.socket.2"
BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scancel")
NODE = "localhost"
PARTITIONS = ("debug", "gpu")  # the names profiles/slurm asks for; both on the one node


def missing_binaries() -> list[str]:
    """The Slurm/munge programs that are not installed (empty when all are)."""
    search = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/usr/bin"
    return [b for b in BINARIES if shutil.which(b, path=search) is None]


def _binary(name: str) -> str:
    search = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/usr/bin"
    found = shutil.which(name, path=search)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed: run .ci/install-slurm.sh")
    return found


@dataclass
class Cluster:
    """A running cluster: its folder, the partitions and the pids this process started."""

    root: Path
    partitions: tuple[str, ...] = PARTITIONS
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def pids(self) -> dict[str, int]:
        """Daemon name -> pid of what this cluster started (munged only when it had to)."""
        return {name: p.pid for name, p in self.processes.items()}

    @property
    def jobcomp(self) -> Path:
        """One line per finished job (jobcomp/filetxt): the evidence that needs no slurmdbd."""
        return self.root / "log" / "jobcomp.txt"

    def finished_jobs(self) -> list[dict[str, str]]:
        """Finished jobs as dicts of the jobcomp fields (JobId, Name, JobState, Partition,
        NodeList, ExitCode, ...)."""
        if not self.jobcomp.exists():
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line))
                for line in self.jobcomp.read_text().splitlines() if line.strip()]

    def job_processes(self, needle: str, workdir: Path) -> list[int]:
        """Pids of the processes of this cluster's jobs (below a slurmstepd, which Slurm
        detaches from slurmd) that run in ``workdir`` and whose command line contains
        ``needle``: what a test may kill to fail a job on the node."""
        parents: dict[int, int] = {}
        names: dict[int, str] = {}
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                names[int(proc.name)] = (proc / "comm").read_text().strip()
                parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
                if needle in command and Path(os.readlink(proc / "cwd")).is_relative_to(
                        workdir):
                    found.append(int(proc.name))
            except OSError:  # gone meanwhile
                continue

        def under_slurmstepd(pid: int) -> bool:
            while pid > 1:
                pid = parents.get(pid, 0)
                if names.get(pid, "").startswith("slurmstepd"):
                    return True
            return False

        return sorted(pid for pid in found if under_slurmstepd(pid))

    def log_tail(self, chars: int = 3000) -> str:
        """The end of each daemon's log, for failure messages."""
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """The node as `slurmd -C` sees it, at least 8 CPUs and 64 GB (config_overrides lets
    slurm.conf promise more than the machine has, so the rules' mem_mb fit a small runner,
    also train's 16 GB doubled on its retry)."""
    probe = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, check=True)
    cpus = int(re.search(r"\bCPUs=(\d+)", probe.stdout).group(1))
    memory = int(re.search(r"\bRealMemory=(\d+)", probe.stdout).group(1))
    return (f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={max(cpus, 8)} "
            f"RealMemory={max(memory, 64000)} State=UNKNOWN")


def slurm_conf(root: Path, partitions: tuple[str, ...] = PARTITIONS) -> str:
    """slurm.conf text for one node whose files all live under `root`."""
    lines = [
        "ClusterName=stflowtest",
        f"SlurmctldHost={NODE}",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "MinJobAge=300",  # squeue must still list finished jobs when the plugin asks
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={root / 'log' / 'jobcomp.txt'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        _node_line(),
    ]
    for i, name in enumerate(partitions):
        default = "YES" if i == 0 else "NO"
        lines.append(f"PartitionName={name} Nodes={NODE} Default={default} "
                     "MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def _munge_works() -> bool:
    if not MUNGE_SOCKET.exists():
        return False
    encode = subprocess.run([_binary("munge"), "-n"], capture_output=True)
    if encode.returncode != 0:
        return False
    decode = subprocess.run([_binary("unmunge")], input=encode.stdout, capture_output=True)
    return decode.returncode == 0


def _wait(check, timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}) while waiting for "
                                   f"{what}\n{cluster.log_tail()}")
        time.sleep(0.5)
    raise TimeoutError(f"no {what} after {timeout:.0f} s\n{cluster.log_tail()}")


def _node_idle() -> bool:
    out = subprocess.run([_binary("sinfo"), "-h", "-N", "-o", "%N %t"],
                         capture_output=True, text=True)
    return out.returncode == 0 and any(line.split() == [NODE, "idle"]
                                       for line in out.stdout.splitlines())


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM one daemon this module started (by its pid), SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cancel_jobs() -> None:
    """Cancel the jobs this cluster still holds (its controller only knows our jobs)."""
    out = subprocess.run([_binary("squeue"), "-h", "-t", "PD,R,CG", "-o", "%i"],
                         capture_output=True, text=True)
    ids = out.stdout.split() if out.returncode == 0 else []
    if ids:
        subprocess.run([_binary("scancel"), *ids], capture_output=True)
        time.sleep(2)  # let slurmd end the job steps before it stops


@contextmanager
def _conf_in_place(text: str) -> Iterator[None]:
    """Install /etc/slurm/slurm.conf for the duration; restore the previous file after.
    A lock file serialises clusters, which would otherwise share that one path."""
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    with open(SLURM_CONF.parent / ".stflow-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = SLURM_CONF.read_bytes() if SLURM_CONF.exists() else None
        SLURM_CONF.write_text(text)
        try:
            yield
        finally:
            if previous is None:
                SLURM_CONF.unlink(missing_ok=True)
            else:
                SLURM_CONF.write_bytes(previous)


def _start(cluster: Cluster, name: str, command: list[str], **kwargs) -> None:
    log = open(cluster.root / "log" / f"{name}.out", "w")  # noqa: SIM115 - the daemon owns it
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, **kwargs)
    log.close()
    cluster.processes[name] = process


@contextmanager
def slurm_cluster(root: Path, timeout: float = 60.0) -> Iterator[Cluster]:
    """Start munged (unless one already answers), slurmctld and slurmd; stop them after."""
    if os.geteuid() != 0:
        raise PermissionError("a private Slurm cluster needs root (it writes /etc/slurm)")
    cluster = Cluster(Path(root))
    for sub in ("state", "spool", "run", "log"):
        (cluster.root / sub).mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        stack.enter_context(_conf_in_place(slurm_conf(cluster.root)))

        @stack.callback
        def stop_all() -> None:
            if "slurmctld" in cluster.processes:
                _cancel_jobs()
            for process in reversed(list(cluster.processes.values())):
                _stop(process)

        if not _munge_works():
            MUNGE_RUN.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_RUN, "munge", "munge")
            MUNGE_RUN.chmod(0o755)
            MUNGE_SOCKET.unlink(missing_ok=True)  # a stale socket of a dead munged
            _start(cluster, "munged", [_binary("munged"), "--foreground", "--force",
                                       f"--pid-file={MUNGE_RUN / 'munged.pid'}"],
                   user="munge", group="munge")
            _wait(_munge_works, timeout, "munge credential", cluster)
        _start(cluster, "slurmctld", [_binary("slurmctld"), "-D", "-c", "-i"])
        _start(cluster, "slurmd", [_binary("slurmd"), "-D", "-N", NODE])
        _wait(_node_idle, timeout, f"idle node {NODE} in sinfo", cluster)
        yield cluster
