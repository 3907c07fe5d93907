"""The worked example of the scoring protocol that every record carries (``protocol.example``).

A tiny made-up split is scored by :func:`lmladder.scoring.metrics_from_logprobs` -- the function
that scores every model -- so the example a report prints can never disagree with the code.  The
harness computes it once per record (:func:`lmladder.migrate.migrate` for records older than the
field); a report only displays it (``reports/protocol.py``) and computes nothing.

Word level (anything but ``"char"``): the line ``the <unk> sat`` (``cat`` where the dataset has no
``<unk>``) and its boundary token; character level: ``to be`` and its newline::

    #  token   history it is predicted from   ln p
    1  the     <eos>                          -2.00
    2  <unk>   <eos> the                      -3.50
    3  sat     <eos> the <unk>                -4.00
    4  <eos>   <eos> the <unk> sat            -1.50
    total = 11 nats, nll = 11 / 4 = 2.75 nats/token, ppl = e^2.75 = 15.6426
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmladder.corpus import Split
from lmladder.scoring import metrics_from_logprobs

# Made-up ln-probabilities (natural log, one per token).  Word level: "the <unk> sat" and the
# line's boundary token; character level: "to be" and its newline.
WORD_EXAMPLE = (("the", -2.0), (None, -3.5), ("sat", -4.0), ("<boundary>", -1.5))
CHAR_EXAMPLE = (("t", -2.5), ("o", -1.0), (" ", -0.5), ("b", -3.0), ("e", -1.5), ("\n", -0.3))


def worked_example(level: str | None, boundary: str = "<eos>",
                   unk: str | None = None) -> dict[str, Any]:
    """The worked example of a dataset of ``level`` with line ``boundary`` and ``unk`` token, as
    JSON values: ``tokens``, ``logprobs`` (natural log), ``count`` (tokens scored), ``chars`` and
    ``words`` of the running text, ``unit`` ("token" or "character"), ``running_text``,
    ``metrics`` (:class:`lmladder.scoring.Metrics` as a dict), ``rows`` (position, token,
    history, ln p) and ``steps`` (quantity, computation, value), the last two as display text."""
    if level == "char":
        tokens = [t for t, _ in CHAR_EXAMPLE]
        logprobs = np.array([lp for _, lp in CHAR_EXAMPLE], dtype=np.float64)
        text = "".join(tokens)
        chars, words = len(text), len(text.split()) + text.count("\n")
        shown = [_char(t) for t in tokens]
        history = ["\\n" + "".join(_char(t) for t in tokens[:i]) for i in range(len(tokens))]
    else:
        tokens = [boundary if t == "<boundary>" else (unk or "cat") if t is None else t
                  for t, _ in WORD_EXAMPLE]
        logprobs = np.array([lp for _, lp in WORD_EXAMPLE], dtype=np.float64)
        line = tokens[:-1]
        # running text as lmladder counts it: the line's words joined by spaces, one newline
        chars, words = len(" ".join(line)) + 1, len(line) + 1
        shown = tokens
        history = [" ".join([boundary, *tokens[:i]]) for i in range(len(tokens))]
    split = Split("example", np.arange(len(tokens)), num_chars=chars, num_words=words,
                  num_lines=1)
    m = metrics_from_logprobs(logprobs, split)
    rows = [[str(i + 1), tok, hist, f"{lp:.2f}"] for i, (tok, hist, lp)
            in enumerate(zip(shown, history, logprobs, strict=True))]
    unit = "character" if level == "char" else "token"
    steps = [
        ["total", "− (sum of ln p)", f"{m.nats:.4f} nats"],
        ["nll", f"total / {m.tokens} tokens", f"{m.nll:.4f} nats per {unit}"],
        ["ppl", "e^nll", f"{m.ppl:.4f}"],
        ["bits per token", "nll / ln 2", f"{m.bits_per_token:.4f}"],
        ["bpc", f"total / ln 2 / {chars} characters", f"{m.bpc:.4f}"],
        ["word ppl", f"e^(total / {words} words)", f"{m.word_ppl:.4f}"],
    ]
    return {"tokens": tokens, "logprobs": logprobs.tolist(), "count": int(m.tokens),
            "chars": chars, "words": words, "unit": unit,
            "running_text": _running_text(level, tokens),
            "metrics": m.to_dict(),
            "rows": rows, "steps": steps}


def _char(token: str) -> str:
    """A character as the example table shows it (a space and a newline made visible)."""
    return {" ": "␣", "\n": "\\n"}.get(token, token)


def _running_text(level: str | None, tokens: list[str]) -> str:
    if level == "char":
        return "".join(tokens).replace("\n", "\\n")
    return " ".join(tokens[:-1]) + "\\n"
