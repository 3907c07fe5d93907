"""Model names -> ``"module:Class"`` plus preset hyperparameters, resolved lazily.

Built-in models are the ``_add`` lines below; :func:`register` adds more at run time.  Installed
distributions add their own through the entry-point group ``lmladder.models``
(``myunigram = "mypkg.models:UnigramLM"``); they are read on first need, checked (a
:class:`~lmladder.api.LanguageModel` subclass with a ``Config``, a name that is new), and any that
fails is reported once and skipped.

Each entry carries ``defaults`` (the named configuration, e.g. Zaremba's "small" LSTM) and
``smoke``: small overrides the contract tests and the CI smoke run use so every model is
exercised in seconds.  Nothing is imported until a model is built, so ``lmladder.baselines``
works without torch installed.  Checkpoints are loaded only into classes named here
(:func:`load_model`), so a ``model.json`` can never make lmladder import arbitrary code.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lmladder.api import LanguageModel, build_config, read_checkpoint

log = logging.getLogger(__name__)

PLUGIN_GROUP = "lmladder.models"
BUILT_IN = "lmladder"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class Entry:
    """A registered model: where its class is, its preset hyperparameters, and who provides it."""

    target: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    smoke: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    origin: str = BUILT_IN  # "lmladder", or the distribution an entry point came from


MODELS: dict[str, Entry] = {}  # built-in entries and those registered at run time


def register(name: str, target: str | type[LanguageModel], *, summary: str = "", smoke=None,
             **defaults) -> None:
    """Add model ``name``: ``target`` is ``"module:Class"`` or the class itself (handy in a
    notebook); ``defaults`` preset its hyperparameters, ``smoke`` shrinks it for smoke tests."""
    if not _NAME.fullmatch(name.rstrip(":")):
        raise ValueError(f"model name {name!r}: use letters, digits and . _ + - only")
    known = models()
    if name in known:
        raise ValueError(f"model {name!r} is registered already (by {known[name].origin})")
    if isinstance(target, type):
        why = _not_a_model(target)
        if why:
            raise TypeError(f"model {name!r}: {why}")
        target = class_path(target)
    _add(name, target, summary=summary, smoke=smoke, **defaults)


def _add(name: str, target: str, *, summary: str = "", smoke=None, **defaults) -> None:
    MODELS[name] = Entry(target, dict(defaults), dict(smoke or {}), summary)


def class_path(klass: type) -> str:
    """``"module:QualName"``, the form registry targets and checkpoints use."""
    return f"{klass.__module__}:{klass.__qualname__}"


# fmt: off
_NGRAM = "lmladder.baselines.ngram:NGramLM"
_RNN = "lmladder.neural.rnn:RNNLM"
_TRANSFORMER = "lmladder.neural.transformer:TransformerLM"

# ---- n-gram family (baselines/ngram.py; no smoke overrides: fitting is one counting pass) ----
_add("ngram", _NGRAM, summary="n-gram LM, any order and smoothing",
     order=3, smoothing="modified-kneser-ney")
_add("kn3", _NGRAM, summary="interpolated modified Kneser-Ney 3-gram",
     order=3, smoothing="modified-kneser-ney")
_add("kn5", _NGRAM, summary="interpolated modified Kneser-Ney 5-gram",
     order=5, smoothing="modified-kneser-ney")
_add("wb3", _NGRAM, summary="interpolated Witten-Bell 3-gram",
     order=3, smoothing="witten-bell")
_add("ad3", _NGRAM, summary="interpolated absolute discounting 3-gram",
     order=3, smoothing="absolute-discounting")
_add("laplace2", _NGRAM, summary="add-one bigram",
     order=2, smoothing="add-k", k=1.0)
_add("uniform", "lmladder.baselines.uniform:UniformLM",
     summary="every token equally likely: perplexity = vocabulary size (the floor)")
_add("unigram", _NGRAM, summary="add-one unigram (one per class: multinomial Naive Bayes)",
     order=1, smoothing="add-k", k=1.0)
_add("arpa:", "lmladder.baselines.ngram:ArpaLM",
     summary="backoff LM read from an ARPA file (KenLM, SRILM): arpa:<path>")

# ---- HMM family (baselines/hmm.py) ----
_add("hmm", "lmladder.baselines.hmm:HMM", summary="HMM, batched EM (numpy on CPU, torch on CUDA)",
     smoke={"states": 8, "max_iterations": 10}, states=64)
_add("hmm-hmmlearn", "lmladder.baselines.hmm_hmmlearn:HmmlearnHMM",
     summary="HMM, Baum-Welch by hmmlearn CategoricalHMM",
     smoke={"states": 6, "max_iterations": 5}, states=16)

# ---- neural family: RNNs and Transformer (neural/rnn.py, neural/transformer.py) ----
_RNN_SMOKE = dict(hidden=24, layers=2, bptt=12, batch_size=8, emb_size=None, dropout=0.0,
              optimizer="adamw", lr=1e-2, grad_clip=1.0, max_epochs=None)
for _cell in ("rnn-tanh", "rnn-relu", "gru", "lstm"):
    _add(_cell, _RNN, summary=f"{_cell} LM, 2x256 tied, dropout 0.2, AdamW",
         smoke=_RNN_SMOKE, cell=_cell, hidden=256, layers=2, dropout=0.2, tied=True,
         optimizer="adamw", lr=2e-3, weight_decay=0.01, grad_clip=1.0, bptt=35,
         batch_size=32, warmup_steps=50)
# Zaremba et al. 2014, Table 1 (PTB test ppl 114.5 / 82.7 / 78.4): SGD, lr 1, batch 20, untied.
# Their loss is summed over the bptt steps (mean over the batch); ours is the mean over tokens, so
# the same updates need lr = 1 x bptt and a clipping norm of (5 or 10) / bptt.  Their step decays
# (x0.5 after epoch 4, /1.2 after 6, /1.15 after 14) are replaced by a cosine over the same number
# of epochs, so a shorter budget still ends with a small learning rate.
_add("lstm-small", _RNN, summary="Zaremba small LSTM 2x200 (PTB test 114.5)",
     smoke=_RNN_SMOKE, cell="lstm", hidden=200, layers=2, dropout=0.0, init_range=0.1,
     optimizer="sgd", lr=20.0, grad_clip=0.25, bptt=20, batch_size=20, schedule="cosine",
     min_lr_ratio=0.01, max_epochs=13.0, eval_every=1000, eval_tokens=20000)
_add("lstm-medium", _RNN,
     summary="Zaremba medium LSTM 2x650, dropout 0.5 (PTB test 82.7)",
     smoke=_RNN_SMOKE, cell="lstm", hidden=650, layers=2, dropout=0.5, init_range=0.05,
     optimizer="sgd", lr=35.0, grad_clip=5.0 / 35, bptt=35, batch_size=20, schedule="cosine",
     min_lr_ratio=0.01, max_epochs=39.0, eval_every=1000, eval_tokens=20000)
_add("lstm-large", _RNN,
     summary="Zaremba large LSTM 2x1500, dropout 0.65 (PTB test 78.4)",
     smoke=_RNN_SMOKE, cell="lstm", hidden=1500, layers=2, dropout=0.65, init_range=0.04,
     optimizer="sgd", lr=35.0, grad_clip=10.0 / 35, bptt=35, batch_size=20, schedule="cosine",
     min_lr_ratio=0.01, max_epochs=55.0, eval_every=1000, eval_tokens=20000)
_TF_SMOKE = dict(layers=2, heads=2, width=32, context=16, batch_size=8, warmup_steps=0, lr=3e-3,
             dropout=0.0, max_epochs=None)
_add("transformer", _TRANSFORMER,
     summary="decoder-only Transformer, 4 layers x 256, context 128, rotary, tied",
     smoke=_TF_SMOKE, layers=4, heads=4, width=256, context=128, dropout=0.2,
     positions="rotary", batch_size=32, lr=1e-3, weight_decay=0.1, warmup_steps=100)
_add("transformer-char-small", _TRANSFORMER,
     summary="nanoGPT CPU size: 4 layers, 4 heads, 128 wide, context 64 (Shakespeare 1.88)",
     smoke=_TF_SMOKE, layers=4, heads=4, width=128, context=64, dropout=0.0,
     positions="learned", batch_size=12, lr=1e-3, min_lr_ratio=0.1, weight_decay=0.1,
     warmup_steps=100, eval_every=500, eval_tokens=20000)

# ---- Hugging Face models (neural/hf.py) ----
_add("hf:", "lmladder.neural.hf:HFPretrainedLM",
     summary="pretrained causal LM, zero-shot: hf:<hub id or local folder>")
_add("hf-gpt2", "lmladder.neural.hf:HFGPT2LM",
     summary="transformers GPT-2 from scratch, 4 layers x 256, context 128 (as transformer)",
     smoke=dict(n_layer=2, n_head=2, n_embd=32, context=16, batch_size=8, warmup_steps=0,
                lr=3e-3, dropout=0.0, max_epochs=None),
     n_layer=4, n_head=4, n_embd=256, context=128, dropout=0.2, batch_size=32, lr=1e-3,
     weight_decay=0.1, warmup_steps=100)
# Causal and pseudo scores (validation uses the pseudo ones) cost one forward pass per token (see
# neural/bert.py), so validation reads only the first 2,000 valid tokens.
_add("hf-bert", "lmladder.neural.bert:HFBertLM",
     summary="transformers BERT from scratch, masked-LM pre-training, 4 layers x 256, context 128",
     smoke=dict(n_layer=2, n_head=2, n_embd=32, context=16, batch_size=8, warmup_steps=0,
                lr=3e-3, dropout=0.0, max_epochs=None),
     n_layer=4, n_head=4, n_embd=256, context=128, dropout=0.1, batch_size=32, lr=1e-3,
     weight_decay=0.1, warmup_steps=100, eval_tokens=2000)

# ---- a model saved by another run (benchmarks/saved.py) ----
_add("saved:", "lmladder.saved:SavedLM",
     summary="a saved model folder (lmladder run --save-models), scored as is: saved:<folder>")
# fmt: on


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown(kind: str, name: str, valid) -> UnknownNameError:
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}")


# ---- plugins ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plugin:
    """An entry point that loaded and passed its group's check."""

    name: str
    obj: Any
    distribution: str


def load_entry_points(group: str, taken, check) -> list[Plugin]:
    """The entry points of ``group`` that load and pass ``check`` (``obj -> reason or None``).
    One whose name is not valid or is in ``taken`` (a built-in's), is a duplicate, fails to
    import, or fails the check is logged once as a warning naming it, and skipped."""
    loaded: dict[str, Plugin] = {}
    for ep in metadata.entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        obj, why = None, None
        if not _NAME.fullmatch(ep.name):
            why = "not a valid name (letters, digits and . _ + - only)"
        elif ep.name in taken:
            why = f"the name clashes with the built-in {ep.name!r}; rename the entry point"
        elif ep.name in loaded:
            why = f"the name is taken already by {loaded[ep.name].distribution}"
        else:
            try:
                obj = ep.load()
            except (Exception, SystemExit) as err:  # noqa: BLE001 -- any failure is reported
                why = f"import failed: {type(err).__name__}: {err}"
            else:
                why = check(obj)
        if why:
            log.warning("%s entry point %r = %r from %s skipped: %s",
                        group, ep.name, ep.value, dist, why)
        else:
            loaded[ep.name] = Plugin(ep.name, obj, dist)
    return list(loaded.values())


@functools.cache
def _plugins() -> dict[str, Entry]:
    """The ``lmladder.models`` entry points of installed distributions that pass the checks."""
    taken = {*MODELS, *(n.rstrip(":") for n in MODELS)}
    found = {}
    for p in load_entry_points(PLUGIN_GROUP, taken, _not_a_model):
        doc = (p.obj.__doc__ or "").strip().splitlines()
        found[p.name] = Entry(class_path(p.obj), summary=doc[0] if doc else "",
                              origin=p.distribution, smoke=dict(getattr(p.obj, "smoke_config", {})))
    return found


def _not_a_model(obj: Any) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, LanguageModel)):
        return f"{obj!r} is not a subclass of lmladder.LanguageModel"
    if getattr(obj, "__abstractmethods__", None):
        return f"abstract methods left: {', '.join(sorted(obj.__abstractmethods__))}"
    if not is_dataclass(getattr(obj, "Config", None)):
        return "its Config is not a dataclass"
    return None


def models() -> dict[str, Entry]:
    """Every model by name: the built-in and run-time ones, then installed plugins."""
    return {**MODELS, **_plugins()}


# ---- lookup and building -----------------------------------------------------------------------


def import_target(target: str) -> type:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def entry(name: str) -> Entry:
    known = models()
    if name in known:
        return known[name]
    prefix = name.split(":", 1)[0] + ":"
    if ":" in name and prefix in known:  # parametrised entries such as "hf:<id-or-path>"
        return known[prefix]
    raise unknown("model", name, known)


class ModelImportError(ImportError):
    """A registered model's class cannot be imported (a missing package, a broken module)."""


def model_class(name: str) -> type[LanguageModel]:
    target = entry(name).target
    try:
        return import_target(target)
    except (ImportError, AttributeError) as err:
        raise ModelImportError(
            f"model {name!r}: cannot import its class {target!r} ({err}); is the package that "
            "provides it installed?"
        ) from err


def resolved_config(name: str, overrides: Mapping[str, Any] | None = None, *,
                    smoke: bool = False) -> dict[str, Any]:
    """The hyperparameters ``name`` is built with: the entry's defaults, then ``smoke``, then
    ``overrides``; a parametrised name such as ``hf:<path>`` passes its part after ``:`` as
    ``source``."""
    e = entry(name)
    config = dict(e.defaults)
    if smoke:
        config.update(e.smoke)
    config.update(overrides or {})
    if ":" in name and name not in models():
        config.setdefault("source", name.split(":", 1)[1])
    return config


def build(name: str, overrides: Mapping[str, Any] | None = None, *, smoke: bool = False,
          where: str | None = None) -> LanguageModel:
    """Instantiate registry entry ``name`` with :func:`resolved_config`, checked first."""
    config = resolved_config(name, overrides, smoke=smoke)
    klass = model_class(name)
    build_config(klass.Config, config, where=where or f"model {name!r}")
    return klass(**config)


def load_model(directory: str | Path) -> LanguageModel:
    """Load a checkpoint folder written by ``LanguageModel.save``, whatever its model.

    The class named in ``model.json`` must be one this registry knows (built-in or an installed
    plugin); anything else is refused *before* it is imported.
    """
    return checkpoint_class(directory).load(directory)


def checkpoint_class(directory: str | Path) -> type[LanguageModel]:
    """The class a checkpoint folder's ``model.json`` names, imported only if this registry
    knows it (built-in or an installed plugin); otherwise :class:`UnknownNameError`."""
    meta = read_checkpoint(directory)
    known = {e.target for e in models().values()}
    if meta["class"] not in known:
        raise UnknownNameError(
            f"{Path(directory) / 'model.json'}: class {meta['class']!r} is not a model lmladder "
            "knows (built-in or from an installed lmladder.models plugin), so it is not loaded; "
            "install the package that provides it"
        )
    return import_target(meta["class"])
