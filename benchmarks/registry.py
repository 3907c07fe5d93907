"""Model names -> ``"module:Class"`` plus preset hyperparameters, resolved lazily.

Adding a model is one module, one line here, and (optionally) a row in a matrix.  Each entry
carries ``defaults`` (the named configuration, e.g. Zaremba's "small" LSTM) and ``smoke``: small
overrides the contract tests and the CI smoke run use so every model is exercised in seconds.
Nothing is imported until a model is built, so ``baselines`` works without torch installed.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.api import LanguageModel


@dataclass(frozen=True)
class Entry:
    target: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    smoke: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""


MODELS: dict[str, Entry] = {}


def register(name: str, target: str, *, summary: str = "", smoke=None, **defaults) -> None:
    if name in MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    MODELS[name] = Entry(target, dict(defaults), dict(smoke or {}), summary)


# fmt: off
# ---- n-gram family (baselines/ngram.py; no smoke overrides: fitting is one counting pass) ----
register("ngram", "baselines.ngram:NGramLM", summary="n-gram LM, any order and smoothing",
         order=3, smoothing="modified-kneser-ney")
register("kn3", "baselines.ngram:NGramLM", summary="interpolated modified Kneser-Ney 3-gram",
         order=3, smoothing="modified-kneser-ney")
register("kn5", "baselines.ngram:NGramLM", summary="interpolated modified Kneser-Ney 5-gram",
         order=5, smoothing="modified-kneser-ney")
register("wb3", "baselines.ngram:NGramLM", summary="interpolated Witten-Bell 3-gram",
         order=3, smoothing="witten-bell")
register("ad3", "baselines.ngram:NGramLM", summary="interpolated absolute discounting 3-gram",
         order=3, smoothing="absolute-discounting")
register("laplace2", "baselines.ngram:NGramLM", summary="add-one bigram",
         order=2, smoothing="add-k", k=1.0)

# ---- HMM family (baselines/hmm.py) ----
register("hmm", "baselines.hmm:HMM", summary="HMM, batched torch EM (CPU/CUDA)",
         smoke={"states": 8, "max_iterations": 10}, states=64)
register("hmm-hmmlearn", "baselines.hmm_hmmlearn:HmmlearnHMM",
         summary="HMM, Baum-Welch by hmmlearn CategoricalHMM",
         smoke={"states": 6, "max_iterations": 5}, states=16)

# ---- neural family: RNNs and Transformer (neural/rnn.py, neural/transformer.py) ----
_RNN_SMOKE = dict(hidden=24, layers=2, bptt=12, batch_size=8, emb_size=None, dropout=0.0,
                  optimizer="adamw", lr=1e-2, grad_clip=1.0, max_epochs=None)
for _cell in ("rnn-tanh", "rnn-relu", "gru", "lstm"):
    register(_cell, "neural.rnn:RNNLM", summary=f"{_cell} LM, 2x256 tied, dropout 0.2, AdamW",
             smoke=_RNN_SMOKE, cell=_cell, hidden=256, layers=2, dropout=0.2, tied=True,
             optimizer="adamw", lr=2e-3, weight_decay=0.01, grad_clip=1.0, bptt=35,
             batch_size=32, warmup_steps=50)
# Zaremba et al. 2014, Table 1 (PTB test ppl 114.5 / 82.7 / 78.4): SGD, lr 1, batch 20, untied.
# Their loss is summed over the bptt steps (mean over the batch); ours is the mean over tokens, so
# the same updates need lr = 1 x bptt and a clipping norm of (5 or 10) / bptt.  Their step decays
# (x0.5 after epoch 4, /1.2 after 6, /1.15 after 14) are replaced by a cosine over the same number
# of epochs, so a shorter budget still ends with a small learning rate.
register("lstm-small", "neural.rnn:RNNLM", summary="Zaremba small LSTM 2x200 (PTB test 114.5)",
         smoke=_RNN_SMOKE, cell="lstm", hidden=200, layers=2, dropout=0.0, init_range=0.1,
         optimizer="sgd", lr=20.0, grad_clip=0.25, bptt=20, batch_size=20, schedule="cosine",
         min_lr_ratio=0.01, max_epochs=13.0, eval_every=1000, eval_tokens=20000)
register("lstm-medium", "neural.rnn:RNNLM",
         summary="Zaremba medium LSTM 2x650, dropout 0.5 (PTB test 82.7)",
         smoke=_RNN_SMOKE, cell="lstm", hidden=650, layers=2, dropout=0.5, init_range=0.05,
         optimizer="sgd", lr=35.0, grad_clip=5.0 / 35, bptt=35, batch_size=20, schedule="cosine",
         min_lr_ratio=0.01, max_epochs=39.0, eval_every=1000, eval_tokens=20000)
register("lstm-large", "neural.rnn:RNNLM",
         summary="Zaremba large LSTM 2x1500, dropout 0.65 (PTB test 78.4)",
         smoke=_RNN_SMOKE, cell="lstm", hidden=1500, layers=2, dropout=0.65, init_range=0.04,
         optimizer="sgd", lr=35.0, grad_clip=10.0 / 35, bptt=35, batch_size=20, schedule="cosine",
         min_lr_ratio=0.01, max_epochs=55.0, eval_every=1000, eval_tokens=20000)
_TF_SMOKE = dict(layers=2, heads=2, width=32, context=16, batch_size=8, warmup_steps=0, lr=3e-3,
                 dropout=0.0, max_epochs=None)
register("transformer", "neural.transformer:TransformerLM",
         summary="decoder-only Transformer, 4 layers x 256, context 128, rotary, tied",
         smoke=_TF_SMOKE, layers=4, heads=4, width=256, context=128, dropout=0.2,
         positions="rotary", batch_size=32, lr=1e-3, weight_decay=0.1, warmup_steps=100)
register("transformer-char-small", "neural.transformer:TransformerLM",
         summary="nanoGPT CPU size: 4 layers, 4 heads, 128 wide, context 64 (Shakespeare 1.88)",
         smoke=_TF_SMOKE, layers=4, heads=4, width=128, context=64, dropout=0.0,
         positions="learned", batch_size=12, lr=1e-3, min_lr_ratio=0.1, weight_decay=0.1,
         warmup_steps=100, eval_every=500, eval_tokens=20000)

# ---- Hugging Face models (neural/hf.py) ----
register("hf:", "neural.hf:HFPretrainedLM",
         summary="pretrained causal LM, zero-shot: hf:<hub id or local folder>")
register("hf-gpt2", "neural.hf:HFGPT2LM",
         summary="transformers GPT-2 from scratch, 4 layers x 256, context 128 (as transformer)",
         smoke=dict(n_layer=2, n_head=2, n_embd=32, context=16, batch_size=8, warmup_steps=0,
                    lr=3e-3, dropout=0.0, max_epochs=None),
         n_layer=4, n_head=4, n_embd=256, context=128, dropout=0.2, batch_size=32, lr=1e-3,
         weight_decay=0.1, warmup_steps=100)
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


def import_target(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def entry(name: str) -> Entry:
    if name in MODELS:
        return MODELS[name]
    prefix = name.split(":", 1)[0] + ":"
    if prefix in MODELS:  # parametrised entries such as "hf:<id-or-path>"
        return MODELS[prefix]
    raise unknown("model", name, MODELS)


def model_class(name: str) -> type[LanguageModel]:
    return import_target(entry(name).target)


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
    if ":" in name and name not in MODELS:
        config.setdefault("source", name.split(":", 1)[1])
    return config


def build(name: str, overrides: Mapping[str, Any] | None = None, *, smoke: bool = False,
          where: str | None = None) -> LanguageModel:
    """Instantiate registry entry ``name`` with :func:`resolved_config`, checked first."""
    config = resolved_config(name, overrides, smoke=smoke)
    klass = model_class(name)
    from benchmarks.api import build_config

    build_config(klass.Config, config, where=where or f"model {name!r}")
    return klass(**config)
