"""``lmladder run --executor ray`` on a real two-node Ray cluster of this machine (issue 11).

The cluster is two sets of processes on loopback, as ``ray start`` makes them on two machines
(:class:`lmladder.perf.ray_cells.LocalCluster`): a head (1 CPU) and a worker node (1 CPU, a
process group of its own, so that the test can kill all its processes at once).  The matrix
has four cells (HMMs of 4 and 5 states for 5 EM steps, about 2 s each, submitted first; KN3 and
an add-one bigram, under a second; none imports torch).  As an HMM cell starts on the worker
node -- long enough to be killed mid-run -- the test kills that node: Ray reruns the cell on the
head and every cell must end with a record whose metrics equal, exactly, those of a local run
of the same matrix.  A second Ray run of the folder must then do nothing.

Where ray is missing the test is skipped, but fails under CI (``$CI`` set), which installs the
``ray`` extra.  ``ray stop`` runs however the test ends.  30-80 s on 2 busy CPU cores.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lmladder.perf.ray_cells import LocalCluster
from lmladder.results import load_records
from lmladder.run import CellPlan, load_matrix, run_matrix
from tests.conftest import require_extra
from tests.helpers import matrix_text

pytestmark = pytest.mark.slow  # starting and stopping the local cluster is most of 27 s

MATRIX = matrix_text([
    {"name": "hmm-hmmlearn", "label": "HMM 4", "budget": {"steps": 5}, "config": {"states": 4}},
    {"name": "hmm-hmmlearn", "label": "HMM 5", "budget": {"steps": 5}, "config": {"states": 5}},
    "kn3",
    "laplace2",
], scoring={"accuracy_tokens": 300}, description="ray test: n-grams and HMMs, tiny budgets",
    datasets=["synthetic"], devices=["cpu"], threads=1)


@pytest.fixture
def cluster():
    """A running cluster: a head and one worker node of 1 CPU each."""
    if importlib.util.find_spec("ray") is None:  # not imported: LocalCluster sets it up first
        require_extra("ray", "ray")
    with LocalCluster(head_cpus=1) as running:
        running.add_worker(cpus=1)
        yield running


def _metrics(folder: Path) -> dict:
    return {r.key: (r.status, r.metrics) for r in load_records(folder)}


def test_a_killed_worker_node_loses_no_cell_and_changes_no_number(cluster, tmp_path):
    (worker,), head, address = cluster.workers, cluster.head_id(), cluster.address
    (tmp_path / "tiny.toml").write_text(MATRIX)
    matrix = load_matrix(str(tmp_path / "tiny.toml"))
    placed: list[tuple[str, str, int]] = []

    def kill_the_worker_node(plan, node, attempt):
        assert isinstance(plan, CellPlan)
        placed.append((plan.label, node, attempt))
        if head[:8] not in node and plan.label.startswith("HMM"):
            cluster.kill(worker)

    on_ray = run_matrix(matrix, tmp_path / "ray", executor="ray", address=address,
                        on_cell_placed=kill_the_worker_node)
    assert on_ray.failed == [] and on_ray.done == 4
    killed = [label for label, node, _ in placed if head[:8] not in node and "HMM" in label]
    assert len(killed) == 1, placed
    assert (killed[0], 2) in {(label, attempt) for label, node, attempt in placed
                              if head[:8] in node}, f"{killed[0]} was not run again: {placed}"
    nodes = {r.cell.label: r.provenance["node"] for r in load_records(tmp_path / "ray")}
    assert head[:8] in nodes[killed[0]]

    local = run_matrix(matrix, tmp_path / "local")
    assert local.done == 4
    assert _metrics(tmp_path / "ray") == _metrics(tmp_path / "local")

    placed.clear()
    again = run_matrix(matrix, tmp_path / "ray", executor="ray", address=address,
                       on_cell_placed=kill_the_worker_node)
    assert (again.done, again.skipped_existing, placed) == (0, 4, [])
