"""Hugging Face models: ``hf:<folder>`` zero-shot scoring and ``hf-gpt2`` trained from scratch.

``hf-gpt2`` is a closed-vocabulary registry entry, so tests/test_contract.py runs every contract
check on it; here only its parameter count and its use of the library's GPT-2 are checked.

Nothing can be downloaded here, so the ``hf:`` tests build a tiny GPT-2 (2 layers, 32 wide) and a
byte-level BPE tokenizer trained on the test corpus, train the model for a few steps so that its
predictions mean something, and save both to a temporary folder.  The reference log-likelihoods
are computed directly with the ``transformers`` model, independently of :mod:`lmladder.neural.hf`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from lmladder import registry
from lmladder.api import Budget, ContextPolicy
from lmladder.neural.hf import (
    HFGPT2LM,
    HFGPT2Config,
    HFGPT2Net,
    HFPretrainedLM,
    gpt2_parameter_count,
    split_after_boundaries,
    text_with_owners,
    window_plan,
)
from lmladder.registry import load_model
from lmladder.scoring import metrics_from_logprobs
from tests import contract

EOT = "<|endoftext|>"
POSITIONS = 64  # the tiny model's position limit: the contract's 150 tokens need several windows



def _tiny_pretrained(folder, data, *, seed: int, train_steps: int) -> None:
    """Write a byte-level BPE tokenizer and a tiny GPT-2 (trained ``train_steps`` steps)."""
    text = data.vocab.detokenize(data.train.ids)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # trim_offsets=True (RoBERTa's choice) moves span starts past a leading space: the harder case
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=300, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT)
    eot = fast.convert_tokens_to_ids(EOT)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(fast),
                                       n_positions=POSITIONS, bos_token_id=eot, eos_token_id=eot))
    ids = torch.tensor([eot, *fast(text)["input_ids"]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(train_steps):
        starts = torch.randint(0, len(ids) - POSITIONS, (8,), generator=gen)
        x = ids[starts[:, None] + torch.arange(POSITIONS)]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(folder)
    fast.save_pretrained(folder)


@pytest.fixture(scope="module")
def source(tmp_path_factory, data) -> str:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    _tiny_pretrained(folder, data, seed=0, train_steps=60)
    return str(folder)


@pytest.fixture(scope="module")
def hf(source, data) -> HFPretrainedLM:
    model = registry.build(f"hf:{source}")
    report = model.fit(data.train.ids, data.vocab)
    assert report.train_tokens == 0 and report.steps == 0 and report.notes["zero_shot"]
    assert model.max_positions_ == POSITIONS
    return model


def _reference_logprobs(model: HFPretrainedLM, text: str) -> tuple[list[int], np.ndarray]:
    """Sub-word ids of ``text`` and ln p of each given the start token and all before it,
    straight from the transformers model in one forward pass (text must fit its positions)."""
    ids = model.tokenizer_(text, add_special_tokens=False)["input_ids"]
    x = torch.tensor([[model.start_id_, *ids]])
    assert x.shape[1] <= POSITIONS
    with torch.no_grad():
        lp = torch.log_softmax(model.model_(input_ids=x).logits.double(), dim=-1)
    return ids, lp[0, :-1].gather(1, x[0, 1:, None])[:, 0].numpy()


# -- the pieces -----------------------------------------------------------------------------------


def test_window_plan_scores_every_position_once():
    assert window_plan(7, 4, 2) == [(0, 4, 1), (2, 6, 4), (4, 7, 6)]  # ContextPolicy's example
    assert window_plan(1, 4, 2) == []  # only the start token: nothing to score
    for length, window, stride in [(50, 8, 3), (9, 8, 8), (100, 16, 1), (5, 64, 32)]:
        plan = window_plan(length, window, stride)
        scored = np.concatenate([np.arange(first, end) for _, end, first in plan])
        np.testing.assert_array_equal(scored, np.arange(1, length))
        for start, end, first in plan:
            assert end - start <= window and start < first  # each target has an input before it


def test_text_with_owners(data):
    ids = data.test.ids[:40]
    text, owners = text_with_owners(ids, data.vocab)
    assert text == data.vocab.detokenize(ids)
    words = data.vocab.decode(ids)
    for i, w in enumerate(words):
        piece = "".join(c for c, o in zip(text, owners, strict=True) if o == i)
        line_start = i == 0 or ids[i - 1] == data.vocab.boundary_id
        if ids[i] == data.vocab.boundary_id:
            assert piece == "\n"
        else:
            assert piece == (w if line_start else " " + w)  # a word owns the space before it
    lines = split_after_boundaries(ids, data.vocab.boundary_id)
    np.testing.assert_array_equal(np.concatenate([seg for _, seg in lines]), ids)
    assert all(seg[-1] == data.vocab.boundary_id for _, seg in lines[:-1])


# -- hf:<folder> ---------------------------------------------------------------------------------


def test_registry_resolves_any_hf_name(source):
    model = registry.build(f"hf:{source}", {"batch_size": 3})
    assert isinstance(model, HFPretrainedLM) and model.cfg.source == source
    assert not model.closed_vocabulary


def test_sums_equal_the_models_own_likelihood(hf, data):
    ids = data.test.ids[:30]  # fits one window: compare with a single direct forward pass
    sub_ids, ref = _reference_logprobs(hf, data.vocab.detokenize(ids))
    lp = hf.token_logprobs(ids)
    assert lp.shape == ids.shape and lp.dtype == np.float64
    np.testing.assert_allclose(lp.sum(), ref.sum(), rtol=0, atol=1e-4)
    # The byte-level pre-tokenizer keeps "\n" a sub-word of its own, so each boundary token
    # gets exactly the log-prob of its newline sub-word, in order.
    newline = hf.tokenizer_.convert_tokens_to_ids("Ċ")
    boundary = ids == data.vocab.boundary_id
    np.testing.assert_allclose(lp[boundary], ref[np.array(sub_ids) == newline], atol=1e-5)
    # Reset at boundaries: each line is its own text after the start token.
    lp_lines = hf.token_logprobs(ids, context=ContextPolicy(reset_at_boundary=True))
    for offset, seg in split_after_boundaries(ids, data.vocab.boundary_id):
        _, ref_line = _reference_logprobs(hf, data.vocab.detokenize(seg))
        np.testing.assert_allclose(lp_lines[offset : offset + len(seg)].sum(), ref_line.sum(),
                                   atol=1e-4)


def test_sliding_windows_against_brute_force(hf, data):
    """Window 8, stride 1: every sub-word after the 7th is predicted from exactly the 7 before."""
    ids = data.test.ids[:25]
    text = data.vocab.detokenize(ids)
    sub = [hf.start_id_, *hf.tokenizer_(text, add_special_tokens=False)["input_ids"]]
    assert len(sub) > 16
    ref = 0.0
    with torch.no_grad():
        for p in range(1, len(sub)):
            x = torch.tensor([sub[max(0, p - 7) : p + 1]])
            lp = torch.log_softmax(hf.model_(input_ids=x).logits[0, -2].double(), dim=-1)
            ref += float(lp[sub[p]])
    got = hf.token_logprobs(ids, context=ContextPolicy(window=8, stride=1))
    np.testing.assert_allclose(got.sum(), ref, atol=1e-4)


def test_contract_checks_that_apply(hf, data):
    contract.check_no_peeking(hf, data)
    contract.check_scores_finite(hf, data)
    contract.check_rejects_foreign_ids(hf, data)
    lp = hf.token_logprobs(data.valid.ids)
    m = metrics_from_logprobs(lp, data.valid)
    assert m.bpc < 8.0  # the few training steps beat a uniform byte model
    assert hf.num_parameters() == sum(p.numel() for p in hf.model_.parameters())


def test_open_vocabulary_has_no_step(hf, data):
    with pytest.raises(NotImplementedError, match="open-vocabulary"):
        hf.step(None, np.array([data.vocab.boundary_id]))
    with pytest.raises(NotImplementedError, match="open-vocabulary"):
        hf.generate(data.test.ids[:3], 5)


def test_save_stores_source_and_fingerprint(hf, data, tmp_path):
    contract.check_save_load(hf, data, tmp_path)
    assert load_model(tmp_path / "ckpt").cfg.source == hf.cfg.source


def test_load_refuses_changed_weights(data, tmp_path):
    folder = tmp_path / "weights"
    _tiny_pretrained(folder, data, seed=1, train_steps=0)
    model = registry.build(f"hf:{folder}")
    model.fit(data.train.ids, data.vocab)
    model.save(tmp_path / "ckpt")
    _tiny_pretrained(folder, data, seed=2, train_steps=0)  # other weights under the same source
    with pytest.raises(ValueError, match="fingerprint"):
        load_model(tmp_path / "ckpt")


# -- hf-gpt2 --------------------------------------------------------------------------------------


def test_gpt2_parameter_count_formula():
    # GPT-2 small (Radford et al. 2019): 12 layers, 768 wide, 1,024 positions, 50,257 tokens
    small = HFGPT2Config(n_layer=12, n_head=12, n_embd=768, context=1024)
    assert gpt2_parameter_count(small, 50257) == 124_439_808
    for cfg, v in [(HFGPT2Config(n_layer=2, n_head=2, n_embd=32, context=16), 40),
                   (HFGPT2Config(n_layer=3, n_head=4, n_embd=64, context=50), 1000)]:
        net = HFGPT2Net(v, cfg)
        assert sum(p.numel() for p in net.parameters()) == gpt2_parameter_count(cfg, v)


def test_hf_gpt2_is_the_library_model_trained_by_the_shared_loop(data):
    model = registry.build("hf-gpt2", smoke=True)
    assert isinstance(model, HFGPT2LM)
    report = model.fit(data.train.ids, data.vocab, budget=Budget(steps=3), valid=data.valid.ids)
    assert report.steps == 3 and report.train_tokens == 3 * 8 * 16  # batch 8 x context 16
    assert isinstance(model.module_.gpt, GPT2LMHeadModel)
    assert model.module_.gpt.config.n_positions == 16
    assert model.module_.gpt.lm_head.weight is model.module_.gpt.transformer.wte.weight
    assert model.num_parameters() == gpt2_parameter_count(model.cfg, len(data.vocab))
