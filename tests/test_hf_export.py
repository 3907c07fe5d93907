"""``hf-gpt2`` exported with ``save_pretrained``, read back by ``hf:FOLDER`` and ``transformers``.

A tiny GPT-2 (2 layers, 32 wide, context 32) is trained a few steps on a word-level and on a
character-level corpus, exported, and loaded three ways:

* ``lmladder.build("hf:" + folder)``: an *open-vocabulary* model that re-tokenizes the running
  text with the exported tokenizer.  The tokenizer gives back exactly the dataset's ids (each word
  one token, each newline the boundary token, credited to it through the offsets) and the start
  token is the boundary, so a text that fits one window gets every token's ln-probability of the
  original model, to float rounding (different padding changes the last bits only).  Longer texts
  are windowed differently by the two classes: an ``hf:`` window of ``W`` model tokens feeds ``W``
  positions and scores ``W - 1`` of them, a Transformer window of ``W`` scores all ``W``; with
  ``hf:`` at window ``W`` and the original at ``W - 1`` (same stride) every token again gets the
  same history and the same number.
* ``AutoModelForCausalLM`` + ``AutoTokenizer``: the logits equal the original network's, and the
  tokenizer encodes the running text into the dataset's ids.

About 10 s on 2 CPU cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import lmladder
from lmladder.api import Budget, ContextPolicy, Vocab
from lmladder.data import chars_dataset
from lmladder.neural.hf import dataset_tokenizer

CONTEXT = 32
TINY = dict(n_layer=2, n_head=2, n_embd=32, context=CONTEXT, batch_size=8, warmup_steps=0,
            lr=3e-3, dropout=0.0, max_epochs=None)


@pytest.fixture(scope="module")
def char_data(data):
    """The synthetic corpus as characters (its words have only a few letters)."""
    texts = {name: data.vocab.detokenize(split.ids) for name, split in data.splits.items()}
    return chars_dataset("synthetic-chars", "tiny synthetic text, characters", texts)


@pytest.fixture(scope="module", params=["word", "char"])
def exported(request, data, char_data, tmp_path_factory):
    """``(original, folder, dataset)``: a tiny hf-gpt2 trained 20 steps, saved with
    ``save_pretrained``."""
    dataset = data if request.param == "word" else char_data
    model = lmladder.build("hf-gpt2", TINY)
    model.fit(dataset.train.ids, dataset.vocab, budget=Budget(steps=20))
    folder = model.save_pretrained(tmp_path_factory.mktemp(f"hf-gpt2-{request.param}"))
    return model, folder, dataset


def _as_hf(folder, dataset):
    hf = lmladder.build(f"hf:{folder}")
    hf.fit(dataset.train.ids, dataset.vocab)  # loads the folder; trains nothing
    return hf


def test_hf_folder_scores_as_the_original(exported):
    model, folder, dataset = exported
    hf = _as_hf(folder, dataset)
    ids = dataset.test.ids[: CONTEXT - 1]  # the start token and these fill one window
    assert (ids == dataset.vocab.boundary_id).any()  # the boundary's newline is scored too
    np.testing.assert_allclose(hf.token_logprobs(ids), model.token_logprobs(ids), atol=1e-5)
    assert hf.token_logprobs(ids).sum() == pytest.approx(model.token_logprobs(ids).sum(),
                                                         abs=1e-4)


def test_long_text_matches_with_windows_one_apart(exported):
    model, folder, dataset = exported
    hf = _as_hf(folder, dataset)
    ids = dataset.test.ids[:150]  # several windows
    stride = 8
    got = hf.token_logprobs(ids, context=ContextPolicy(window=CONTEXT, stride=stride))
    want = model.token_logprobs(ids, context=ContextPolicy(window=CONTEXT - 1, stride=stride))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # with the defaults (window = context for both) only the first window's tokens agree
    default = hf.token_logprobs(ids)
    np.testing.assert_allclose(default[: CONTEXT - 1], model.token_logprobs(ids)[: CONTEXT - 1],
                               atol=1e-5)


def test_plain_transformers_loads_the_folder(exported):
    model, folder, dataset = exported
    vocab = dataset.vocab
    net = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert net.config.bos_token_id == net.config.eos_token_id == vocab.boundary_id
    assert net.generation_config.eos_token_id == vocab.boundary_id
    assert tokenizer.eos_token == tokenizer.bos_token == vocab.boundary
    ids = dataset.test.ids[:CONTEXT]
    assert tokenizer(vocab.detokenize(ids))["input_ids"] == ids.tolist()
    x = torch.as_tensor(ids)[None]
    with torch.no_grad():
        torch.testing.assert_close(net(input_ids=x).logits, model.module_.gpt(input_ids=x).logits)


def test_word_tokenizer_maps_unknown_words_and_newlines():
    vocab = Vocab(["<eos>", "the", "cat", "<unk>"], boundary="<eos>", unk="<unk>")
    tokenizer = dataset_tokenizer(vocab)
    text = "the dog\ncat <unk>\n"
    enc = tokenizer(text, return_offsets_mapping=True)
    assert enc["input_ids"] == [1, 3, 0, 2, 3, 0]
    assert [text[a:b] for a, b in enc["offset_mapping"]] == ["the", "dog", "\n", "cat", "<unk>",
                                                             "\n"]


def test_an_int8_model_is_refused():
    model = lmladder.build("hf-gpt2", {**TINY, "quantize": "int8"})
    with pytest.raises(ValueError, match="quantize='int8'.*export a model trained with quantize="):
        model.save_pretrained("unused")
