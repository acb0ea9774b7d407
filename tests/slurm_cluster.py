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

    def job_done(self, job_id: str) -> bool:
        out = self.run("scontrol", "show", "job", job_id).stdout
        return any(f"JobState={s}" in out for s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"))

    def wait_for_job(self, job_id: str, timeout: float) -> str:
        """Wait until the job leaves the queue; return its final state."""
        _wait(lambda: self.job_done(job_id), timeout, f"SLURM job {job_id}")
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


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here (None when they can)."""
    if find("ip") is None:
        return "the ip command (iproute2) is not installed"
    name = f"mlpprobe{os.getpid()}"
    proc = subprocess.run([find("ip"), "netns", "add", name], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"ip netns add failed: {proc.stderr.strip()} (needs root or CAP_SYS_ADMIN)"
    subprocess.run([find("ip"), "netns", "del", name], capture_output=True)
    return None


class NetnsSlurmCluster(SlurmCluster):
    """A SLURM cluster of `nodes` hosts on one machine: each slurmd in its own network namespace, joined to the
    controller's by a veth pair on a bridge, with its own /etc/hosts (/etc/netns/<ns>/hosts, bind-mounted
    over its own in a private mount namespace) naming every host; one munge key, one slurmctld in this namespace. Only addresses and names it
    created: 10.231.<n>.0/24, hosts mlpctl and mlpnode1..N; the machine's hostname resolves, in each namespace,
    to that node's own address (gloo binds to it)."""

    def __init__(self, root: Path, nodes: int = 2):
        super().__init__(root)
        self.nodes = nodes
        self.tag = f"{os.getpid() % 10000}"
        self.subnet = f"10.231.{os.getpid() % 250 + 1}"
        self.bridge = f"mlpbr{self.tag}"
        self.names = [f"mlpnode{i}" for i in range(1, nodes + 1)]
        self.netns = [f"mlp{self.tag}n{i}" for i in range(1, nodes + 1)]
        self.addrs = [f"{self.subnet}.{10 + i}" for i in range(1, nodes + 1)]
        self.pidfiles = [root / f"slurmd-{n}.pid" for n in self.names] + [root / "slurmctld.pid", root / "munged.pid"]

    def _ip(self, *args: str, netns: str | None = None) -> None:
        cmd = [find("ip"), *(["netns", "exec", netns, find("ip")] if netns else []), *args]
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def _network(self) -> None:
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        hostname = socket.gethostname()
        for i, (ns, addr) in enumerate(zip(self.netns, self.addrs), 1):
            self._ip("netns", "add", ns)
            host_end, ns_end = f"mlpv{self.tag}h{i}", f"mlpv{self.tag}n{i}"
            self._ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            self._ip("link", "set", ns_end, "netns", ns)
            self._ip("link", "set", ns_end, "name", "eth0", netns=ns)
            self._ip("addr", "add", f"{addr}/24", "dev", "eth0", netns=ns)
            self._ip("link", "set", "eth0", "up", netns=ns)
            self._ip("link", "set", "lo", "up", netns=ns)
            self._ip("link", "set", host_end, "master", self.bridge)
            self._ip("link", "set", host_end, "up")
            hosts = Path("/etc/netns") / ns / "hosts"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            hosts.write_text("127.0.0.1 localhost\n" + f"{self.subnet}.1 mlpctl\n"
                             + "".join(f"{a} {n}\n" for a, n in zip(self.addrs, self.names))
                             + f"{addr} {hostname}\n")

    def _write_config(self) -> None:
        super()._write_config()
        text = self.conf.read_text()
        text = text.replace(f"SlurmctldHost={self.host}\n", f"SlurmctldHost={self.host}({self.subnet}.1)\n")
        r = self.root
        text = text.replace(f"SlurmdSpoolDir={r}/spool\n", f"SlurmdSpoolDir={r}/spool-%n\n")
        text = text.replace(f"SlurmdPidFile={r}/slurmd.pid\n", f"SlurmdPidFile={r}/slurmd-%n.pid\n")
        text = text.replace(f"SlurmdLogFile={r}/slurmd.log\n", f"SlurmdLogFile={r}/slurmd-%n.log\n")
        lines = [line for line in text.splitlines() if not line.startswith("NodeName=")]
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // self.nodes
        part = lines.index(next(line for line in lines if line.startswith("PartitionName=")))
        lines[part:part] = [f"NodeName={n} NodeAddr={a} CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN"
                            for n, a in zip(self.names, self.addrs)]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "NetnsSlurmCluster":
        self._network()
        self._write_config()
        r = self.root
        subprocess.run([find("munged"), "--force", f"--socket={r}/munge.socket", f"--key-file={r}/munge.key",
                        f"--pid-file={r}/munged.pid", f"--log-file={r}/munged.log",
                        f"--seed-file={r}/munged.seed"], check=True, env=self.env)
        subprocess.run([find("slurmctld"), "-f", str(self.conf)], check=True, env=self.env)
        for name, ns in zip(self.names, self.netns):
            (r / f"spool-{name}").mkdir(exist_ok=True)
            # The node's network namespace and a private mount namespace with its /etc/hosts (not `ip netns exec`,
            # which remounts /sys without the cgroup tree slurmd reads).
            script = f'mount --bind /etc/netns/{ns}/hosts /etc/hosts && exec "$0" -N {name} -f "$1"'
            subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--propagation", "private",
                            "sh", "-c", script, find("slurmd"), str(self.conf)], check=True, env=self.env)
        _wait(lambda: all(p.is_file() for p in self.pidfiles), 30, "the daemons' pid files")
        self.pids = [int(p.read_text().strip()) for p in self.pidfiles]
        _wait(lambda: self.run("sinfo", "-h", "-N", "-o", "%T").stdout.split().count("idle") == self.nodes, 60,
              f"{self.nodes} SLURM nodes to become idle")
        return self

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            for ns in self.netns:
                subprocess.run([find("ip"), "netns", "del", ns], capture_output=True)
                shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
            subprocess.run([find("ip"), "link", "del", self.bridge], capture_output=True)
