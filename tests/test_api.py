from dataclasses import dataclass

import numpy as np
import pytest

from lmladder.api import Budget, ConfigError, Vocab, build_config, log_softmax, sample_next


@dataclass(frozen=True)
class Cfg:
    order: int = 3
    rate: float = 0.1
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)
    maybe: int | None = None


def test_build_config_converts_and_checks():
    c = build_config(Cfg, {"order": 5, "rate": 1, "sizes": [3, 4]})
    assert c == Cfg(order=5, rate=1.0, sizes=(3, 4))
    assert isinstance(c.rate, float)


def test_unknown_key_names_where_and_valid_keys():
    with pytest.raises(ConfigError) as err:
        build_config(Cfg, {"ordr": 5}, where="quick.toml: models[0].config")
    msg = str(err.value)
    assert "quick.toml: models[0].config" in msg and "'ordr'" in msg and "order" in msg


@pytest.mark.parametrize("values", [{"order": "5"}, {"order": 2.5}, {"order": True},
                                    {"sizes": [1, "a"]}, {"maybe": "no"}])
def test_wrong_types_are_errors(values):
    with pytest.raises(ConfigError, match="must be"):
        build_config(Cfg, values)


def test_vocab_round_trip_and_hash():
    v = Vocab(["<eos>", "a", "b", "<unk>"], boundary="<eos>", unk="<unk>")
    assert list(v.encode(["a", "zzz", "<eos>"])) == [1, 3, 0]
    assert Vocab.from_dict(v.to_dict()) == v
    other = Vocab(["<eos>", "b", "a", "<unk>"], boundary="<eos>", unk="<unk>")
    assert other.sha256 != v.sha256
    assert v.detokenize([1, 2, 0, 2]) == "a b\nb"
    chars = Vocab(["\n", "h", "i"], boundary="\n", separator="")
    assert chars.detokenize(chars.encode(list("hi\nih"))) == "hi\nih"
    with pytest.raises(KeyError):
        chars.encode(["x"])


def test_budget():
    b = Budget(tokens=100, seconds=10)
    assert not b.exhausted(tokens=99, seconds=1)
    assert b.exhausted(tokens=100)
    assert b.fraction(tokens=50, seconds=8) == pytest.approx(0.8)
    assert Budget().fraction(tokens=5) is None


def test_sample_next_respects_top_k_and_seed():
    logp = log_softmax(np.array([0.0, 1.0, 2.0, 3.0]))
    draws = {sample_next(logp, np.random.default_rng(s), top_k=2) for s in range(50)}
    assert draws == {2, 3}
    a = [sample_next(logp, np.random.default_rng(7)) for _ in range(3)]
    b = [sample_next(logp, np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    np.testing.assert_allclose(np.exp(logp).sum(), 1.0)


def test_harness_and_count_models_import_without_torch():
    """The registry is lazy: listing, the n-gram family and hmmlearn need no torch."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import lmladder.baselines.ngram, lmladder.baselines.hmm_hmmlearn\n"
            "import lmladder.cli, lmladder.reports.render\n"
            "from lmladder.cli import main; main(['list', 'models'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "kn5" in done.stdout


# -- configs check themselves ---------------------------------------------------------------------

# (registry entry, bad config, the key the one-line message must name); each builds through
# lmladder.build, so the message also names where the config came from.
BAD_CONFIGS = [
    # the type checker: fixed-length tuples, 64-bit integers, finite floats
    ("lstm", {"betas": [0.9]}, "betas"),
    ("lstm", {"betas": [0.9, 0.99, 0.999]}, "betas"),
    ("transformer", {"seed": 2**64}, "seed"),
    ("kn3", {"order": -(2**70)}, "order"),
    ("lstm", {"lr": float("nan")}, "lr"),
    ("transformer", {"dropout": float("inf")}, "dropout"),
    ("hmm", {"tol": float("-inf")}, "tol"),
    # n-grams
    ("kn3", {"order": 0}, "order"),
    ("kn3", {"order": 10**6}, "order"),
    ("laplace2", {"k": 0.0}, "k"),
    ("kn3", {"discount": 1.5}, "discount"),
    # HMMs (EMConfig and each backend)
    ("hmm", {"states": 0}, "states"),
    ("hmm", {"max_iterations": 0}, "max_iterations"),
    ("hmm", {"tol": -1e-3}, "tol"),
    ("hmm", {"emission_prior": -0.5}, "emission_prior"),
    ("hmm", {"init_noise": -1.0}, "init_noise"),
    ("hmm", {"patience": 0}, "patience"),
    ("hmm", {"batch_tokens": 0}, "batch_tokens"),
    ("hmm", {"lr": 0.0}, "lr"),
    ("hmm", {"stage_iterations": 0}, "stage_iterations"),
    ("hmm", {"threads": 0}, "threads"),
    ("hmm", {"states": 8, "grow_from": 16}, "grow_from"),
    ("hmm-hmmlearn", {"seed": -1}, "seed"),
    ("hmm-hmmlearn", {"transition_prior": -1.0}, "transition_prior"),
    # the training loop (every torch family)
    ("lstm", {"batch_size": 0}, "batch_size"),
    ("gru", {"lr": -0.1}, "lr"),
    ("lstm", {"momentum": 1.0}, "momentum"),
    ("transformer", {"betas": [0.9, 1.0]}, "betas"),
    ("transformer", {"weight_decay": -0.1}, "weight_decay"),
    ("lstm", {"warmup_steps": -1}, "warmup_steps"),
    ("lstm", {"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ("lstm", {"plateau_factor": 0.5}, "plateau_factor"),
    ("lstm", {"grad_clip": 0.0}, "grad_clip"),
    ("lstm", {"eval_every": -5}, "eval_every"),
    ("lstm", {"eval_tokens": 0}, "eval_tokens"),
    ("lstm", {"max_epochs": 0.0}, "max_epochs"),
    ("lstm", {"score_chunk": 0}, "score_chunk"),
    ("hf-gpt2", {"batch_size": 0}, "batch_size"),
    # architectures
    ("lstm", {"hidden": 0}, "hidden"),
    ("lstm", {"layers": 0}, "layers"),
    ("lstm", {"bptt": 0}, "bptt"),
    ("lstm", {"dropout": 1.0}, "dropout"),
    ("lstm", {"emb_size": 0, "tied": False}, "emb_size"),
    ("lstm", {"init_range": 0.0}, "init_range"),
    ("transformer", {"heads": 0}, "heads"),
    ("transformer", {"width": 0}, "width"),
    ("transformer", {"context": 0}, "context"),
    ("transformer", {"mlp_ratio": 0}, "mlp_ratio"),
    ("transformer", {"dropout": -0.1}, "dropout"),
    ("transformer", {"rope_base": 0.0}, "rope_base"),
    ("hf-gpt2", {"n_head": 0}, "n_head"),
    ("hf-gpt2", {"n_embd": 0}, "n_embd"),
    ("hf-gpt2", {"context": 0}, "context"),
    ("hf-gpt2", {"dropout": 1.0}, "dropout"),
    # hf: pretrained sources
    ("hf:/no/such/folder", {}, "/no/such/folder"),
    ("hf:./missing-model", {}, "./missing-model"),
    ("hf:not a hub id!", {}, "not a hub id!"),
    ("hf:gpt2", {"batch_size": 0}, "batch_size"),
    ("hf:gpt2", {"max_window": 1}, "max_window"),
]


@pytest.mark.parametrize("name,config,key", BAD_CONFIGS,
                         ids=[f"{n}-{k}-{i}" for i, (n, _, k) in enumerate(BAD_CONFIGS)])
def test_bad_configs_are_one_line_config_errors_naming_the_key(name, config, key):
    from lmladder import registry

    with pytest.raises(ConfigError) as err:
        registry.build(name, config, where="m.toml: models[0].config")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("m.toml: models[0].config: "), msg
    assert key in msg, msg
    shown = next(iter(config.values()), None)
    if shown is not None and not isinstance(shown, list):
        assert repr(shown) in msg or str(shown) in msg, msg  # ... and the value


def test_fixed_length_tuple_message():
    @dataclass(frozen=True)
    class Betas:
        betas: tuple[float, float] = (0.9, 0.99)

    with pytest.raises(ConfigError) as err:
        build_config(Betas, {"betas": [0.9]})
    assert str(err.value) == "config: key 'betas' must be tuple[float, float] (2 values), got [0.9]"
    assert build_config(Betas, {"betas": [0.8, 0.9]}).betas == (0.8, 0.9)


def test_hf_source_that_is_an_existing_folder_or_hub_id_is_accepted(tmp_path):
    from lmladder.neural.hf import check_source

    with pytest.raises(ValueError, match="the folder has no tokenizer"):
        check_source(str(tmp_path))  # transformers would make an empty tokenizer: ppl 1.00
    (tmp_path / "tokenizer.json").write_text("{}")
    for ok in ("gpt2", "openai-community/gpt2", str(tmp_path)):
        check_source(ok)
    (tmp_path / "file.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        check_source(str(tmp_path / "file.bin"))


@pytest.mark.parametrize("bad", [dict(tokens=0), dict(steps=-1), dict(seconds=0),
                                 dict(seconds=-2.5), dict(seconds=float("inf")),
                                 dict(seconds=float("nan")), dict(tokens=1.5)])
def test_budget_refuses_empty_or_nonsense_limits(bad):
    key, value = next(iter(bad.items()))
    with pytest.raises(ConfigError, match=rf"budget\.{key} must be .*, got {value!r}"):
        Budget(**bad)
