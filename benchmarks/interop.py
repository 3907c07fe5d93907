"""``lmladder export-arpa``: an n-gram model as an ARPA file, for KenLM, SRILM and ``arpa:PATH``.

    lmladder export-arpa --model-dir DIR -o FILE.arpa
    lmladder export-arpa --model NAME --dataset NAME [--data-dir DIR] [--config KEY=VALUE ...]
                         -o FILE.arpa

The model is a saved n-gram model folder (``lmladder run --save-models`` keeps one per cell, or
``LanguageModel.save``) or a registry n-gram entry fitted now on the dataset's training split,
with ``--config`` overrides (values are TOML: ``order=4``, ``prune=1e-7``; a bare word is a
string: ``smoothing=witten-bell``).  A pruned model exports pruned.  The command prints the
n-grams per order, as the file's header lists them, and the file's size.  What the file holds
and how ``<s>``, ``</s>`` and ``<unk>`` are written: :mod:`lmladder.baselines.arpa`.

The harness names model families only through the registry, so "an n-gram model" here is any
model with a ``to_arpa(path)`` method.  ``arpa:PATH`` and ``saved:DIR`` (and folders saved from
them) are refused with what to do instead: copy the ARPA file, or export the saved folder with
``--model-dir``.  The output may not overwrite an input (:func:`lmladder.files.check_output`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lmladder import registry
from lmladder.api import CheckpointError, LanguageModel, read_checkpoint
from lmladder.data import CORPORA, DataError, load_dataset, locate
from lmladder.files import check_output

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover -- Python 3.10
    import tomli as tomllib


ARPA, SAVED = "arpa:", "saved:"  # registry prefixes of models that are files already


class ExportError(ValueError):
    """A mistake in an ``export-arpa`` request; the message names the folder, model or key."""


def add_export_arpa_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``export-arpa`` command to ``subparsers`` (argparse's ``add_subparsers()``)."""
    p = subparsers.add_parser("export-arpa", help="write an n-gram model as an ARPA file "
                              "(for KenLM, SRILM, or arpa:PATH)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", metavar="DIR",
                        help="a saved n-gram model folder (lmladder run --save-models)")
    source.add_argument("--model", metavar="NAME",
                        help="an n-gram registry entry (lmladder list models), fitted now")
    p.add_argument("--dataset", metavar="NAME", help="with --model: the corpus to fit it on")
    p.add_argument("--data-dir", help="folder holding the corpora (else $LMLADDER_DATA, cache)")
    p.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="with --model: hyperparameter overrides, e.g. order=4 prune=1e-7")
    p.add_argument("-o", "--output", required=True, metavar="FILE.arpa", help="the ARPA file")
    return p


def export_arpa(args: argparse.Namespace) -> int:
    """Handle ``lmladder export-arpa`` (see the module docstring); returns the exit code.

    The output is checked before anything is loaded or fitted: it may not overwrite the saved
    model folder read, a corpus file, a result record or any file in a model folder
    (:func:`lmladder.files.check_output`)."""
    if args.model_dir:
        check_output(args.output, model_folders=[Path(args.model_dir)], error=ExportError,
                     example="model.arpa")
        model = _saved_model(Path(args.model_dir))
    else:
        _not_exportable(args.model)
        check_output(args.output, files=_corpus_files(args.dataset, args.data_dir),
                     error=ExportError, example="model.arpa")
        model = _fitted_model(args)
    try:
        path = model.to_arpa(args.output)
    except ValueError as err:  # e.g. add-k smoothing, or words with whitespace
        raise ExportError(f"cannot write {args.output}: {err}") from err
    counts = arpa_counts(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:,.1f} MB, {path.stat().st_size:,} bytes)")
    for j, count in enumerate(counts, 1):
        print(f"  {j}-grams {count:>12,}")
    return 0


def _saved_model(folder: Path) -> LanguageModel:
    """The saved model in ``folder``, refused before loading unless it can write ARPA."""
    try:
        klass = registry.checkpoint_class(folder)
    except CheckpointError as err:
        raise ExportError(str(err)) from err
    if not hasattr(klass, "to_arpa"):
        try:
            source = str(read_checkpoint(folder)["config"].get("source"))
        except (CheckpointError, AttributeError):
            source = "?"
        if registry.class_path(klass) == registry.entry(ARPA).target:
            raise ExportError(f"{folder} holds a model read from the ARPA file {source}: that "
                              f"file is the ARPA export already; copy it (cp {source} OUT.arpa)")
        if registry.class_path(klass) == registry.entry(SAVED).target:
            raise ExportError(f"{folder} refers to the saved model folder {source}; export that "
                              f"one: lmladder export-arpa --model-dir {source} -o OUT.arpa")
        raise ExportError(f"{folder} holds {registry.class_path(klass)} (family {klass.family}), "
                          "not an n-gram model; export-arpa needs a folder saved from an n-gram "
                          "model (kn5, ngram, ...)")
    try:
        return klass.load(folder)
    except CheckpointError as err:
        raise ExportError(str(err)) from err


def _not_exportable(name: str) -> None:
    """Refuse ``arpa:PATH`` and ``saved:DIR``, saying what to do instead."""
    source = name.split(":", 1)[1] if ":" in name else ""
    if name.startswith(ARPA) and source:
        raise ExportError(f"--model {name}: {source} is an ARPA file already; copy it "
                          f"(cp {source} OUT.arpa) rather than export it")
    if name.startswith(SAVED) and source:
        raise ExportError(f"--model {name}: export a saved folder with --model-dir {source} "
                          "(it must hold an n-gram model)")


def _corpus_files(dataset: str | None, data_dir: str | None) -> list[tuple[str, Path]]:
    """The files dataset ``dataset`` is read from, where they can be found without fetching."""
    if not dataset:
        return []
    for prefix in ("text:", "chars:"):
        if dataset.startswith(prefix):
            path = Path(dataset[len(prefix):]).expanduser()
            paths = [path / f"{s}.txt" for s in ("train", "valid", "test")] \
                if path.is_dir() else [path]
            return [(f"corpus file of --dataset {dataset}", p) for p in paths]
    if dataset not in CORPORA:
        return []
    try:
        root = locate(dataset, data_dir, download=False)
    except (DataError, OSError, ValueError):
        return []  # loading it says what is missing
    return [(f"corpus file of --dataset {dataset}", root / f.path)
            for f in CORPORA[dataset].files.values()]


def _fitted_model(args: argparse.Namespace) -> LanguageModel:
    """Registry entry ``args.model`` with ``args.config``, fitted on ``args.dataset``."""
    if not args.dataset:
        raise ExportError(f"--model {args.model} needs --dataset NAME to fit it on")
    klass = registry.model_class(args.model)
    if not hasattr(klass, "to_arpa"):
        raise ExportError(f"model {args.model!r} is not an n-gram model (family "
                          f"{klass.family}); export-arpa writes n-gram models (kn5, ngram, ...)")
    model = registry.build(args.model, parse_overrides(args.config), where="--config")
    data = load_dataset(args.dataset, args.data_dir)
    model.fit(data.train.ids, data.vocab)
    return model


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["order=4", "smoothing=witten-bell"]`` -> ``{"order": 4, "smoothing": "witten-bell"}``:
    each value is read as TOML, or taken as a string when it is not TOML."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ExportError(f"--config {item!r}: expected KEY=VALUE, e.g. order=4")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[key.strip()] = value
    return out


def arpa_counts(path: Path) -> list[int]:
    """The n-gram counts per order an ARPA file's ``\\data\\`` header declares."""
    counts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                counts.append(int(line.split("=", 1)[1]))
            elif line.startswith("\\") and line.strip().endswith("-grams:"):
                break
    return counts
