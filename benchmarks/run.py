"""Running a matrix: TOML files of models x datasets x seeds x devices, and the runner that fills
them.  This module is the front door; the work is done along the flow by::

    lmladder.matrix   load and check a matrix file; its cells
    lmladder.plan     resolve one cell once: budget, threads, seed, device, limits, key
    lmladder.cell     measure one planned cell in its own process -> a Record
    lmladder.runner   claim cells under locks, run them (here or on Ray), write records

The matrix file format is documented in :mod:`lmladder.matrix`.

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
