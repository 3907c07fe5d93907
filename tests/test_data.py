import hashlib
import itertools
import urllib.error

import numpy as np
import pytest

from lmladder import data
from lmladder.data import CorpusSpec, DataError, DataNotFoundError, RemoteFile, load_dataset
from lmladder.synthetic import SyntheticSource, forward_logprobs, make_hmm, synthetic_dataset

# ---- real corpora (../shared/data) ---------------------------------------------------------


def test_ptb_matches_the_published_counts(data_dir):
    ptb = load_dataset("ptb", data_dir)
    assert len(ptb.vocab) == 10_000
    assert ptb.train.num_tokens == 929_589
    assert ptb.valid.num_tokens == 73_760
    assert ptb.test.num_tokens == 82_430 and ptb.test.num_lines == 3_761
    assert ptb.test.oov == 0 and ptb.vocab.unk == "<unk>"
    assert ptb.vocab.tokens[int(ptb.test.ids[-1])] == "<eos>"


def test_wikitext2_and_tinyshakespeare(data_dir):
    wt2 = load_dataset("wikitext-2", data_dir)
    assert len(wt2.vocab) == 33_278
    assert (wt2.train.num_tokens, wt2.valid.num_tokens, wt2.test.num_tokens) == (
        2_088_628, 217_646, 245_569)
    ts = load_dataset("tinyshakespeare", data_dir)
    assert len(ts.vocab) == 65 and ts.vocab.separator == ""
    total = sum(s.num_tokens for s in ts.splits.values())
    assert total == 1_115_394
    assert ts.train.num_tokens == int(total * 0.9)
    assert ts.vocab.detokenize(ts.test.ids[:40]) == ts.vocab.detokenize(ts.test.ids)[:40]


def test_environment_variable_is_a_data_root(data_dir, monkeypatch):
    monkeypatch.setenv("LMLADDER_DATA", str(data_dir))
    assert data.locate("ptb") == data_dir


# ---- finding and downloading files ---------------------------------------------------------


def _fake_corpus(tmp_path, monkeypatch, content: bytes):
    src = tmp_path / "remote" / "input.txt"
    src.parent.mkdir()
    src.write_bytes(content)
    spec = CorpusSpec("tinyshakespeare", "char", "fake corpus",
                      {"all": RemoteFile("tinyshakespeare/input.txt",
                                         hashlib.sha256(b"hello\nworld\n" * 50).hexdigest(),
                                         src.as_uri())}, "none")
    monkeypatch.setitem(data.CORPORA, "tinyshakespeare", spec)
    data._load_cached.cache_clear()
    return spec


def test_download_verifies_checksum_and_keeps_the_file(tmp_path, monkeypatch):
    _fake_corpus(tmp_path, monkeypatch, b"hello\nworld\n" * 50)
    ds = load_dataset("tinyshakespeare", tmp_path / "root")
    assert (tmp_path / "root" / "tinyshakespeare" / "input.txt").is_file()
    assert sum(s.num_tokens for s in ds.splits.values()) == 600


def test_download_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    _fake_corpus(tmp_path, monkeypatch, b"tampered\n")
    with pytest.raises(DataError, match="SHA-256"):
        load_dataset("tinyshakespeare", tmp_path / "root")
    assert not (tmp_path / "root" / "tinyshakespeare" / "input.txt").exists()


def test_corrupt_local_file_is_reported(tmp_path, monkeypatch):
    _fake_corpus(tmp_path, monkeypatch, b"hello\nworld\n" * 50)
    bad = tmp_path / "root" / "tinyshakespeare" / "input.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("not the corpus\n")
    with pytest.raises(DataError, match="delete it"):
        load_dataset("tinyshakespeare", tmp_path / "root")


def test_offline_message_names_files_folders_and_urls(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    data._load_cached.cache_clear()
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("ptb", tmp_path / "empty")
    msg = str(err.value)
    calls = []
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    with pytest.raises(DataNotFoundError):
        load_dataset("ptb", tmp_path / "empty")  # the next matrix cell: no second download
    assert calls == []
    for needle in ("ptb/ptb.train.txt", "ptb/ptb.test.txt", str(tmp_path / "empty"),
                   "LMLADDER_DATA", "--data-dir", "sha256", "https://"):
        assert needle in msg


# ---- user corpora --------------------------------------------------------------------------


def test_text_file_is_split_by_lines_and_rare_words_become_unk(tmp_path):
    lines = [f"the cat sat on mat number {i % 3}" for i in range(20)] + ["a hapax here"] * 0
    lines[0] = "the dog sat"  # 'dog' appears once in train -> <unk>
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    ds = load_dataset(f"text:{path}")
    assert (ds.train.num_lines, ds.valid.num_lines, ds.test.num_lines) == (16, 2, 2)
    assert "dog" not in ds.vocab.index and ds.vocab.unk == "<unk>"
    assert ds.vocab.tokens[int(ds.train.ids[1])] == "<unk>"
    assert ds.train.num_words == ds.train.num_tokens


def test_text_folder_layout_and_missing_split(tmp_path):
    for s in ("train", "valid"):
        (tmp_path / f"{s}.txt").write_text("a b c\nb c a\n")
    with pytest.raises(DataError, match="test.txt"):
        load_dataset(f"text:{tmp_path}")
    (tmp_path / "test.txt").write_text("c b a\n")
    data._load_cached.cache_clear()
    ds = load_dataset(f"chars:{tmp_path}")
    assert ds.level == "char" and ds.test.num_tokens == 6


def test_bad_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok line\n" * 12 + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt, line 13: not valid UTF-8"):
        load_dataset(f"text:{path}")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(KeyError, match="ptb.*synthetic"):
        load_dataset("pbt")


# ---- the synthetic source ------------------------------------------------------------------

TINY = SyntheticSource(seed=3, states=3, vocab=6, words_per_state=3, successors=2,
                       mean_length=3.0, tokens=(200, 50, 50))


def test_synthetic_is_deterministic_and_valid():
    a, b = synthetic_dataset(TINY), synthetic_dataset(TINY)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.splits[s].ids, b.splits[s].ids)
    trans, emit = make_hmm(TINY)
    np.testing.assert_allclose(trans.sum(1), 1)
    np.testing.assert_allclose(emit.sum(1), 1)
    assert a.vocab.boundary_id == 0 and emit[:, 0].tolist() == [1, 0, 0, 0]


def test_oracle_equals_brute_force_enumeration_of_state_paths():
    trans, emit = make_hmm(TINY)
    ids = synthetic_dataset(TINY).test.ids[:6]
    k = trans.shape[0]

    def joint(prefix):
        total = 0.0
        for path in itertools.product(range(k), repeat=len(prefix)):
            p, prev = 1.0, 0
            for s, w in zip(path, prefix, strict=True):
                p *= trans[prev, s] * emit[s, w]
                prev = s
            total += p
        return total

    brute = [np.log(joint(ids[: i + 1]) / (joint(ids[:i]) if i else 1.0)) for i in range(len(ids))]
    np.testing.assert_allclose(forward_logprobs(trans, emit, ids), brute, rtol=1e-10)


def test_oracle_distribution_sums_to_one():
    trans, emit = make_hmm(TINY)
    prefix = synthetic_dataset(TINY).test.ids[:4]
    total = sum(np.exp(forward_logprobs(trans, emit, np.append(prefix, w))[-1])
                for w in range(TINY.vocab))
    assert total == pytest.approx(1.0, abs=1e-12)
