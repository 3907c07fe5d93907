"""Time to a target perplexity: our CPU recipe against PyTorch's word-language-model example.

    python -m lmladder.perf.time_to_ppl --data-dir DIR \
        --wlm-dir PATH/examples/word_language_model [--target 120.7] [--together] [--out F.json]

Both programs train a 2x200 LSTM on PTB with ``--threads`` torch threads each (default 1), from
a fresh process, and both are timed the same way: wall-clock seconds from the launch of the
process to the output line that reports a validation perplexity at or below ``--target`` (so
reading the corpus, building the model and every evaluation count for both).  The default
target, 120.7, is the validation perplexity of Zaremba et al.'s small LSTM (2014, Table 1; test
114.5).

- **Ours**: the model ``--recipe`` (a label) of matrix ``--matrix``, with its budget: by default
  the LSTM of ``cpu-ladder`` (the shipped reference: tied weights, AdamW with warm-up and a cosine
  decay over 7 epochs, dropout 0.1, batch 20 x 35), which evaluates the whole valid split every
  500 steps and trains its whole schedule (the cosine ends where it was planned), then is scored
  on test.
- **The example**: ``main.py`` with its own defaults (LSTM 2x200 untied, SGD lr 20 divided by 4
  whenever validation stops improving, clipping 0.25, dropout 0.2, batch 20 x 35, 40 epochs).
  It evaluates once per epoch, so it is seen reaching the target at an epoch's end: the figure
  printed is that time, and the previous epoch's end (when it had not reached it yet) is printed
  as the earliest it could have; the ratio is given against both.  It is stopped once it has
  reached the target (or after ``--max-minutes``), since only the time to the target is asked of
  it.

``--together`` runs both at the same time (one thread each on a 2-core machine; each then sees
the same contention), else one after the other.  Without ``--wlm-dir`` the example's figures
are reported missing, never remembered.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmladder.api import Budget, build_config
from lmladder.data import locate
from lmladder.matrix import MatrixError, ModelSection, load_matrix
from lmladder.perf.neural_peers import ptb_folder, thread_env
from lmladder.registry import UnknownNameError

LSTM = "LSTM small 2x200, tied, AdamW"  # cpu-ladder's LSTM
ZAREMBA_SMALL_VALID = 120.7  # Zaremba et al. 2014, Table 1, small LSTM (test 114.5)
_EPOCH = re.compile(r"end of epoch\s+(\d+) \|.*valid ppl\s+([\d.]+)")
_TEST = re.compile(r"End of training \| test loss\s+[\d.]+ \| test ppl\s+([\d.]+)")


@dataclass
class Run:
    """One program's trace: (seconds since launch, valid ppl, tokens or epochs) per evaluation."""

    program: str
    recipe: str
    points: list[dict] = field(default_factory=list)
    reached: float | None = None  # seconds at the first point at or below the target
    not_before: float | None = None  # the point before it (the example: the previous epoch)
    test_ppl: float | None = None
    exit: str = ""

    def line(self, target: float) -> str:
        if self.reached is None:
            last = self.points[-1] if self.points else None
            seen = f"best valid {min(p['valid_ppl'] for p in self.points):.1f}" if last else \
                "no evaluation"
            return f"{self.program}: did not reach {target:g} ({seen}; {self.exit})"
        return (f"{self.program}: valid ppl <= {target:g} after {self.reached / 60:.1f} min"
                + (f" (not yet at {self.not_before / 60:.1f} min)" if self.not_before else ""))


def _watch(argv: list[str], run: Run, parse, target: float, *, stop_at_target: bool,
           max_seconds: float, cwd: Path | None = None, threads: int = 1) -> Run:
    """Run ``argv``; ``parse(line)`` -> a point dict (with ``valid_ppl``) or a test ppl float."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=thread_env(threads), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(max_seconds, proc.kill)
    watchdog.start()
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            now = time.monotonic() - start
            tail = (tail + [line.rstrip()])[-10:]
            found = parse(line)
            if isinstance(found, float):
                run.test_ppl = found
            elif found is not None:
                found["seconds"] = now
                run.points.append(found)
                print(f"  {run.program}: {now / 60:6.1f} min  valid ppl {found['valid_ppl']:.1f}",
                      flush=True)
                if run.reached is None and found["valid_ppl"] <= target:
                    run.reached = now
                    run.not_before = run.points[-2]["seconds"] if len(run.points) > 1 else None
                    if stop_at_target:
                        proc.terminate()
                        break
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        code = proc.wait()
        watchdog.cancel()
    run.exit = ("stopped at the target" if run.reached is not None and stop_at_target
                else f"exit status {code}" if code else "finished")
    if code and run.reached is None:
        run.exit += ": " + " | ".join(tail[-3:])
    return run


def _example_point(line: str):
    if m := _EPOCH.search(line):
        return {"epoch": int(m[1]), "valid_ppl": float(m[2])}
    if m := _TEST.search(line):
        return float(m[1])
    return None


def _ours_point(line: str):
    if line.startswith("{"):
        point = json.loads(line)
        return float(point["test_ppl"]) if "test_ppl" in point else point
    return None


def recipe_of(matrix: str, label: str) -> ModelSection:
    """The model of ``matrix`` labelled (or named) ``label``; SystemExit listing them if none."""
    models = load_matrix(matrix).models
    for section in models:
        if label in (section.label, section.name):
            return section
    raise SystemExit(f"matrix {matrix} has no model {label!r}; its models: "
                     + ", ".join(repr(s.label or s.name) for s in models))


def worker(matrix: str, recipe: str, data_dir: str | None, seed: int) -> int:
    """Train ``recipe`` of ``matrix`` on PTB with its budget, printing one JSON line per
    evaluation (valid ppl) and a last one with the test perplexity."""
    from lmladder.data import load_dataset
    from lmladder.registry import build
    from lmladder.scoring import score_split

    section = recipe_of(matrix, recipe)
    data = load_dataset("ptb", data_dir)
    model = build(section.name, {**section.config, "seed": seed})
    budget = build_config(Budget, section.budget, where="budget")

    def show(progress) -> None:
        if "valid_nll" in progress.metrics:
            print(json.dumps({"valid_ppl": math.exp(progress.metrics["valid_nll"]),
                              "tokens": progress.done if progress.unit == "tokens" else None}),
                  flush=True)

    model.fit(data.train.ids, data.vocab, budget=budget, valid=data.valid.ids, callback=show)
    test, _ = score_split(model, data.test, data.vocab)
    print(json.dumps({"test_ppl": test.ppl}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmladder.perf.time_to_ppl",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="corpus root (else $LMLADDER_DATA)")
    parser.add_argument("--wlm-dir", type=Path, default=None,
                        help="pytorch/examples' word_language_model folder (holds main.py)")
    parser.add_argument("--matrix", default="cpu-ladder", help="the matrix holding our recipe")
    parser.add_argument("--recipe", default=LSTM, help="our model's label in --matrix")
    parser.add_argument("--target", type=float, default=ZAREMBA_SMALL_VALID,
                        help="validation perplexity to reach (default: Zaremba small, 120.7)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per program")
    parser.add_argument("--together", action="store_true",
                        help="run both programs at once (else one after the other)")
    parser.add_argument("--max-minutes", type=float, default=120.0,
                        help="stop a program after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the traces as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.matrix, args.recipe, args.data_dir, args.seed)
    if args.threads < 1 or args.target <= 1 or args.max_minutes <= 0:
        parser.error("--threads >= 1, --target > 1 and --max-minutes > 0, please")
    try:  # a wrong matrix or name fails here, before anything runs
        recipe_of(args.matrix, args.recipe)
    except (MatrixError, UnknownNameError) as err:
        parser.error(str(err))
    root = locate("ptb", args.data_dir)
    limit = args.max_minutes * 60
    ours = Run("lmladder", args.recipe)
    ours_argv = [sys.executable, "-m", "lmladder.perf.time_to_ppl", "--worker", "--matrix",
                 args.matrix, "--recipe", args.recipe, "--data-dir", str(root),
                 "--seed", str(args.seed)]
    jobs = [lambda: _watch(ours_argv, ours, _ours_point, args.target, stop_at_target=False,
                           max_seconds=limit, threads=args.threads)]
    example = Run("word_language_model example", "its defaults: LSTM 2x200 untied, SGD lr 20")
    tmp = tempfile.TemporaryDirectory(prefix="lmladder-ttp-")
    if args.wlm_dir is not None:
        main_py = args.wlm_dir / "main.py"
        if not main_py.is_file():
            parser.error(f"--wlm-dir {args.wlm_dir}: no main.py there (give the "
                         "word_language_model folder of a pytorch/examples checkout)")
        data = ptb_folder(root, Path(tmp.name) / "ptb")
        wlm_argv = [sys.executable, str(main_py), "--data", str(data),
                    "--save", str(Path(tmp.name) / "model.pt")]
        jobs.append(lambda: _watch(wlm_argv, example, _example_point, args.target,
                                   stop_at_target=True, max_seconds=limit, cwd=args.wlm_dir,
                                   threads=args.threads))
    print(f"time to valid ppl {args.target:g} on PTB, {args.threads} thread(s) per program, "
          f"{'together' if args.together else 'one after the other'} "
          f"({os.cpu_count()} CPUs here)", flush=True)
    with tmp:
        if args.together:
            threads = [threading.Thread(target=job) for job in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for job in jobs:
                job()
    print()
    for run in (ours, example):
        if run.points or run.exit:
            print(run.line(args.target))
    if ours.test_ppl is not None:
        print(f"lmladder final: valid {ours.points[-1]['valid_ppl']:.1f}, "
              f"test {ours.test_ppl:.1f}")
    if ours.reached and example.reached:
        ratio = ours.reached / example.reached
        line = f"ratio lmladder / example: {ratio:.2f}"
        if example.not_before:
            line += f" (at most {ours.reached / example.not_before:.2f} against the earliest)"
        print(line)
    elif args.wlm_dir is None:
        print("example: missing (no --wlm-dir)")
    if args.out:
        args.out.write_text(json.dumps({"target": args.target, "threads": args.threads,
                                        "together": args.together,
                                        "runs": [asdict(ours), asdict(example)]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
