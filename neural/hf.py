"""Hugging Face ``transformers`` models behind the lmladder contract.

``hf-gpt2`` -- :class:`HFGPT2LM`
    A ``transformers`` GPT-2 built from a config on the dataset vocabulary and trained from
    scratch by the shared loop of :mod:`lmladder.neural.loop`: the library's network beside our
    own :mod:`lmladder.neural.transformer` at the same size, under the same training and scoring
    protocol.  ``save_pretrained(folder)`` exports it for the Hugging Face ecosystem: the network
    and a tokenizer of the dataset vocabulary (:func:`dataset_tokenizer`), which plain
    ``transformers`` and ``hf:FOLDER`` load.

``hf:<id-or-path>`` -- :class:`HFPretrainedLM`
    A pretrained causal LM (``AutoModelForCausalLM`` + its fast ``AutoTokenizer``) evaluated
    zero-shot on the running text of a split.  Its tokens are not the dataset's, so it is an
    *open-vocabulary* model: it scores every dataset token but cannot give a distribution over the
    dataset vocabulary (``step`` raises).  Reported metrics that make sense for it are bits per
    character and word-level perplexity, both computed by :mod:`lmladder.scoring` from the
    per-token numbers this module returns.

Scoring protocol of ``hf:`` models (worked example)
---------------------------------------------------
The dataset ids are turned back into running text with ``Vocab.detokenize`` (tokens joined by the
separator, a newline per boundary).  Every character of that text is *owned* by one dataset
token: a word owns its characters and the separator *before* it (none for the first word of a
line); a boundary token owns its newline.  The text is tokenized by the model's tokenizer (with
offsets), after one context token that stands for "start of a stream" -- the tokenizer's BOS token,
or EOS when it has no BOS (GPT-2's ``<|endoftext|>``), never scored.  Each sub-word's ln-probability
goes to the dataset token owning the sub-word's *last* character.  Example with PTB-style tokens
``the cat <eos> sat`` and a GPT-2-style byte-level BPE (illustrative sub-words)::

    running text      "the cat\nsat"
    sub-words         the | Ġcat | Ċ     | sat
    credited to       the | cat  | <eos> | sat      (" cat": a word owns the space before it)

A word split into several sub-words gets their sum.  So the per-token numbers sum to the model's
ln-likelihood of the whole text, which is what bits per character and word-level perplexity need.
For character-level datasets a sub-word spanning several characters is credited to its last one
and the others get ln 1 = 0: individual character scores mean nothing there, only their sums do.
A sub-word that straddles two dataset tokens (a tokenizer without GPT-2's pre-tokenization
merging a word with the next newline, say) is credited to the later one: sums stay exact, but the
earlier token's number then depends on what follows it.  Byte-level BPE with GPT-2's
pre-tokenizer does this on word-level text only for a run of newlines that ends the text (spaces
start words; a newline followed by more text stands alone).

Long texts are scored with sliding windows over the model's tokens (``ContextPolicy.window`` and
``stride`` count the *model's* tokens here; the window is capped by the model's position limit and
``Config.max_window``): windows start at 0, stride, 2*stride, ... and each scores the sub-words no
earlier window scored, so every sub-word is scored exactly once (the layout of
:class:`~lmladder.api.ContextPolicy`'s example).  Every window is padded to the full window
length, so each forward pass has the same shape whatever follows: a position's numbers do not
change when later text does (no peeking), not even by rounding.  With ``reset_at_boundary`` every
line is scored on its own after the start-of-stream token.

Saving an ``hf:`` model stores its ``source`` (config) and a SHA-256 fingerprint of its weights and
tokenizer; loading reads ``source`` again and refuses weights that differ from the fingerprint.
The checkpoint is therefore a pointer, not a copy: keep the source folder (or hub revision).

Running one: ``hf:gpt2`` (a hub id; needs the network or the Hugging Face cache) or
``hf:/path/to/folder`` (anything ``save_pretrained`` wrote) as a model name in a matrix, e.g.
``name = "hf:gpt2"`` with ``config = { batch_size = 2 }``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    LanguageModel,
    ProgressCallback,
    Stopwatch,
    Vocab,
    require,
)
from lmladder.devices import resolve_device
from lmladder.neural.transformer import TransformerLM, WindowTrainConfig

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence transformers' and huggingface_hub's progress bars (models never print)."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    tf_was_on = hf_logging.is_progress_bar_enabled()
    hub_was_off = are_progress_bars_disabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    hf_logging.set_verbosity_error()  # its load report: the missing keys are refused below
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if tf_was_on:
            hf_logging.enable_progress_bar()
        if not hub_was_off:
            enable_progress_bars()


def max_positions(config: Any) -> int | None:
    """The longest sequence a ``transformers`` config's position scheme allows, if it says."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def window_plan(length: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """Sliding windows over a sequence whose position 0 is context only.

    Returns ``(start, end, first)`` triples: the window feeds positions ``start:end`` (at most
    ``window`` of them) and scores positions ``first:end``, each from the logits one position
    earlier.  Windows start at multiples of ``stride`` (at most ``window - 1``, so that every
    window has an input before its first scored position); together they score positions
    ``1 .. length-1`` exactly once.

    >>> window_plan(7, 4, 2)  # "| a b c d e f": scores a b c, then d e, then f
    [(0, 4, 1), (2, 6, 4), (4, 7, 6)]
    """
    if window < 2:
        raise ValueError(f"a window must hold at least 2 tokens, got {window}")
    stride = min(stride, window - 1)
    plan, start, first = [], 0, 1
    while first < length:
        end = min(start + window, length)
        plan.append((start, end, first))
        first = end
        start += stride
    return plan


def text_with_owners(ids: np.ndarray, vocab: Vocab) -> tuple[str, np.ndarray]:
    """Running text of ``ids`` and, per character, the index of the dataset token that owns it.

    The text equals ``vocab.detokenize(ids)``.  A word owns the separator before it (none at the
    start of a line) and its own characters; a boundary owns its newline.  Returns ``(text,
    owners)`` with ``owners`` int64 ``(len(text),)``.
    """
    pieces, at_line_start = [], True
    for t in ids:
        t = int(t)
        if t == vocab.boundary_id:
            pieces.append("\n")
            at_line_start = True
        else:
            pieces.append(vocab.tokens[t] if at_line_start else vocab.separator + vocab.tokens[t])
            at_line_start = False
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    return "".join(pieces), np.repeat(np.arange(len(pieces), dtype=np.int64), lengths)


def split_after_boundaries(ids: np.ndarray, boundary: int) -> list[tuple[int, np.ndarray]]:
    """Cut a stream after every boundary token: ``(offset, line_ids)`` pairs, in order."""
    cuts = np.flatnonzero(ids == boundary) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(ids)]])
    return [(int(a), ids[a:b]) for a, b in zip(starts, ends, strict=True) if b > a]


@dataclass(frozen=True)
class HFPretrainedConfig:
    """Hyperparameters of a zero-shot pretrained model.

    source:
        A hub id (``"gpt2"``, needs the network or a filled cache) or a local folder written by
        ``save_pretrained``.  Code from the hub is never run (``trust_remote_code=False``).
    dtype:
        Weights and activations; ``"float32"`` on CPU.  Log-probabilities are returned in float64.
    batch_size:
        Windows per forward pass.
    max_window:
        The longest window scored in one forward pass, in the model's tokens; the model's own
        position limit and ``ContextPolicy.window`` cap it further.  It bounds memory for models
        whose position limit is very long.
    """

    source: str
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = 2
    max_window: int = 1024

    def __post_init__(self) -> None:
        require(self, "batch_size", self.batch_size >= 1, ">= 1")
        require(self, "max_window", self.max_window >= 2, ">= 2")
        check_source(self.source)


_HUB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)?")


def check_source(source: str) -> None:
    """Refuse, before ``transformers`` is imported, a ``source`` that can be neither an existing
    local folder nor a hub id (``name`` or ``owner/name``): a path that does not exist, or names
    a file, is a ValueError naming it, and so is a folder without a tokenizer."""
    if not source.strip():
        raise ValueError("source must name a hub id or a local folder, got ''")
    path = Path(source).expanduser()
    if path.is_dir():
        check_tokenizer_files(source)
        return
    if path.exists():
        raise ValueError(f"source {source!r} is a file; give the folder written by "
                         "save_pretrained (or a hub id)")
    pathlike = source.startswith(("/", ".", "~")) or "\\" in source or ".." in source
    if pathlike or not _HUB_ID.fullmatch(source):
        raise ValueError(f"source {source!r}: no such local folder (and not a hub id such as "
                         "'gpt2' or 'owner/name')")


# what AutoTokenizer reads: tokenizer.json, or what a slow tokenizer is converted from
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
NEEDS = "tokenizer.json (or vocab.json + merges.txt, or a SentencePiece tokenizer.model)"
PADDED_ROWS = 0.02  # embeddings padded to a round size (Phi-2: 50,295 tokens, 51,200 rows)


def check_tokenizer_files(source: str) -> None:
    """Refuse a local folder without a tokenizer (``transformers`` would make an empty one that
    maps all text to one token: perplexity 1.00, the top of every table)."""
    folder = Path(source).expanduser()
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"hf:{source}: the folder has no tokenizer; it needs {NEEDS} beside "
                         "config.json and the weights, as save_pretrained writes them")


def check_loaded(source: str, model: Any, info: Mapping[str, Any], tokens: int) -> None:
    """Refuse weights that do not fit the config (``transformers`` fills missing layers with
    random numbers: a config whose ``model_type`` does not match its weights), and a tokenizer
    whose ``tokens`` do not cover the embedding rows (beyond padding): another model's."""
    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(key) or ())
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            problems.append(f"{len(names)} {key.replace('_', ' ')}: {', '.join(names[:3])}{more}")
    if problems:
        raise ValueError(f"hf:{source}: the weights do not fit its config (model_type "
                         f"{getattr(model.config, 'model_type', '?')!r}; missing ones would be "
                         f"random): {'; '.join(problems)}; check config.json")
    rows = model.get_input_embeddings().num_embeddings
    if tokens > rows or rows - tokens > PADDED_ROWS * rows:
        raise ValueError(f"hf:{source}: the tokenizer has {tokens} tokens but the model {rows} "
                         f"embedding rows; give the tokenizer of this model ({NEEDS})")


class HFPretrainedLM(LanguageModel):
    """A pretrained ``transformers`` causal LM scored zero-shot on the dataset's running text.

    See the module docstring for how sub-word log-probabilities are credited to dataset tokens.
    ``fit`` loads the model and records the vocabulary; it trains nothing (0 training tokens) and
    ignores the budget.
    """

    Config = HFPretrainedConfig
    devices = ("cpu", "cuda", "mps")
    revision = 1
    family = "Transformer"
    closed_vocabulary = False

    # -- loading --------------------------------------------------------------------------------

    def _load_pretrained(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_source(self.cfg.source)  # the folder may have gone since the config was built
        check_tokenizer_files(self.cfg.source)
        try:
            with _quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(self.cfg.source,
                                                          trust_remote_code=False)
                model, info = AutoModelForCausalLM.from_pretrained(
                    self.cfg.source, dtype=getattr(torch, self.cfg.dtype), trust_remote_code=False,
                    output_loading_info=True,
                )
        except (OSError, ValueError) as err:
            first = next((line for line in str(err).splitlines() if line.strip()), "")
            raise ValueError(f"hf:{self.cfg.source}: cannot load a pretrained causal LM from it "
                             f"({first.strip() or type(err).__name__})") from err
        check_loaded(self.cfg.source, model, info, len(tokenizer))
        if not tokenizer.is_fast:
            raise ValueError(
                f"{self.cfg.source}: the tokenizer has no fast (Rust) version; character offsets "
                "are needed to credit sub-words to dataset tokens"
            )
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else (
            tokenizer.eos_token_id
        )
        if start is None:
            raise ValueError(
                f"{self.cfg.source}: the tokenizer has neither a BOS nor an EOS token to stand for "
                "the start of a stream"
            )
        self.tokenizer_ = tokenizer
        self.model_ = model.eval().to(self.device)
        self.start_id_ = int(start)
        self.max_positions_ = max_positions(model.config) or self.cfg.max_window

    def fit(
        self,
        train: np.ndarray,
        vocab: Vocab,
        *,
        budget: Budget = Budget(),
        valid: np.ndarray | None = None,
        callback: ProgressCallback | None = None,
    ) -> FitReport:
        """Load ``source`` and record ``vocab``; nothing is trained (zero-shot)."""
        clock = Stopwatch()
        self._load_pretrained()
        self.vocab_ = vocab
        notes = {
            "zero_shot": True,
            "source": self.cfg.source,
            "max_positions": self.max_positions_,
            "tokenizer_vocab_size": len(self.tokenizer_),
        }
        return FitReport(train_tokens=0, steps=0, seconds=clock(), notes=notes)

    def to(self, device: str) -> HFPretrainedLM:
        """Move to ``device`` (``cpu``, ``cuda[:i]``, ``mps`` or ``auto``)."""
        super().to(resolve_device(device))
        if getattr(self, "model_", None) is not None:
            self.model_.to(device)
        return self

    def num_parameters(self) -> int:
        self._require_fitted()
        return sum(p.numel() for p in self.model_.parameters())  # tied weights counted once

    # -- the state API does not apply ------------------------------------------------------------

    def _no_distribution(self) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} ({self.cfg.source}) is an open-vocabulary model: it scores "
            "dataset tokens through its own tokenizer (token_logprobs) but cannot give a "
            "distribution over the dataset vocabulary, so init_state/step, next_token_ranks and "
            "generate are not available"
        )

    def init_state(self, batch: int) -> Any:
        raise self._no_distribution()

    def step(self, state: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]:
        raise self._no_distribution()

    # -- scoring --------------------------------------------------------------------------------

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p of every dataset token's text given all text before it -> float64 ``(N,)``.

        ``tokens``: int64 ``(N,)`` ids of the fitted vocabulary.  The values sum to the model's
        ln-likelihood of ``vocab.detokenize(tokens)`` after the start-of-stream token (per line
        with ``context.reset_at_boundary``); see the module docstring for the attribution.
        """
        vocab = self._require_fitted()
        tokens = self._checked_ids(tokens)
        out = np.zeros(len(tokens), dtype=np.float64)
        if len(tokens) == 0:
            return out
        if context.reset_at_boundary:
            pieces = split_after_boundaries(tokens, vocab.boundary_id)
        else:
            pieces = [(0, tokens)]
        texts, owners = zip(*(text_with_owners(ids, vocab) for _, ids in pieces), strict=True)
        enc = self.tokenizer_(
            list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        seqs, seq_owners = [], []
        for (offset, _), owner, ids, spans in zip(
            pieces, owners, enc["input_ids"], enc["offset_mapping"], strict=True
        ):
            ends = np.fromiter((e for _, e in spans), dtype=np.int64, count=len(spans))
            # A sub-word belongs to the owner of its last character; a zero-width one (end 0)
            # can only open the text and goes to its first token.
            seq_owners.append(offset + owner[np.maximum(ends - 1, 0)])
            seqs.append([self.start_id_, *ids])
        limit = min(self.max_positions_, self.cfg.max_window)
        window = min(context.window or limit, limit)
        stride = context.stride or max(1, window // 2)
        # One stream: pad every window to the full length so a position's numbers never depend
        # on how much text follows.  Many short lines: pad each batch only to its longest line.
        scores = self._score_sequences(seqs, window, stride, fixed_length=len(seqs) == 1)
        for lp, sub_owner in zip(scores, seq_owners, strict=True):
            np.add.at(out, sub_owner, lp[1:])
        return out

    @torch.inference_mode()
    def _score_sequences(
        self, seqs: Sequence[Sequence[int]], window: int, stride: int, *, fixed_length: bool
    ) -> list[np.ndarray]:
        """ln p(seq[i] | seq[:i]) for i >= 1 of every sequence (float64; index 0 is NaN)."""
        jobs = [
            (k, start, end, first)
            for k, seq in enumerate(seqs)
            for start, end, first in window_plan(len(seq), window, stride)
        ]
        if not fixed_length:  # similar lengths share a batch
            jobs.sort(key=lambda job: job[2] - job[1])
        out = [np.full(len(seq), np.nan) for seq in seqs]
        for b in range(0, len(jobs), self.cfg.batch_size):
            batch = jobs[b : b + self.cfg.batch_size]
            width = window if fixed_length else max(end - start for _, start, end, _ in batch)
            x = torch.full((len(batch), width), self.start_id_, dtype=torch.long)
            for r, (k, start, end, _) in enumerate(batch):
                x[r, : end - start] = torch.as_tensor(seqs[k][start:end])
            x = x.to(self.device)
            logits = self.model_(input_ids=x, use_cache=False).logits.float()  # (B, T, V_hf)
            # ln p(x[t+1] | x[:t+1]) = logit of x[t+1] - logsumexp over the model's vocabulary
            picked = logits[:, :-1].gather(-1, x[:, 1:, None]).squeeze(-1)
            lp = (picked - torch.logsumexp(logits[:, :-1], dim=-1)).double().cpu().numpy()
            for r, (k, start, end, first) in enumerate(batch):
                out[k][first:end] = lp[r, first - start - 1 : end - start - 1]
        return out

    # -- persistence ----------------------------------------------------------------------------

    def fingerprint(self) -> bytes:
        """SHA-256 over the tokenizer definition and every weight tensor (name, dtype, bytes)."""
        self._require_fitted()
        h = hashlib.sha256(self.tokenizer_.backend_tokenizer.to_str().encode())
        for name, tensor in sorted(self.model_.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
            h.update(flat.view(torch.uint8).numpy().tobytes())
        return h.digest()

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"fingerprint_sha256": np.frombuffer(self.fingerprint(), dtype=np.uint8).copy()}

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._load_pretrained()
        expected = arrays["fingerprint_sha256"].astype(np.uint8).tobytes()
        if self.fingerprint() != expected:
            raise ValueError(
                f"{self.cfg.source} no longer holds the weights/tokenizer this checkpoint was "
                "saved with (SHA-256 fingerprint differs)"
            )


# ------------------------------------------------------------------------------------------------
# hf-gpt2: a transformers GPT-2 trained from scratch by the shared loop


@dataclass(frozen=True)
class HFGPT2Config(WindowTrainConfig):
    """A ``transformers.GPT2Config`` (``n_layer``, ``n_head``, ``n_embd``, ``context`` =
    ``n_positions``, ``dropout`` = resid/embd/attn dropout) plus the loop's fields; the vocabulary
    is the dataset's.  Training defaults are the ``transformer`` entry's
    (:class:`~lmladder.neural.transformer.WindowTrainConfig`)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("n_layer", "n_head", "n_embd"):
            require(self, key, getattr(self, key) >= 1, ">= 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")


class HFGPT2Net(torch.nn.Module):
    """``transformers.GPT2LMHeadModel`` in the interface that
    :class:`~lmladder.neural.transformer.GPT` offers.

    ``forward(x (B, T) int64, carry)`` -> ``(logits (B, T, V) float32, None)``;
    ``run(x, past)`` also takes and returns the per-layer KV cache as a list of ``(keys, values)``
    tensors ``(B, heads, t, head_size)``.  A fresh ``DynamicCache`` is built from ``past`` on every
    call: the cache object is mutated by the forward pass, the tensors in ``past`` are not.
    """

    def __init__(self, vocab_size: int, cfg: HFGPT2Config):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=vocab_size, n_positions=cfg.context, n_embd=cfg.n_embd,
            n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, tie_word_embeddings=True,
            bos_token_id=None, eos_token_id=None,  # ids of GPT-2's own vocabulary: not ours
        )
        self.gpt = GPT2LMHeadModel(config)
        # the key/value cache is ``cache`` (argument and output) from transformers 5.24 on, where
        # ``past_key_values`` is deprecated; 4.56 knows only ``past_key_values``
        forward_args = inspect.signature(GPT2LMHeadModel.forward).parameters
        self.cache_name = "cache" if "cache" in forward_args else "past_key_values"
        self.head = self.gpt.lm_head  # the output layer (TransformerLM sizes batches by it)
        self.feature_size = cfg.n_embd

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final LayerNorm's output ``(B, T, n_embd)`` (what ``lm_head`` reads); causal, so
        right-padding needs no ``mask``."""
        return self.gpt.transformer(input_ids=x, use_cache=False).last_hidden_state

    def forward(self, x: torch.Tensor, carry: Any = None) -> tuple[torch.Tensor, None]:
        return self.gpt(input_ids=x, use_cache=False).logits, None

    def run(self, x: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None = None
            ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=past, config=self.gpt.config)
        out = self.gpt(input_ids=x, use_cache=True, **{self.cache_name: cache})
        return out.logits, [(layer.keys, layer.values) for layer in out[self.cache_name].layers]


class HFGPT2LM(TransformerLM):
    """A ``transformers`` GPT-2 built from a config and trained from scratch on the dataset.

    The network is the library's ``GPT2LMHeadModel`` (learned positions, pre-LayerNorm, GELU MLP
    of width 4 x ``n_embd``, biases, tied output layer, GPT-2's initialisation); training is the
    shared loop of :mod:`lmladder.neural.loop`, and the KV-cache ``step`` and sliding-window
    scoring are :class:`~lmladder.neural.transformer.TransformerLM`'s, so both Transformers are
    trained and scored under one protocol and only the network differs.

    Parameter count (``d`` = n_embd, ``L`` layers, ``V`` vocabulary, ``C`` context)::

        V*d + C*d + L*(12*d*d + 13*d) + 2*d
    """

    Config = HFGPT2Config
    batching = "windows"

    def build_module(self, vocab_size: int) -> torch.nn.Module:
        return HFGPT2Net(vocab_size, self.cfg)

    def forward_flops_per_token(self) -> float:
        """2 FLOPs per matrix weight plus attention over an average of ``context / 2`` keys."""
        cfg = self.cfg
        d, v = cfg.n_embd, len(self._require_fitted())
        return 2.0 * (cfg.n_layer * 12 * d * d + v * d) + 2.0 * cfg.n_layer * cfg.context * d

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the network and a tokenizer of the dataset vocabulary as ``transformers``'
        ``save_pretrained`` does, so that plain ``transformers`` (``AutoModelForCausalLM``,
        ``AutoTokenizer``) and ``hf:FOLDER`` load them; returns ``folder``.

        The tokenizer is :func:`dataset_tokenizer`; BOS and EOS (in the tokenizer, the config and
        the generation config) are the vocabulary's boundary token, which ``hf:`` reads before
        the first token of a stream just as this model does.  ``hf:FOLDER`` therefore gives every
        dataset token this model's ln-probability (to float rounding) for texts that fit one
        window; longer texts are windowed differently (see ``window_plan``): an ``hf:`` window of
        ``W`` tokens scores as a :class:`~lmladder.api.ContextPolicy` window of ``W - 1`` here.
        A pruned model exports as it is (its zeros are ordinary weights); an int8-quantized one
        is refused.
        """
        from transformers import GenerationConfig

        if self.cfg.quantize != "none":
            raise ValueError(f"save_pretrained: a {type(self).__name__} with quantize="
                             f"{self.cfg.quantize!r} has torch int8 layers that transformers "
                             "cannot load; export a model trained with quantize='none'")
        vocab = self._require_fitted()
        gpt = self._require_module().gpt
        gpt.save_pretrained(folder)
        # the network's own config leaves BOS/EOS unset (GPT-2's ids would name other tokens);
        # the saved copies name the boundary token
        config = copy.deepcopy(gpt.config)
        config.bos_token_id = config.eos_token_id = vocab.boundary_id
        config.save_pretrained(folder)
        GenerationConfig.from_model_config(config).save_pretrained(folder)
        dataset_tokenizer(vocab, max_length=self.cfg.context).save_pretrained(folder)
        return Path(folder)


def gpt2_parameter_count(cfg: HFGPT2Config, vocab_size: int) -> int:
    """GPT-2's closed-form parameter count (see :class:`HFGPT2LM`)."""
    d = cfg.n_embd
    return vocab_size * d + cfg.context * d + cfg.n_layer * (12 * d * d + 13 * d) + 2 * d


def dataset_tokenizer(vocab: Vocab, *, max_length: int | None = None) -> Any:
    """A ``transformers`` fast tokenizer (``PreTrainedTokenizerFast``) whose ids are ``vocab``'s
    and that cuts running text (``Vocab.detokenize``) back into the dataset's tokens.

    Word level: a ``WordLevel`` model over whitespace-separated words; a normalizer first turns
    every newline into the boundary token (``"\\n"`` -> ``" <eos> "``, the token's offsets
    still point at the newline, so ``hf:`` credits it to the boundary).  Character level:
    every character is a token.  Words outside the vocabulary become ``vocab.unk``; a
    vocabulary without one refuses them.  BOS, EOS and padding are the boundary token;
    ``max_length`` is the model's position limit.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(dict(vocab.index), unk_token=vocab.unk))
    if vocab.separator == "":
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    else:
        tok.normalizer = normalizers.Replace("\n", f" {vocab.boundary} ")
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    boundary = vocab.boundary
    extra = {} if max_length is None else {"model_max_length": max_length}
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=boundary, eos_token=boundary,
                                   pad_token=boundary, unk_token=vocab.unk, **extra)

