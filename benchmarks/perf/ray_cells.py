"""Cells per hour of ``lmladder run --executor ray`` with one and with two Ray worker nodes.

Usage::

    python -m lmladder.perf.ray_cells [--cells N] [--cpus C]

What is timed
-------------
A Ray cluster of this machine's processes on loopback (:class:`LocalCluster`, as ``ray start``
makes one on several machines): a head with no CPUs (it runs the driver, nothing else) and
worker nodes of ``--cpus`` CPUs each.  The matrix is ``--cells`` equal cells: a 16-state HMM
(hmmlearn, 10 EM steps) on the synthetic corpus, one seed per cell, one thread and one CPU per
cell.  It is run with one worker node, then -- in the same invocation, on the same cluster --
with a second worker node added, each time into a fresh results folder; the wall time of
:func:`lmladder.run_matrix` (worker processes starting included, the cluster's start not) gives
cells per hour.  The ratio says how much of a second node the executor turns into throughput
(2.0 at best).  On a machine with fewer cores than the nodes claim, the nodes share them and the
ratio says so.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from lmladder.run import load_matrix, run_matrix

RAY = str(Path(sys.executable).with_name("ray"))
STORE_BYTES = 80 * 2**20  # object store per node: records are small
JOIN_S = 60  # seconds a node may take to join
# One token per process: ray reads its authentication settings once, when it is imported.
TOKEN = secrets.token_hex(32)

MATRIX = textwrap.dedent("""\
    [matrix]
    description = "ray_cells: equal cells"
    datasets = ["synthetic"]
    devices = ["cpu"]
    seeds = {seeds}
    threads = 1

    [scoring]
    accuracy_tokens = 300

    [[models]]
    name = "hmm-hmmlearn"
    budget = {{ steps = 10 }}
    config = {{ states = 16 }}
    """)


class LocalCluster:
    """A head and worker nodes started with ``ray start`` on 127.0.0.1, this process connected
    as their driver.  Each worker node is a process group of its own (``ray start --block``
    in a new session), so :meth:`kill` ends all of a node's processes as a dead machine would.
    Ray's files go to a short temporary folder (its socket paths have a length limit); on exit
    the driver disconnects and ``ray stop`` ends whatever is left.  Authentication is a token of
    this process's own."""

    def __init__(self, *, head_cpus: int = 1):
        self.head_cpus = head_cpus
        self.temp = tempfile.mkdtemp(prefix="lmray")
        self.address = f"127.0.0.1:{_free_port()}"
        self.workers: list[subprocess.Popen] = []
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
        self._saved_env = {k: os.environ.get(k) for k in self.env}

    def __enter__(self) -> LocalCluster:
        os.environ.update(self.env)  # before ray is imported (for the driver)
        import ray

        try:
            subprocess.run([RAY, "start", "--head", "--port", self.address.split(":")[1],
                            "--include-dashboard=false", *self._node_args(self.head_cpus)],
                           check=True, capture_output=True, timeout=120)
            ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _node_args(self, cpus: int) -> list[str]:
        return ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
                "--object-store-memory", str(STORE_BYTES), "--temp-dir", self.temp,
                "--disable-usage-stats"]

    def add_worker(self, cpus: int = 1) -> subprocess.Popen:
        """Start a worker node of ``cpus`` CPUs and wait until the cluster counts it."""
        alive = self.alive_nodes()
        proc = subprocess.Popen([RAY, "start", "--address", self.address, "--block",
                                 *self._node_args(cpus)], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(proc)
        deadline = time.monotonic() + JOIN_S
        while self.alive_nodes() <= alive:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"a worker node did not join {self.address} in {JOIN_S} s")
            time.sleep(0.5)
        return proc

    @staticmethod
    def alive_nodes() -> int:
        import ray

        return sum(n["Alive"] for n in ray.nodes())

    @staticmethod
    def head_id() -> str:
        """The head node's id (the driver's node)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    @staticmethod
    def kill(worker: subprocess.Popen) -> None:
        """SIGKILL every process of a worker node."""
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()
        for worker in self.workers:
            self.kill(worker)
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=60,
                       env={**os.environ, **self.env})
        shutil.rmtree(self.temp, ignore_errors=True)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cells_per_hour(cluster: LocalCluster, matrix, results: Path) -> float:
    """Run ``matrix`` on ``cluster`` into ``results`` (fresh); its cells per hour."""
    start = time.perf_counter()
    summary = run_matrix(matrix, results, executor="ray", address=cluster.address)
    seconds = time.perf_counter() - start
    if summary.failed or summary.done != len(summary.paths):
        raise RuntimeError(f"cells failed or were skipped: {summary.failed or summary.paths}")
    return summary.done / seconds * 3600


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmladder.perf.ray_cells", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=8, help="equal cells per run (default 8)")
    p.add_argument("--cpus", type=int, default=1, help="CPUs of each worker node (default 1)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lmladder-ray-cells-"))
    matrix_file = work / "ray_cells.toml"
    matrix_file.write_text(MATRIX.format(seeds=list(range(args.cells))))
    matrix = load_matrix(str(matrix_file))
    rates = {}
    try:
        with LocalCluster(head_cpus=0) as cluster:
            for nodes in (1, 2):
                cluster.add_worker(args.cpus)
                rates[nodes] = cells_per_hour(cluster, matrix, work / f"{nodes}-nodes")
                print(f"{nodes} worker node(s) of {args.cpus} CPU(s): {args.cells} cells, "
                      f"{rates[nodes]:,.0f} cells/hour", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"2 nodes / 1 node: {rates[2] / rates[1]:.2f}x  (machine: {os.cpu_count()} CPUs; "
          f"head node: 0 CPUs, runs the driver only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
