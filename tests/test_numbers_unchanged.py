"""The quick matrix's numbers and record keys survive refactoring: its synthetic cells, rerun
with one torch thread, give the file names (hence keys) and perplexities measured before the
typed plan/record refactor (tests/data/quick_synthetic_numbers.json); cells added to the matrix
since then are not compared."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lmladder.plan import Limits
from lmladder.run import MATRIX_DIR, load_matrix, run_matrix

pytestmark = pytest.mark.slow  # ~1 min: sixteen cells, every family

EXPECTED = json.loads((Path(__file__).parent / "data" / "quick_synthetic_numbers.json")
                      .read_text())["cells"]


def test_quick_matrix_synthetic_cells_keep_their_keys_and_numbers(tmp_path):
    text = (MATRIX_DIR / "quick.toml").read_text()
    text, count = re.subn(r'(?m)^datasets = \["synthetic", "ptb"\]$',
                          'datasets = ["synthetic"]', text)
    assert count == 1, "quick.toml's [matrix] datasets line changed; update this test"
    matrix_file = tmp_path / "quick.toml"  # same name: the matrix name is not in the key anyway
    matrix_file.write_text(text)
    summary = run_matrix(load_matrix(str(matrix_file)), tmp_path / "results",
                         limits=Limits(threads=1))
    assert summary.failed == [] and summary.skipped == []
    written = {p.name: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(EXPECTED) <= set(written)  # cells added since may stand beside them
    for name, want in EXPECTED.items():
        metrics = written[name]["metrics"]
        got = {"valid_ppl": metrics["valid"]["ppl"], "test_ppl": metrics["test"]["ppl"],
               "test_top1": metrics["test_accuracy"]["top1"]}
        assert got == pytest.approx(want, rel=1e-9), name
