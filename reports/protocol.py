"""The scoring protocol as readable prose, one block per protocol, generated from the records.

Every result record carries its dataset (``name``, ``level``, ``vocab_size``, ``boundary``,
``unk``, ``splits``, ``source``) and its scoring protocol (``token``, ``first_context``,
``reset_at_boundary``, ``window``, ``stride``, ``accuracy_tokens``, ``unk``).  This module says
in words what those fields mean for a reader: what a token is, how line boundaries are handled,
how much history each family of models may use, how ``<unk>`` is counted, what accuracy is
computed on and how large each split is.  Datasets scored under the same protocol share one
block that names them; a dataset scored two ways appears in two blocks.

Each block ends with a worked example: a made-up sentence scored by
:func:`lmladder.scoring.metrics_from_logprobs` -- the function that scores every model -- which
the harness computed and stored in the record's ``protocol.example``
(:mod:`lmladder.protocol_example`), so the example can never disagree with the code and the
report computes nothing.

Markup lives in ``templates/protocol.html.j2``, rendered with autoescape on; nothing that comes
from a record is marked safe.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from lmladder.record import Record
from lmladder.reports.jinja import environment
from lmladder.reports.values import mapping_at

FAMILY_ORDER = ("n-gram", "HMM", "RNN", "Transformer", "other")


def protocol_prose(records: list[Record]) -> Markup:
    """Readable prose for the scoring protocol of every dataset found in ``records``: one block
    per distinct protocol (the datasets it covers named), each with its split sizes and a worked
    example.  Records without a dataset and protocol description are ignored; if none has one,
    the markup says so."""
    return Markup(environment().get_template("protocol.html.j2").render(
        **protocol_data(records)))


def protocol_data(records: list[Record]) -> dict[str, Any]:
    """The template data of :func:`protocol_prose`: ``{"groups": [...]}``, each group holding
    ``datasets`` (names), ``paragraphs`` (``(lead, text)`` pairs), ``splits`` (a table) and
    ``example`` (the records' ``protocol.example``, or None where an earlier group shows the
    same one or no record carries one)."""
    grouped: dict[tuple, list[Record]] = defaultdict(list)
    for record in records:
        if record.dataset is not None and record.protocol is not None \
                and record.dataset.get("name"):
            grouped[_protocol_key(record.dataset, record.protocol)].append(record)
    groups, examples_shown = [], set()
    for members in sorted(grouped.values(), key=_names):
        dataset, protocol = members[0].dataset, members[0].protocol
        level, boundary, unk = (_str(dataset.get(k)) for k in ("level", "boundary", "unk"))
        example_key = (level, boundary)  # <unk> or not, the computation reads the same
        example = None
        if example_key not in examples_shown:
            examples_shown.add(example_key)
            example = next((e for r in members
                            if isinstance(e := r.protocol.get("example"), Mapping)), None)
        groups.append({
            "datasets": _names(members),
            "paragraphs": [
                ("Tokens", _token_text(level, boundary, protocol)),
                ("Line boundaries", _boundary_text(boundary, protocol)),
                ("Context", _context_text(members, protocol)),
                ("<unk>", _unk_text(level, unk, members)),
                ("What is averaged", _accuracy_text(protocol)),
            ],
            "splits": _split_table(members),
            "example": example,
        })
    return {"groups": groups}


# ---- grouping ------------------------------------------------------------------------------------


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _protocol_key(dataset: Mapping, protocol: Mapping) -> tuple:
    """What makes two datasets' protocols read the same (dataset sizes and sources do not)."""
    facts = {k: protocol.get(k) for k in ("token", "first_context", "reset_at_boundary",
                                          "window", "stride", "accuracy_tokens")}
    facts.update(level=dataset.get("level"), boundary=dataset.get("boundary"),
                 unk=dataset.get("unk"))
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str))
                        for k, v in facts.items()))


def _names(records: list[Record]) -> list[str]:
    return sorted({str(r.dataset["name"]) for r in records})


def _families(records: list[Record]) -> list[str]:
    found = {r.family for r in records}
    return [f for f in FAMILY_ORDER if f in found] + sorted(found - set(FAMILY_ORDER))


# ---- sentences -----------------------------------------------------------------------------------


def _token_text(level: str | None, boundary: str | None, protocol: Mapping) -> str:
    if level == "word":
        mark = boundary or "<eos>"
        return (f"A token is one whitespace-separated word of the text as its source gives it "
                f"(see the table), not a sub-word.  Each line ends with one {mark} token, which "
                f"is predicted and counted like a word, as in the published perplexities.  "
                f"Perplexity is per token; word ppl is per whitespace word plus one per line, "
                f"the unit that makes character and sub-word models comparable with word "
                f"models.")
    if level == "char":
        mark = repr(boundary) if boundary else "the newline"
        return (f"A token is one character of the text, spaces and punctuation included.  Each "
                f"line ends with the newline character {mark}, which is predicted and counted "
                f"like any other character.  Perplexity is per character; bpc is bits per "
                f"character; word ppl spreads the same total over whitespace words plus one per "
                f"line, for comparison with word-level models.")
    token = _str(protocol.get("token")) or "as the dataset defines it"
    return f"A token is: {token}; each line ends with one boundary token, which is counted."


def _boundary_text(boundary: str | None, protocol: Mapping) -> str:
    mark = boundary or "boundary"
    first = _str(protocol.get("first_context")) or f"one boundary token {mark!r}"
    if protocol.get("reset_at_boundary") is True:
        return (f"Every line is scored on its own: after each {mark} the model starts again "
                f"from its initial state, with that one boundary token as its only history "
                f"(KenLM's convention).  So every token, the first of each line included, is "
                f"predicted and counted.")
    return (f"History carries across line boundaries: the model keeps its state from one line "
            f"to the next, as in the RNN literature (Mikolov 2012; Zaremba et al. 2014).  The "
            f"first token of a split is predicted from {first}, so every token of the split is "
            f"predicted and counted, the first one included.")


def _context_text(records: list[Record], protocol: Mapping) -> str:
    window, stride = _int(protocol.get("window")), _int(protocol.get("stride"))
    families = _families(records)
    if window is not None:
        s = stride or max(1, window // 2)
        return (f"Every model may use at most {window:,} tokens of history.  Models that read "
                f"windows slide a window of W = {window:,} tokens with stride S = {s:,}: every "
                f"token is scored exactly once, with at least W − S + 1 = {window - s + 1:,} "
                f"tokens of history once the text is that long.")
    # with a reset at each boundary, "everything" a stateful model sees starts at the line
    everything = ("the history since the line's boundary token"
                  if protocol.get("reset_at_boundary") is True else "the whole history")
    parts = []
    if "n-gram" in families:
        parts.append("n-gram models condition on their last n − 1 tokens, backing off to "
                     "shorter histories")
    if "HMM" in families:
        parts.append(f"HMMs carry their forward state over {everything}")
    if "RNN" in families:
        parts.append(f"recurrent networks carry their hidden state over {everything}")
    if "Transformer" in families:
        parts.append(_transformer_text(records))
    if "other" in families or not parts:
        parts.append("other models use as much history as they can")
    return ("No window is imposed, so each model uses the history it can: "
            + "; ".join(parts) + ".")


def _transformer_text(records: list[Record]) -> str:
    """The sliding windows of Transformers: W is the model's context length (its config's
    ``context``), S = W // 2, the defaults of :class:`lmladder.api.ContextPolicy`."""
    windows = set()
    for r in records:
        if r.family != "Transformer":
            continue
        if (w := _int(r.cell.config.get("context"))) is not None and w > 0:
            windows.add(w)
    text = ("Transformers read a sliding window of W tokens, their context length, with stride "
            "S = W / 2 (rounded down): every token is scored exactly once, with at least "
            "W − S + 1 tokens of history once the text is that long")
    if windows:
        text += " (" + ", ".join(f"W = {w:,}, S = {max(1, w // 2):,}" for w in sorted(windows))
        text += ")"
    return text


def _unk_text(level: str | None, unk: str | None, records: list[Record]) -> str:
    if unk is None:
        if level == "char":
            return "No <unk>: character level; the vocabulary holds every character of the data."
        return "No <unk>: the vocabulary holds every token of the data."
    mapped = sum(_int(_split(r, "test").get("oov")) or 0 for r in _one_per_dataset(records))
    text = (f"{unk} is an ordinary vocabulary word: it stands for the words the source itself "
            f"replaced, and for any word of the validation or test split that the training split "
            f"lacks.  It is predicted, scored and counted like any other token, as in KenLM's "
            f"and Mikolov's counts.  Since {unk} stands for many rare words at once, it is "
            f"easier to predict than any of them: perplexities are comparable only between "
            f"models that count it the same way, as every lmladder row does.")
    if mapped:
        text += (f"  lmladder itself mapped {mapped:,} test tokens to {unk} (see the table); "
                 f"the rest of the {unk} tokens are the source's.")
    return text


def _accuracy_text(protocol: Mapping) -> str:
    n = _int(protocol.get("accuracy_tokens"))
    where = f"the first {n:,} tokens of the test split" if n else "every token of the test split"
    return ("Perplexity, nll, bits per token and bpc average over every token of the validation "
            f"and test splits.  Top-1 and top-5 next-token accuracy are computed on {where}, "
            "ties between equally likely tokens broken at random (in expectation), so a uniform "
            "model scores its chance level 1 / V, not 100%.")


# ---- split sizes ---------------------------------------------------------------------------------


def _split(record: Record, name: str) -> Mapping:
    return mapping_at(record.dataset, ("splits", name))


def _one_per_dataset(records: list[Record]) -> list[Record]:
    seen: dict[str, Record] = {}
    for r in records:
        seen.setdefault(str(r.dataset["name"]), r)
    return [seen[name] for name in sorted(seen)]


def _source_text(source) -> str:
    if isinstance(source, dict):
        if isinstance(source.get("citation"), str):
            return source["citation"]
        if isinstance(source.get("generator"), str):
            extras = ", ".join(f"{k} {v}" for k, v in source.items()
                               if k in ("seed", "states", "vocab") and _int(v) is not None)
            return f"generated by {source['generator']}" + (f" ({extras})" if extras else "")
    return "—"


def _count(value) -> str:
    n = _int(value)
    return f"{n:,}" if n is not None else "—"


def _split_table(records: list[Record]) -> dict:
    """One row per dataset: vocabulary size, tokens (and characters) per split, test tokens that
    lmladder mapped to <unk>, source."""
    rows = []
    for r in _one_per_dataset(records):
        d = r.dataset
        row = [str(d["name"]), _count(d.get("vocab_size"))]
        for name in ("train", "valid", "test"):
            split = _split(r, name)
            text = _count(split.get("tokens"))
            if _int(split.get("chars")) is not None:
                text += f" ({split['chars']:,} chars)"
            row.append(text)
        row += [_count(_split(r, "test").get("oov")), _source_text(d.get("source"))]
        rows.append(row)
    return {"columns": ["dataset", "vocabulary", "train tokens", "valid tokens", "test tokens",
                        "test tokens mapped to <unk> by lmladder", "source"],
            "rows": rows}
