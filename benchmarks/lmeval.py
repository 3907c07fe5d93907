"""lmladder models as lm-evaluation-harness models (model type ``lmladder``).

Any lmladder model -- loaded from a saved model folder, fitted here, or handed over from Python
-- answers lm-eval's three request types through the contract only (``token_logprobs``,
``next_token_ranks``, ``generate``), so every family works the same way::

    python -m lmladder.lmeval --model lmladder --model_args model=kn5-ptb \\
        --tasks lambada_standard           # kn5-ptb: a folder written by kn5.save(...)
    python -m lmladder.lmeval --model lmladder \\
        --model_args model=kn5,dataset=ptb,data_dir=~/corpora --tasks wikitext

``model=PATH`` loads a folder written by ``LanguageModel.save`` (or ``lmladder run
--save-models``); ``model=NAME,dataset=DS`` builds registry entry ``NAME`` and fits it on
dataset ``DS`` first (``data_dir=D``, ``budget_tokens=N``; any other key is a config override
of the entry, e.g. ``order=3``).  ``seed=S`` seeds sampled generations.  From Python, pass a
fitted model: ``simple_evaluate(model=LadderLM(model=kn5), tasks=[...])``.

Why ``python -m lmladder.lmeval`` and not ``lm_eval``: lm-eval 0.4.13 finds models only in its
own table (``lm_eval/models/__init__.py``) or in modules imported before it looks; it reads no
entry points, and ``--include_path`` adds tasks only.  ``python -m lmladder.lmeval ARGS`` imports
this module (which registers ``lmladder``) and then runs lm-eval's own command line with ``ARGS``
unchanged.  From Python, ``import lmladder.lmeval`` is all it takes.

Text <-> tokens
---------------
lm-eval hands over text; lmladder models read ids of their dataset's vocabulary.  The text is
cut the way the dataset was: at word level into whitespace-separated words with one boundary
token (``<eos>``) per newline, at character level into characters (``"\\n"`` is the boundary).
A text without a final newline ends without a boundary token: only what the text holds is
scored, as lm-eval's own models do.

Words outside the vocabulary become its unknown token (``<unk>``), so each is scored with the
probability of *all* unknown words together: cheaper than the word itself should be, and cheaper
the more rare words the training data had.  Scores of text with many such words flatter the
model; every request batch logs a warning with their number.  A vocabulary without an unknown
token (a character set that covers its corpus) cannot encode them at all: that is an error.

Context and continuation: ``context + continuation`` is tokenized as one text, and the
continuation's tokens are those that end after the context does.  When the split falls inside a
word (``"hel"`` + ``"lo world"``), the whole word ``hello`` is scored as part of the continuation
and the context keeps no partial word: a word-level model can only score whole words.  Character
models split exactly.  ``is_greedy`` holds when, at every continuation token, no entry of the
vocabulary is strictly more likely than that token (``next_token_ranks``; a tie at the top still
counts as greedy); open-vocabulary models (``hf:``) cannot rank alternatives and answer ``False``.

Generation (``generate_until``): greedy decoding (lm-eval's default, ``do_sample`` false or
``temperature`` 0) is ``model.generate`` with ``top_k=1``, ties broken by ``seed``; sampling passes
``temperature`` and ``top_k``.  ``max_gen_toks`` tokens (default 256) are generated and the text is
cut before the first ``until`` string.  The text continues the context: a word-level model's first
word gets a space before it unless the context ends with whitespace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmladder.api import Budget, LanguageModel, Vocab
from lmladder.data import load_dataset
from lmladder.registry import build, load_model

try:
    # lm-eval fills its registry with its own models only while the registry is empty; import
    # them first, or registering ``lmladder`` would hide ``hf``, ``vllm``, ... in this process
    import lm_eval.models  # noqa: F401
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as err:  # the optional extra
    _NEEDS = "lmladder.lmeval needs lm-evaluation-harness: pip install 'lmladder[lm-eval]'"
    if __name__ == "__main__":  # python -m lmladder.lmeval [--help]: one line, no traceback
        import sys

        sys.stderr.write(f"python -m lmladder.lmeval: error: {_NEEDS}\n")
        sys.exit(2)
    raise ImportError(_NEEDS) from err

log = logging.getLogger(__name__)

MODEL_TYPE = "lmladder"
DEFAULT_MAX_GEN_TOKS = 256
_GEN_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_k"}
_WORDS = re.compile(r"\n|\S+")  # a newline is a token (the boundary); other whitespace separates
_CHARS = re.compile(r".", re.DOTALL)


# --------------------------------------------------------------------------------------------
# Text <-> tokens


@dataclass(frozen=True)
class Encoded:
    """A text in the vocabulary's ids: ``ids`` int64 ``(N,)``, ``ends`` int64 ``(N,)`` (the
    character offset where each token's text ends), and ``oov``, how many tokens were not in the
    vocabulary and became its unknown token."""

    ids: np.ndarray
    ends: np.ndarray
    oov: int


def encode_text(text: str, vocab: Vocab) -> Encoded:
    """Cut ``text`` the way ``vocab``'s dataset was cut (see the module docstring) and map the
    pieces to ids, unknown ones to ``vocab.unk``; ValueError if the vocabulary has none."""
    pattern = _CHARS if vocab.separator == "" else _WORDS
    pieces = [(m.group(), m.end()) for m in pattern.finditer(text)]
    tokens = [vocab.boundary if t == "\n" else t for t, _ in pieces]
    unknown = [t for t in tokens if t not in vocab.index]
    if unknown and vocab.unk is None:
        raise ValueError(
            f"{unknown[0]!r} is not in the model's vocabulary of {len(vocab)} tokens, which has "
            "no unknown token; use a model fitted on a dataset whose vocabulary covers the task"
        )
    ends = np.fromiter((e for _, e in pieces), dtype=np.int64, count=len(pieces))
    return Encoded(vocab.encode(tokens), ends, len(unknown))


def continuation_text(ids: np.ndarray, vocab: Vocab, context: str) -> str:
    """The running text of generated ``ids`` as it continues ``context``: tokens joined by the
    separator, a newline per boundary, and a separator first unless the context is empty or
    ends with whitespace (or the first token is a boundary)."""
    text = vocab.detokenize(ids)
    starts_word = len(ids) > 0 and int(ids[0]) != vocab.boundary_id
    if starts_word and context and not context[-1].isspace():
        return vocab.separator + text
    return text


def cut_at(text: str, until: Sequence[str]) -> str:
    """``text`` up to (without) the earliest occurrence of any string of ``until``."""
    cuts = [i for i in (text.find(u) for u in until if u) if i >= 0]
    return text[: min(cuts)] if cuts else text


# --------------------------------------------------------------------------------------------
# The LM


@register_model(MODEL_TYPE)
class LadderLM(LM):
    """An lmladder model behind lm-eval's ``LM`` interface (see the module docstring).

    Parameters
    ----------
    model:
        A fitted :class:`~lmladder.api.LanguageModel`, a saved model folder, or (with
        ``dataset``) a registry name to build and fit.
    dataset, data_dir, budget_tokens:
        Fit ``model`` on ``dataset``'s training split (found in ``data_dir``, see
        :func:`lmladder.load_dataset`) within ``budget_tokens`` training tokens.
    seed:
        Seeds generation (the same seed gives the same text for the same request).
    device:
        Where to run (``cpu``, ``cuda:0``, ...); a device the model or machine cannot use falls
        back to ``cpu`` with a warning (lm-eval's command line asks for ``cuda:0`` by default).
    batch_size, max_batch_size:
        Accepted for lm-eval's sake and unused: every request is scored as one stream.
    **config:
        Config overrides for the registry entry (only with ``dataset``).
    """

    def __init__(self, model: str | LanguageModel, *, dataset: str | None = None,
                 data_dir: str | None = None, budget_tokens: int | None = None, seed: int = 0,
                 device: str | None = None, batch_size: Any = None,
                 max_batch_size: Any = None, **config: Any) -> None:
        super().__init__()
        self.model = _resolve_model(model, dataset, data_dir, budget_tokens, config)
        self.vocab = self.model._require_fitted()
        self.name = model if isinstance(model, str) else type(model).__name__
        self.seed = seed
        if device is not None:
            _place(self.model, device, self.name)

    # -- lm-eval's request types -------------------------------------------------------------

    def loglikelihood(self, requests: list) -> list[tuple[float, bool]]:
        """``(ln p(continuation | context), is_greedy)`` per ``(context, continuation)``."""
        encoded = [(encode_text(c + x, self.vocab), len(c)) for c, x in (r.args for r in requests)]
        self._warn_oov([e for e, _ in encoded], "loglikelihood")
        return [self._continuation_score(e, split) for e, split in encoded]

    def loglikelihood_rolling(self, requests: list) -> list[float]:
        """ln p of each whole text (the ``(text,)`` requests) after one boundary token, every
        token scored once; long texts use the model's own windows (``token_logprobs``)."""
        encoded = [encode_text(r.args[0], self.vocab) for r in requests]
        self._warn_oov(encoded, "loglikelihood_rolling")
        return [float(self.model.token_logprobs(e.ids).sum()) for e in encoded]

    def generate_until(self, requests: list) -> list[str]:
        """Text generated after each ``(context, gen_kwargs)``, cut at ``until``."""
        args = [r.args for r in requests]
        encoded = [encode_text(context, self.vocab) for context, _ in args]
        self._warn_oov(encoded, "generate_until")
        return [self._generate(e.ids, context, kwargs)
                for e, (context, kwargs) in zip(encoded, args, strict=True)]

    # -- the pieces --------------------------------------------------------------------------

    def _continuation_score(self, enc: Encoded, split: int) -> tuple[float, bool]:
        """Sum of ln p over the tokens ending after character ``split``, and whether every one
        of them was a top choice of the model (see the module docstring)."""
        first = int(np.searchsorted(enc.ends, split, side="right"))
        logprob = float(self.model.token_logprobs(enc.ids)[first:].sum())
        if not self.model.closed_vocabulary:
            return logprob, False
        ranks = self.model.next_token_ranks(enc.ids)[first:]
        return logprob, bool(np.all(ranks[:, 0] == 0))

    def _generate(self, ids: np.ndarray, context: str, kwargs: dict[str, Any]) -> str:
        unsupported = sorted(set(kwargs) - _GEN_KEYS)
        if unsupported:
            raise ValueError(
                f"lmladder: generate_until does not support gen_kwargs "
                f"{', '.join(map(repr, unsupported))} (supported: {', '.join(sorted(_GEN_KEYS))})"
            )
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(kwargs.get("temperature", 1.0))
        sample = bool(kwargs.get("do_sample")) and temperature > 0  # else greedy, as HF does
        new = self.model.generate(
            ids, int(kwargs.get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS),
            temperature=temperature if sample else 1.0,
            top_k=(kwargs.get("top_k") or None) if sample else 1,  # HF's top_k=0: no limit
            seed=self.seed,
        )
        return cut_at(continuation_text(new, self.vocab, context), until)

    def _warn_oov(self, encoded: Sequence[Encoded], what: str) -> None:
        oov = sum(e.oov for e in encoded)
        if oov:
            total = sum(len(e.ids) for e in encoded)
            log.warning(
                "%s: %d of %d tokens of the %s requests (%.2f%%) are not in the vocabulary and "
                "were scored as %r, which makes them cheaper than they should be",
                self.name, oov, total, what, 100.0 * oov / total, self.vocab.unk,
            )


def _resolve_model(model: str | LanguageModel, dataset: str | None, data_dir: str | None,
                   budget_tokens: int | None, config: dict[str, Any]) -> LanguageModel:
    """The fitted model ``LadderLM``'s arguments name (see its docstring)."""
    if isinstance(model, LanguageModel):
        if dataset is not None or config:
            raise ValueError("lmladder: a model object is used as it is; dataset= and config "
                             "keys apply only to a registry name")
        return model
    if dataset is None:
        fitting = [*config, *(["budget_tokens"] if budget_tokens is not None else [])]
        if fitting:
            raise ValueError(f"lmladder: {', '.join(sorted(fitting))} given without dataset=; "
                             f"a saved model folder ({model}) is used as it was saved")
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ValueError(f"lmladder: model={model!r} is not a saved model folder; to build "
                             "and fit a registry model, add dataset=NAME")
        return load_model(folder)
    built = build(model, config, where=f"lm-eval model_args for {model!r}")
    data = load_dataset(dataset, data_dir)
    budget = Budget(tokens=budget_tokens) if budget_tokens is not None else Budget()
    built.fit(data.train.ids, data.vocab, budget=budget, valid=data.valid.ids)
    return built


def _place(model: LanguageModel, device: str, name: str) -> None:
    """Move ``model`` to ``device``, or keep it on the CPU with a warning where the family or
    the machine has no such device."""
    try:
        model.to(device)
    except (ValueError, RuntimeError, AssertionError) as err:  # CPU-only family / no CUDA
        log.warning("%s: cannot run on %s (%s); using cpu", name, device, err)
        model.to("cpu")


def main() -> None:
    """``python -m lmladder.lmeval ARGS``: lm-eval's command line with ``lmladder`` registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
