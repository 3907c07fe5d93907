"""Run a matrix's cells as Ray tasks: ``lmladder run MATRIX --executor ray [--address ...]``.

This process, the driver, claims each cell with the lock a local run takes, submits it as a Ray
task asking for its plan's ``resources`` (:class:`~lmladder.plan.CellPlan`), and writes each
record into the results folder as it comes back, through the same
:class:`~lmladder.runner.Runner` as a local run: resuming, skipping ok records, ``force`` and
concurrent runs behave alike.  A task receives the plan and calls
:func:`~lmladder.cell.run_cell`, so on its node the cell still runs in a child process of its
own, under its time and memory limits.  At most as many cells as the cluster has CPUs (plus one)
are claimed at a time, so a second run of the same folder still finds cells to take.

A task whose worker dies -- killed, out of memory, its node gone -- is run again once by Ray
(:data:`MAX_RETRIES`); when the retry dies too, the cell is recorded as failed with a one-line
reason naming the node.  A cell that asks for more than any node has is recorded as failed
rather than left waiting.  As a task starts it tells the driver its node through a queue actor
pinned to the driver's node; records of Ray cells name their node in ``provenance.node``.

Every node needs the same lmladder as the driver (a task on another version is a failed cell:
the record's key would lie), the corpora (``--data-dir`` is read on the node) and, for
``save_models``, the results folder at the same path (a shared file system): the cell's process
writes the model folder itself.  ``ray`` is imported only here, when this executor is used.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from pathlib import Path

from lmladder._version import __version__
from lmladder.cell import failed_record, run_cell
from lmladder.matrix import Cell
from lmladder.numbers import first_line
from lmladder.plan import CellPlan
from lmladder.record import Record
from lmladder.runner import BUSY, DONE, Claim, ExecutorError, Runner

MAX_RETRIES = 1  # Ray reruns a task once when its worker or node dies
POLL_S = 0.2  # how often the driver looks for started and finished cells
INSTALL = "pip install 'lmladder[ray]'"


def run_cells(runner: Runner, todo: list[Cell], *, address: str | None, data_dir=None,
              on_cell_start: Callable[[CellPlan, int, int], None] | None = None,
              on_wait: Callable[[Cell], None] | None = None,
              on_cell_placed: Callable[[CellPlan, str, int], None] | None = None) -> None:
    """Compute ``todo`` on the Ray cluster at ``address`` ("auto", "HOST:PORT"; None starts a
    Ray instance with this machine's CPUs, shut down at the end; a session this process already
    opened is used as it is).  ``on_cell_start`` is told as a cell is submitted,
    ``on_cell_placed(plan, node, attempt)`` as it starts on a node."""
    ray = _import_ray()
    started_here = _connect(ray, address)
    try:
        _Dispatcher(ray, runner, data_dir, on_cell_start, on_cell_placed).run(
            todo, on_wait)
    finally:
        if started_here:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"the ray executor needs Ray: {INSTALL}") from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Join (or start) the cluster; True when this call opened the session."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        ray.init(num_cpus=len(os.sched_getaffinity(0)), **quiet)
        return True
    del quiet["include_dashboard"]  # a cluster's head decides that
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ExecutorError(f"--address {address}: no Ray cluster answers there "
                            f"({first_line(err)}); "
                            "start one with `ray start --head` or give its HOST:PORT") from None
    return True


def _cell_task(queue, index: int, driver_version: str, plan: CellPlan, data_dir,
               save_model_to: Path | None) -> tuple[Record, str]:
    """One planned cell on a Ray worker: tell the driver where it runs, run it; (record, node
    id)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    queue.put((index, node))
    if __version__ != driver_version:
        return failed_record(plan, "VersionMismatch", (
            f"this node has lmladder {__version__}, the driver {driver_version}; install the "
            "same lmladder on every node")), node
    return run_cell(plan, data_dir=data_dir, save_model_to=save_model_to), node


class _Dispatcher:
    """Claims cells, keeps at most a cluster's worth of them in flight, writes what returns."""

    def __init__(self, ray, runner, data_dir, on_cell_start, on_cell_placed):
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.runner = ray, runner
        self.data_dir = data_dir
        self.on_cell_start, self.on_cell_placed = on_cell_start, on_cell_placed
        here = ray.get_runtime_context().get_node_id()
        # on the driver's node, so the queue outlives any worker node
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy":
                                          NodeAffinitySchedulingStrategy(here, soft=False)})
        self.task = ray.remote(_cell_task)
        self.in_flight: dict = {}  # ObjectRef -> Claim
        self.nodes_seen: dict[int, list[str]] = collections.defaultdict(list)  # index -> nodes
        self.names: dict[str, str] = {}  # node id -> "IP (id)"

    def run(self, todo: list[Cell], on_wait) -> None:
        try:
            busy = self._dispatch(list(enumerate(todo)), len(todo), block=False)
            for _, cell in busy:
                if on_wait:
                    on_wait(cell)
            self._dispatch(busy, len(todo), block=True)
        finally:  # interrupted: nothing keeps computing for nobody, no lock stays held
            for ref, claim in self.in_flight.items():
                self.ray.cancel(ref, force=True)
                claim.lock.release()

    def _dispatch(self, cells: list[tuple[int, Cell]], of: int, *, block: bool):
        """Run ``cells``; the ones another run holds (not ``block``ing) are returned."""
        pending, busy = collections.deque(cells), []
        while pending or self.in_flight:
            room = int(self.ray.cluster_resources().get("CPU", 0)) + 1 - len(self.in_flight)
            while pending and room > 0:
                index, cell = pending.popleft()
                claim = self.runner.claim(cell, index, of, block=block,
                                          force=False if block else None)
                if claim is BUSY:
                    busy.append((index, cell))
                elif claim is not DONE:
                    self._submit(claim)
                    room -= 1
            self._collect()
        return busy

    def _submit(self, claim: Claim) -> None:
        need = claim.plan.resources
        unfit = self._unschedulable(need)
        if unfit:
            self.runner.finish(claim, self._failed(claim, "Unschedulable", unfit))
            return
        if self.on_cell_start:
            self.on_cell_start(claim.plan, claim.index, claim.of)
        ref = self.task.options(num_cpus=need.cpus, num_gpus=need.gpus,
                                max_retries=MAX_RETRIES, retry_exceptions=False).remote(
            self.queue, claim.index, __version__, claim.plan, self.data_dir, claim.save_model_to)
        self.in_flight[ref] = claim

    def _unschedulable(self, need) -> str | None:
        """Why no live node can ever run a cell needing ``need`` (None when one can)."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n["Alive"]]
        if any(r.get("CPU", 0) >= need.cpus and r.get("GPU", 0) >= need.gpus for r in nodes):
            return None
        biggest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        return (f"needs {need.cpus:g} CPUs and {need.gpus:g} GPUs, but the largest node of the "
                f"cluster has {biggest.get('CPU', 0):g} CPUs and {biggest.get('GPU', 0):g} GPUs; "
                "lower threads or resources in the matrix")

    def _collect(self) -> None:
        """Announce cells that started, write the records of cells that ended."""
        if self.in_flight:
            self.ray.wait(list(self.in_flight), num_returns=1, timeout=POLL_S)
        self._announce()
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight),
                                 timeout=0) if self.in_flight else ([], [])
        for ref in ready:
            claim = self.in_flight.pop(ref)
            self.runner.finish(claim, self._outcome(ref, claim))

    def _announce(self) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                index, node = self.queue.get_nowait()
            except Empty:
                return
            claim = next((c for c in self.in_flight.values() if c.index == index), None)
            self.nodes_seen[index].append(self._name(node))
            if claim is not None and self.on_cell_placed:
                self.on_cell_placed(claim.plan, self._name(node), len(self.nodes_seen[index]))

    def _outcome(self, ref, claim: Claim) -> Record:
        """The cell's record, or a failed one saying which node lost it."""
        ray = self.ray
        try:
            record, node = ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # the task itself raised, outside run_cell
            cause = err.cause if err.cause is not None else err
            return self._failed(claim, type(cause).__name__, first_line(cause))
        except ray.exceptions.RayError as err:  # its worker or node died, retries included
            where = self.nodes_seen[claim.index]
            nodes = " then ".join(where) if where else "no node (it never started)"
            return self._failed(claim, type(err).__name__, (
                f"the Ray worker computing the cell died on {nodes} ({first_line(err)}); "
                f"tried {MAX_RETRIES + 1} times"))
        return _on_node(record, self._name(node))

    def _failed(self, claim: Claim, kind: str, message: str) -> Record:
        where = self.nodes_seen.get(claim.index)
        return _on_node(failed_record(claim.plan, kind, message), where[-1] if where else None)

    def _name(self, node_id: str) -> str:
        """A node as people read it: its address and the start of its id ("10.0.0.2 (3f2a9c1d)";
        nodes of one machine share the address)."""
        if node_id not in self.names:
            for n in self.ray.nodes():
                self.names[n["NodeID"]] = f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})"
        return self.names.get(node_id, f"node {node_id[:8]}")


def _on_node(record: Record, node: str | None) -> Record:
    """``record`` with the node that computed it in its provenance."""
    return record.replace(provenance={**record.provenance, "node": node})
