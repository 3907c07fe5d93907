"""Quality and speed of the n-gram family on PTB, beside KenLM and nltk.lm run in the same session.

Usage (corpora from ``--data-dir`` or ``$LMLADDER_DATA``)::

    python -m lmladder.perf.ngram --kenlm-bin /path/to/kenlm/build/bin
    python -m lmladder.perf.ngram --kenlm-bin DIR --repeats 5 --skip-models --skip-nltk
    python -m lmladder.perf.ngram --nltk-score-tokens 200 --nltk-train-tokens 200000

What is timed
-------------
* Our models (table 1): ``fit`` on the training split and ``token_logprobs`` over the test split
  (medians of ``--repeats``, scoring after one warm-up call); perplexity from
  :func:`lmladder.scoring.score_split`.
* KenLM (table 2, ``--kenlm-bin``: the folder holding ``lmplz``, ``build_binary`` and ``query``),
  modified Kneser-Ney 5-grams, each program as a fresh process, ours and KenLM's interleaved
  ``--repeats`` times, wall time and the child's peak RSS (GNU ``/usr/bin/time -f %M``):

  - estimation: ``python -m lmladder.perf.ngram_tools estimate --order 5 --text train.txt --out
    DIR`` (writes lmladder's model folder: the checkpoint and the query image; also timed with
    ``--arpa``, writing ARPA as lmplz does) against ``lmplz -o 5 -S 1G --text train.txt --arpa
    F`` (ARPA), and our ``fit`` alone (in process) against the same lmplz run;
  - scoring the test split repeated ``--copies`` times (1,648,600 tokens for 20: words and one
    ``</s>`` per line, as KenLM counts): ``NGramLM.token_logprobs`` on ids (steady state, hash
    tables built beforehand), and ``lmladder score DIR test.txt --phases`` (the installed
    command: start the interpreter, map the saved image, read, split, map and score; its phases
    from its stderr, the rest of the wall time as start-up, imports and exit) against ``query -v
    summary`` on lmplz's model after ``build_binary`` (its probing hash tables, read from the
    page cache as ours are; ``os.sync()`` first, so no write-back of the freshly written model
    files runs during either query).

  ``lmplz`` refuses ``<unk>`` in its training text, so KenLM's copies of the texts call PTB's
  ``<unk>`` ``<unk>_`` (an ordinary word, as lmladder treats it).  Both perplexities are printed,
  and our model's ARPA export is run through ``build_binary`` and ``query`` as well: the same
  model must give the same perplexity in both programs.
* nltk.lm (``KneserNeyInterpolated(3)``, ``WittenBellInterpolated(3)``), in this run: ``fit`` on
  the same training lines, padded the nltk way (``padded_everygram_pipeline``:
  ``<s> <s> .. </s> </s>``), everygram generation included; scoring = ``model.score(word, context)``
  for the first ``--nltk-score-tokens`` test tokens (words and one ``</s>`` per line, context the
  two previous padded tokens), which is all nltk can do in reasonable time (its Kneser-Ney scores
  ~8 tokens/s).  The ratios compare ours with nltk on the same training tokens (ours refit on the
  subset when ``--nltk-train-tokens`` is given) and on scoring throughput.

No figure of a peer is remembered here: without ``--kenlm-bin`` (or with a program missing) the
KenLM table says which figures are missing and why.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmladder.api import Budget
from lmladder.baselines.ngram import NGramLM
from lmladder.corpus import Dataset
from lmladder.data import load_dataset, locate
from lmladder.scoring import score_split
from lmladder.timing import peak_rss_mib, reset_peak_rss

KENLM_PROGRAMS = ("lmplz", "build_binary", "query")
TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time, for a child's peak RSS

MODELS = [  # (label, config)
    ("KN5 (modified)", {"order": 5, "smoothing": "modified-kneser-ney"}),
    ("KN3 (modified)", {"order": 3, "smoothing": "modified-kneser-ney"}),
    ("KN5 (one discount)", {"order": 5, "smoothing": "kneser-ney"}),
    ("KN3 (one discount)", {"order": 3, "smoothing": "kneser-ney"}),
    ("Absolute discounting 3", {"order": 3, "smoothing": "absolute-discounting"}),
    ("Absolute discounting 5", {"order": 5, "smoothing": "absolute-discounting"}),
    ("Witten-Bell 3", {"order": 3, "smoothing": "witten-bell"}),
    ("Witten-Bell 5", {"order": 5, "smoothing": "witten-bell"}),
    ("Add-one 2", {"order": 2, "smoothing": "add-k", "k": 1.0}),
    ("KN5 (modified), across lines", {"order": 5, "smoothing": "modified-kneser-ney",
                                      "cross_boundary": True}),
]


def time_ours(ds: Dataset, config: dict, *, repeats: int = 3, train_tokens: int | None = None
              ) -> dict:
    """Fit ``NGramLM(**config)`` ``repeats`` times and score the test split; figures as a dict
    (``peak_rss_mib``: the process's peak resident memory while fitting, dataset included)."""
    gc.collect()
    fits, model = [], None
    budget = Budget(tokens=train_tokens)
    reset_peak_rss()
    for _ in range(repeats):
        model = NGramLM(**config)
        t = time.perf_counter()
        model.fit(ds.train.ids, ds.vocab, budget=budget)
        fits.append(time.perf_counter() - t)
    peak = peak_rss_mib()
    metrics, logprobs = score_split(model, ds.test, ds.vocab, name=str(config))
    scores = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.token_logprobs(ds.test.ids)
        scores.append(time.perf_counter() - t)
    return {"ppl": metrics.ppl, "logprobs": logprobs,
            "fit_s": statistics.median(fits), "fit_spread": (min(fits), max(fits)),
            "score_tok_s": len(ds.test.ids) / statistics.median(scores),
            "params": model.num_parameters(), "peak_rss_mib": peak}


def nltk_lines(ds: Dataset, split: str, max_tokens: int | None = None) -> list[list[str]]:
    """The split's lines as word lists (boundary removed), cut after ``max_tokens`` tokens."""
    words = ds.vocab.decode(ds.splits[split].ids[:max_tokens])
    lines, cur = [], []
    for w in words:
        if w == ds.vocab.boundary:
            lines.append(cur)
            cur = []
        else:
            cur.append(w)
    if cur:
        lines.append(cur)
    return lines


def time_nltk(ds: Dataset, cls_name: str, order: int, *, train_tokens: int | None,
              score_tokens: int) -> dict:
    """Fit nltk.lm's ``cls_name`` on the training lines and score the first test tokens."""
    import nltk.lm
    from nltk.lm.preprocessing import padded_everygram_pipeline

    lines = nltk_lines(ds, "train", train_tokens)
    t = time.perf_counter()
    grams, vocab_text = padded_everygram_pipeline(order, lines)
    lm = getattr(nltk.lm, cls_name)(order)
    lm.fit(grams, vocab_text)
    fit_s = time.perf_counter() - t

    queries = []  # (word, context) for the first score_tokens test tokens
    for line in nltk_lines(ds, "test"):
        padded = ["<s>"] * (order - 1) + line + ["</s>"]
        for i in range(order - 1, len(padded)):
            queries.append((padded[i], tuple(padded[i - order + 1 : i])))
        if len(queries) >= score_tokens:
            break
    queries = queries[:score_tokens]
    t = time.perf_counter()
    probs = [lm.score(w, c) for w, c in queries]
    score_s = time.perf_counter() - t
    logs = np.log(np.maximum(probs, 1e-300))
    del lm
    gc.collect()
    return {"fit_s": fit_s, "score_tok_s": len(queries) / score_s, "tokens": len(queries),
            "ppl": math.exp(-logs.mean()), "train_lines": len(lines)}


# ---------------------------------------------------------------------------------------------
# Whole programs: ours and KenLM's, each a fresh process


@dataclass(frozen=True)
class Run:
    """One finished child process: wall seconds, peak resident memory (MiB; NaN without GNU
    ``time``) and its output."""

    seconds: float
    peak_mib: float
    stdout: str
    stderr: str


def run_process(cmd: list[str], *, stdin: Path | None = None, env: dict | None = None) -> Run:
    """Run ``cmd`` to the end: its wall time, and its peak RSS as ``/usr/bin/time -f %M`` reports
    it (a child forked from this large process would inherit its peak in ``os.wait4``'s rusage;
    ``time`` forks from a small process).  A failing program raises RuntimeError with the command
    and the end of its stderr."""
    with tempfile.TemporaryDirectory() as tmp, open(stdin or os.devnull, "rb") as inp:
        peak_file = Path(tmp) / "peak"
        timed = [TIME, "-f", "%M", "-o", str(peak_file), *cmd] if TIME else cmd
        start = time.perf_counter()
        proc = subprocess.run(timed, stdin=inp, capture_output=True, env=env)
        seconds = time.perf_counter() - start
        peak = float(peak_file.read_text().split()[-1]) / 1024 if TIME else math.nan
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: "
                           f"{proc.stderr.decode().strip()[-500:]}")
    return Run(seconds, peak, proc.stdout.decode(), proc.stderr.decode())


def find_kenlm(bin_dir: str | None) -> tuple[dict[str, Path], str | None]:
    """KenLM's programs in ``bin_dir``, or why they cannot be run."""
    if bin_dir is None:
        return {}, "no --kenlm-bin given (the folder holding lmplz, build_binary and query)"
    programs = {name: Path(bin_dir) / name for name in KENLM_PROGRAMS}
    missing = [str(p) for p in programs.values() if not os.access(p, os.X_OK)]
    if missing:
        return {}, f"not executable or missing: {', '.join(missing)} (--kenlm-bin {bin_dir})"
    return programs, None


def write_texts(ptb: Path, work: Path, copies: int) -> dict[str, Path]:
    """The training text and the test text ``copies`` times, as they are and with ``<unk>``
    renamed ``<unk>_`` for KenLM (module docstring)."""
    train, test = (ptb / "ptb" / "ptb.train.txt").read_text(), (ptb / "ptb" / "ptb.test.txt"
                                                                 ).read_text()
    files = {"train": train, "test": test * copies,
             "train_kenlm": train.replace("<unk>", "<unk>_"),
             "test_kenlm": (test * copies).replace("<unk>", "<unk>_")}
    paths = {}
    for name, text in files.items():
        paths[name] = work / f"{name}.txt"
        paths[name].write_text(text)
    return paths


def summary(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt(values: list[float], unit: str, digits: int = 2) -> str:
    med, lo, hi = summary(values)
    if unit == "tok/s":
        return f"{med / 1e6:.2f}M [{lo / 1e6:.2f}-{hi / 1e6:.2f}M] tok/s"
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}] {unit}"


def stderr_seconds(run: Run) -> dict[str, float]:
    """The phases ``ngram_tools`` reports on stderr (``seconds<TAB>name value<TAB>...``)."""
    line = next(x for x in run.stderr.splitlines() if x.startswith("seconds\t"))
    return {k: float(v) for k, v in (f.split(" ") for f in line.split("\t")[1:])}


def query_figures(stdout: str) -> dict[str, float]:
    """Tokens and perplexity from our ``query`` (``name<TAB>value``) or KenLM's ``-v summary``."""
    out = {}
    for line in stdout.splitlines():
        key, _, value = line.partition("\t")
        if key in ("tokens", "Tokens:"):
            out["tokens"] = float(value)
        elif key in ("perplexity", "Perplexity including OOVs:"):
            out["ppl"] = float(value)
    return out


@dataclass
class Timings:
    """What :func:`interleave` measured: our in-process fit and scoring seconds, and each
    program's runs (``est``, ``est_arpa``, ``query``: ours; ``lmplz``, ``kquery``: KenLM's)."""

    fit_s: list[float]
    score_s: list[float]
    runs: dict[str, list[Run]]


def score_command() -> list[str]:
    """The ``lmladder score`` command installed beside this interpreter (the console script a
    user runs), else ``python -m lmladder score``."""
    script = Path(sys.executable).with_name("lmladder")
    return [str(script), "score"] if script.is_file() else [sys.executable, "-m", "lmladder",
                                                            "score"]


def interleave(ds: Dataset, texts: dict[str, Path], programs: dict[str, Path] | None, *,
               repeats: int, copies: int, work: Path) -> Timings:
    """Run ours and KenLM's programs in turn ``repeats`` times (module docstring), writing the
    models into ``work``; KenLM's are left out when ``programs`` is None."""
    ours = [sys.executable, "-m", "lmladder.perf.ngram_tools"]
    est = [*ours, "estimate", "--order", "5", "--text", str(texts["train"]),
           "--out", str(work / "kn5")]
    lmplz = ([str(programs["lmplz"]), "-o", "5", "-S", "1G", "--text", str(texts["train_kenlm"]),
              "--arpa", str(work / "lmplz.arpa")] if programs else [])
    timings = Timings([], [], {k: [] for k in ("est", "est_arpa", "lmplz", "query", "kquery")})
    model = NGramLM(order=5)
    for _ in range(repeats):
        t = time.perf_counter()
        model.fit(ds.train.ids, ds.vocab)
        timings.fit_s.append(time.perf_counter() - t)
    ids = np.tile(ds.test.ids, copies)
    model.token_logprobs(ids)  # build the hash tables
    for r in range(repeats):
        timings.runs["est"].append(run_process(est))
        timings.runs["est_arpa"].append(run_process([*est, "--arpa", str(work / "ours.arpa")]))
        if programs:
            timings.runs["lmplz"].append(run_process(lmplz))
            if r == 0:
                run_process([str(programs["build_binary"]), str(work / "lmplz.arpa"),
                             str(work / "lmplz.bin")])
        t = time.perf_counter()
        model.token_logprobs(ids)
        timings.score_s.append(time.perf_counter() - t)
        # both models' files were just written: on disk before either query is timed, so
        # neither competes with the kernel writing the other's (or its own) pages back
        os.sync()
        timings.runs["query"].append(run_process(
            [*score_command(), str(work / "kn5"), str(texts["test"]), "--phases"]))
        if programs:
            timings.runs["kquery"].append(run_process(
                [str(programs["query"]), "-v", "summary", str(work / "lmplz.bin")],
                stdin=texts["test_kenlm"]))
    return timings


def compare_with_kenlm(ds: Dataset, ptb: Path, programs: dict[str, Path] | None, why: str | None,
                       *, repeats: int, copies: int, work: Path) -> None:
    """Table 2 (module docstring): ours and KenLM's programs interleaved, medians and ratios."""
    texts = write_texts(ptb, work, copies)
    timings = interleave(ds, texts, programs, repeats=repeats, copies=copies, work=work)

    runs = timings.runs
    tokens = len(ds.test.ids) * copies
    ours_q = query_figures(runs["query"][0].stdout)
    counted = {ours_q["tokens"], *(query_figures(r.stdout)["tokens"] for r in runs["kquery"])}
    assert counted == {tokens}, f"the programs counted {counted} tokens, not {tokens}"
    wall = {k: [r.seconds for r in v] for k, v in runs.items()}
    peak = {k: [r.peak_mib for r in v] for k, v in runs.items()}
    rate = {k: [tokens / s for s in v] for k, v in (
        ("score", timings.score_s), ("query", wall["query"]), ("kquery", wall["kquery"]))}
    phases = {k: [stderr_seconds(r)[k] for r in runs["query"]]
              for k in stderr_seconds(runs["query"][0])}
    # what the program does not time itself: the interpreter, its imports, exit
    phases["start_exit"] = [r.seconds - sum(stderr_seconds(r).values()) for r in runs["query"]]

    print(f"\nKenLM vs ours, PTB KN5 (modified Kneser-Ney 5-gram), scoring the test split "
          f"x{copies} = {tokens:,} tokens; medians of {repeats} interleaved runs [min-max]")
    print("  speed ratio = ours / KenLM in speed (> 1: ours faster); memory ratio = ours / KenLM "
          "(< 1: ours smaller)")
    if why:
        print(f"  KenLM's figures are missing: {why}")
    rows = [  # (figure, ours, KenLM's, unit)
        ("estimation: our fit alone (in process) vs lmplz", timings.fit_s, wall["lmplz"], "s"),
        ("estimation, whole process (ours: checkpoint)", wall["est"], wall["lmplz"], "s"),
        ("estimation, whole process (ours: + ARPA file)", wall["est_arpa"], wall["lmplz"], "s"),
        ("estimation peak RSS (ours: checkpoint)", peak["est"], peak["lmplz"], "MiB"),
        ("scoring: token_logprobs on ids vs query whole", rate["score"], rate["kquery"], "tok/s"),
        ("scoring, whole process (lmladder score vs query)", rate["query"], rate["kquery"],
         "tok/s"),
        ("scoring peak RSS", peak["query"], peak["kquery"], "MiB"),
    ]
    for label, mine, theirs, unit in rows:
        digits = 0 if unit == "MiB" else 2
        if unit == "MiB" and not TIME:
            print(f"  {label:50s} missing (no GNU time in /usr/bin or /bin to measure a child)")
            continue
        if not theirs:
            print(f"  {label:50s} ours {fmt(mine, unit, digits):30s} KenLM: missing")
            continue
        mine_med, theirs_med = statistics.median(mine), statistics.median(theirs)
        ratio = theirs_med / mine_med if unit == "s" else mine_med / theirs_med
        kind = "memory" if unit == "MiB" else "speed"
        print(f"  {label:50s} ours {fmt(mine, unit, digits):30s} "
              f"KenLM {fmt(theirs, unit, digits):30s} {kind} ratio {ratio:.2f}x")
    print("  ours, whole-process scoring phases (median s): " + ", ".join(
        f"{k} {statistics.median(v):.3f}" for k, v in phases.items())
        + "  (open: model.json checked, tables.bin mapped; read_score: the text read, split, "
        "mapped and scored in blocks; start_exit: interpreter, imports, exit)")
    print_perplexities(ours_q["ppl"], runs["kquery"], programs, work, texts)


def print_perplexities(ours: float, kenlm_runs: list[Run], programs: dict[str, Path] | None,
                       work: Path, texts: dict[str, Path]) -> None:
    """Our perplexity beside KenLM's (lmplz's model), and our model's ARPA file in KenLM's
    ``query``: the same model must score the same in both programs."""
    if not programs:
        print(f"  perplexity: ours {ours:.6f}; KenLM: missing")
        return
    theirs = query_figures(kenlm_runs[0].stdout)["ppl"]
    run_process([str(programs["build_binary"]), str(work / "ours.arpa"), str(work / "ours.bin")])
    same = query_figures(run_process([str(programs["query"]), "-v", "summary",
                                      str(work / "ours.bin")], stdin=texts["test"]).stdout)["ppl"]
    print(f"  perplexity: ours {ours:.6f}, KenLM (lmplz's model) {theirs:.6f}; our model's ARPA in "
          f"KenLM's query {same:.6f} (relative difference {abs(same / ours - 1):.1e})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None, help="folder holding ptb/ (else $LMLADDER_DATA)")
    ap.add_argument("--kenlm-bin", default=None,
                    help="folder with KenLM's lmplz, build_binary and query (built from source)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of every figure")
    ap.add_argument("--copies", type=int, default=20, help="test split copies KenLM-style scoring "
                    "reads (20: 1,648,600 tokens)")
    ap.add_argument("--skip-models", action="store_true", help="no table of our ten models")
    ap.add_argument("--nltk-train-tokens", type=int, default=None,
                    help="train nltk (and ours, for the ratio) on this many tokens (default all)")
    ap.add_argument("--nltk-score-tokens", type=int, default=100,
                    help="test tokens nltk's Kneser-Ney scores (Witten-Bell scores 20x as many)")
    ap.add_argument("--skip-nltk", action="store_true", help="no nltk.lm comparison")
    args = ap.parse_args(argv)
    for flag in ("repeats", "copies"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag} {getattr(args, flag)}: must be at least 1")

    ds = load_dataset("ptb", args.data_dir)
    print(f"PTB: {ds.train.num_tokens:,} training tokens, {ds.test.num_tokens:,} test tokens, "
          f"|V| = {len(ds.vocab):,}; {args.repeats} repeats, medians\n")
    ours = {}
    if not args.skip_models:
        print(f"{'model':32s} {'test ppl':>9s} {'fit s':>7s} {'score tok/s':>12s} "
              f"{'parameters':>11s} {'peak RSS MiB':>12s}")
        for label, config in MODELS:
            r = time_ours(ds, config, repeats=args.repeats)
            ours[label] = r
            print(f"{label:32s} {r['ppl']:9.2f} {r['fit_s']:7.2f} {r['score_tok_s']:12,.0f} "
                  f"{r['params']:11,d} {r['peak_rss_mib']:12,.0f}", flush=True)
        kn5, kn3 = ours["KN5 (modified)"], ours["KN3 (modified)"]
        print("\nBars:")
        for what, value, ok in (
                ("KN5 test ppl in [140, 150]", f"{kn5['ppl']:.2f}", 140 <= kn5["ppl"] <= 150),
                ("KN3 test ppl in [145, 160]", f"{kn3['ppl']:.2f}", 145 <= kn3["ppl"] <= 160),
                ("KN5 fit <= 30 s", f"{kn5['fit_s']:.2f} s", kn5["fit_s"] <= 30),
                ("KN5 scoring >= 300,000 tok/s", f"{kn5['score_tok_s']:,.0f}",
                 kn5["score_tok_s"] >= 3e5)):
            print(f"  {what}: {value} {'PASS' if ok else 'FAIL'}")

    programs, why = find_kenlm(args.kenlm_bin)
    work = Path(tempfile.mkdtemp(prefix="lmladder-ngram-"))
    try:
        compare_with_kenlm(ds, locate("ptb", args.data_dir), programs or None, why,
                           repeats=args.repeats, copies=args.copies, work=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.skip_nltk:
        return

    print("\nnltk.lm, measured in this run "
          f"(train on {'all' if args.nltk_train_tokens is None else f'{args.nltk_train_tokens:,}'}"
          f" training tokens):")
    for cls_name, label, score_tokens in (
            ("KneserNeyInterpolated", "KN3 (modified)", args.nltk_score_tokens),
            ("WittenBellInterpolated", "Witten-Bell 3", 20 * args.nltk_score_tokens)):
        n = time_nltk(ds, cls_name, 3, train_tokens=args.nltk_train_tokens,
                      score_tokens=score_tokens)
        config = dict(MODELS)[label]
        mine = ours.get(label)
        if mine is None or args.nltk_train_tokens is not None:
            mine = time_ours(ds, config, repeats=args.repeats, train_tokens=args.nltk_train_tokens)
        same = mine["logprobs"][: n["tokens"]]
        print(f"  {cls_name}(3): fit {n['fit_s']:.1f} s on {n['train_lines']:,} lines; scored "
              f"{n['tokens']:,} test tokens at {n['score_tok_s']:,.1f} tok/s; ppl on them "
              f"{n['ppl']:.1f} (ours {label}: {math.exp(-np.mean(same)):.1f})")
        print(f"    ours {label} is {n['fit_s'] / mine['fit_s']:,.0f}x faster to train "
              f"({mine['fit_s']:.2f} s) and {mine['score_tok_s'] / n['score_tok_s']:,.0f}x faster "
              f"to score ({mine['score_tok_s']:,.0f} tok/s)", flush=True)


if __name__ == "__main__":
    main()
