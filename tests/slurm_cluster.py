"""A one-node SLURM cluster (munged, slurmctld, slurmd) in a temp dir, for tests.

Daemons run as the current user with their state, sockets and logs under the
temp dir, and are stopped by PID afterwards.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SBIN_DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"]
NEEDED = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "sacct", "scontrol"]


def find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (str(Path(d) / binary) for d in SBIN_DIRS if (Path(d) / binary).is_file()), None)


def missing_binaries() -> list[str]:
    return [b for b in NEEDED if b != "sacct" and find(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


class SlurmCluster:
    def __init__(self, root: Path):
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pidfiles = [root / "slurmd.pid", root / "slurmctld.pid", root / "munged.pid"]
        self.pids: list[int] = []

    def _write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge.key"
        subprocess.run([find("mungekey"), "--create", "--keyfile", str(key)], check=True,
                       capture_output=True)
        key.chmod(0o600)
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        r = self.root
        self.conf.write_text(f"""\
ClusterName=mlperftest
SlurmctldHost={self.host}
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={self.host} CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""")

    def start(self) -> "SlurmCluster":
        self._write_config()
        r = self.root
        subprocess.run([find("munged"), "--force", f"--socket={r}/munge.socket", f"--key-file={r}/munge.key",
                        f"--pid-file={r}/munged.pid", f"--log-file={r}/munged.log",
                        f"--seed-file={r}/munged.seed"], check=True, env=self.env)
        subprocess.run([find("slurmctld"), "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run([find("slurmd"), "-f", str(self.conf)], check=True, env=self.env)
        _wait(lambda: all(p.is_file() for p in self.pidfiles), 30, "the daemons' pid files")
        self.pids = [int(p.read_text().strip()) for p in self.pidfiles]
        _wait(lambda: "idle" in self.run("sinfo", "-h", "-o", "%T").stdout, 60, "the SLURM node to become idle")
        return self

    def run(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([find(args[0]), *args[1:]], cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True)

    def wait_for_job(self, job_id: str, timeout: float) -> str:
        """Wait until the job leaves the queue; return its final state."""
        def done():
            out = self.run("scontrol", "show", "job", job_id).stdout
            return any(f"JobState={s}" in out for s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"))
        _wait(done, timeout, f"SLURM job {job_id}")
        out = self.run("scontrol", "show", "job", job_id).stdout
        return out.split("JobState=", 1)[1].split()[0]

    def stop(self) -> None:
        """SIGTERM each daemon by PID (slurmd, slurmctld, then munged) and wait for it to exit."""
        pids = self.pids or [int(p.read_text().strip()) for p in self.pidfiles if p.is_file()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            _wait(lambda: not Path(f"/proc/{pid}").exists(), 30, f"daemon {pid} to exit")
