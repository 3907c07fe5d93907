"""The time-to-perplexity benchmark: the example's log lines parse, and a whole run (a tiny recipe
of ours against a stand-in for the example's main.py, on real PTB) finds when each program
reaches the target and stops the example there."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from lmladder.perf import time_to_ppl

# the example's epoch and test lines, as main.py prints them
EPOCH = ("| end of epoch   3 | time: 330.83s | valid loss  4.95 | valid ppl   141.18")
TEST = "| End of training | test loss  4.77 | test ppl   117.61"


def test_the_example_lines_parse():
    assert time_to_ppl._example_point(EPOCH) == {"epoch": 3, "valid_ppl": 141.18}
    assert time_to_ppl._example_point(TEST) == 117.61
    assert time_to_ppl._example_point("| epoch   1 |   200/ 1327 batches | lr 20.00") is None


def test_the_recipe_is_the_shipped_matrix_cell():
    section = time_to_ppl.recipe_of("cpu-ladder", time_to_ppl.LSTM)
    assert section.name == "lstm" and section.config["tied"] is True
    with pytest.raises(SystemExit, match="has no model 'nope'; its models: 'uniform'"):
        time_to_ppl.recipe_of("cpu-ladder", "nope")


def test_a_whole_run_times_both_programs(data_dir, tmp_path, capsys):
    matrix = tmp_path / "tiny.toml"
    matrix.write_text('[matrix]\ndatasets = ["ptb"]\n[[models]]\nname = "lstm"\nlabel = "tiny"\n'
                      'budget = { tokens = 6000 }\nconfig = { hidden = 16, layers = 1, '
                      'tied = true, optimizer = "adamw", lr = 1e-2, batch_size = 8, bptt = 10, '
                      'eval_every = 25, eval_tokens = 2000 }\n')
    wlm = tmp_path / "wlm"
    wlm.mkdir()
    # stands in for main.py: three epochs at 900, 400, 200 valid ppl; must be stopped at 400
    (wlm / "main.py").write_text(textwrap.dedent("""
        import time
        for epoch, ppl in ((1, 900.0), (2, 400.0), (3, 200.0)):
            time.sleep(0.2)
            print(f"| end of epoch {epoch:3d} | time: 0.20s | valid loss 6.00 | "
                  f"valid ppl {ppl:8.2f}", flush=True)
        raise SystemExit("ran past the target")
    """))
    out = tmp_path / "ttp.json"
    assert time_to_ppl.main(["--data-dir", str(data_dir), "--wlm-dir", str(wlm),
                             "--matrix", str(matrix), "--recipe", "tiny", "--target", "500",
                             "--together", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    result = json.loads(out.read_text())
    ours, example = result["runs"]
    assert [p["valid_ppl"] for p in example["points"]] == [900.0, 400.0]
    assert example["exit"] == "stopped at the target"
    assert example["reached"] > example["not_before"] > 0
    assert ours["points"] and ours["test_ppl"] > 1  # a 16-wide LSTM: finished, scored on test
    assert all(p["tokens"] <= 6000 for p in ours["points"])
    if ours["reached"] is not None:
        assert min(p["valid_ppl"] for p in ours["points"]) <= 500
        assert "ratio lmladder / example:" in shown
    assert "word_language_model example: valid ppl <= 500 after" in shown


def test_a_missing_example_folder_or_matrix_is_named(tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit):
        time_to_ppl.main(["--data-dir", str(data_dir), "--wlm-dir", str(tmp_path / "nowhere")])
    assert "no main.py there" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        time_to_ppl.main(["--data-dir", str(data_dir), "--matrix", str(tmp_path / "no.toml")])
    assert "no.toml" in capsys.readouterr().err


def test_without_the_example_its_figures_are_missing(data_dir, tmp_path, capsys):
    matrix = Path(tmp_path / "m.toml")
    matrix.write_text('[matrix]\ndatasets = ["ptb"]\n[[models]]\nname = "lstm"\nlabel = "t"\n'
                      'budget = { tokens = 2000 }\nconfig = { hidden = 8, layers = 1, '
                      'batch_size = 4, bptt = 5, optimizer = "adamw", lr = 1e-2 }\n')
    assert time_to_ppl.main(["--data-dir", str(data_dir), "--matrix", str(matrix),
                             "--recipe", "t", "--target", "2"]) == 0
    assert "example: missing (no --wlm-dir)" in capsys.readouterr().out
