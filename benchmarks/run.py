"""Running a matrix: TOML files of models x datasets x seeds x devices, and the runner that fills
them.  This module is the front door; the work is done along the flow by::

    lmladder.matrix   load and check a matrix file; its cells
    lmladder.plan     resolve one cell once: budget, threads, seed, device, limits, key
    lmladder.cell     measure one planned cell in its own process -> a Record
    lmladder.runner   claim cells under locks, run them (here or on Ray), write records



A matrix file::

    [matrix]
    description = "..."
    datasets = ["synthetic", "ptb"]
    seeds = [0]
    devices = ["auto"]          # "cpu", "cuda", "cuda:N", "mps" or "auto" (the best available)
    threads = "auto"            # torch threads per cell, or a number (recorded in every cell)
    time_limit = 1800           # optional: seconds one cell may take before it is stopped
    memory_limit_mib = 8192     # optional: address-space limit of one cell's process
    tasks = ["cloze"]           # optional: task scores for every cell (lmladder list tasks)
    fractions = [0.25, 1.0]     # optional: a learning curve, each share of the training data
    expected_time = "5 min on 2 CPU cores"  # optional: how long a whole run takes, as measured
                                # (or "estimate ..."); shown by ``lmladder list matrices``
    resources = { cpus = 2, gpus = 0 }  # optional: what a cell asks a Ray cluster for (default:
                                # cpus = the cell's threads, gpus = 1 on a CUDA device, else 0)

    [scoring]                   # lmladder.api.ContextPolicy + accuracy_tokens (the tokens
                                # scored for top-k accuracy and a masked LM's pseudo-ppl)
    reset_at_boundary = false
    accuracy_tokens = 5000

    [[models]]
    name = "kn5"                # a registry entry (lmladder list models)
    label = "KN5"               # optional, defaults to name; unique within the matrix
    config = { order = 5 }      # optional overrides of the entry's hyperparameters
    budget = { seconds = 60 }   # optional: tokens, steps, seconds
    datasets = ["ptb"]          # optional: only these of the matrix's datasets
    threads = 1                 # optional: overrides [matrix] threads
    time_limit = 600            # optional: overrides [matrix] time_limit
    tasks = []                  # optional: overrides [matrix] tasks
    fractions = [0.0625, 1.0]   # optional: overrides [matrix] fractions
    resources = { gpus = 1 }    # optional: overrides [matrix] resources, key by key

A learning-curve point trains on the first share of the training split (cut at a line end) under
the budget scaled by the same share, and is scored on the same valid and test tokens.  Tasks that
train their own models (sentiment, translation) build them from the cell's entry and config and
train them under the cell's budget; their scores go into the cell's record.
"""

from lmladder.cell import Phase, failed_record, run_cell
from lmladder.matrix import (
    MATRIX_DIR,
    Cell,
    Matrix,
    MatrixError,
    ModelSection,
    Resources,
    list_matrices,
    load_matrix,
    read_matrix_section,
    select_cells,
)
from lmladder.plan import CellPlan, Limits, auto_threads, plan_cell
from lmladder.runner import (
    EXECUTORS,
    ExecutorError,
    ResultsError,
    Runner,
    RunSummary,
    prepare_results_dir,
    run_matrix,
)

__all__ = [
    "EXECUTORS", "MATRIX_DIR", "Cell", "CellPlan", "ExecutorError", "Limits", "Matrix",
    "MatrixError", "ModelSection", "Phase", "Resources", "ResultsError", "RunSummary", "Runner",
    "auto_threads", "failed_record", "list_matrices", "load_matrix", "plan_cell",
    "prepare_results_dir", "read_matrix_section", "run_cell", "run_matrix", "select_cells",
]
