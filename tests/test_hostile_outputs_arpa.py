"""Issue 23, two classes: outputs that overwrite inputs, and ARPA files that lie.

Outputs: every command that writes a file the user names (``report -o``, ``report --compare … -o``,
``export-arpa -o``) refuses, in one line naming the output and the input, to write over an input
of the same command -- directly, through a symlink, through a hard link, or through the exports
``report`` writes beside its page -- and the input is byte-identical afterwards.

ARPA: malformed files (numbers Python's ``float`` takes but ARPA writers never write, duplicates,
header counts that do not match, missing contexts, models that do not sum to one, truncated files,
binary junk, empty files, folders, corrupt gzip) are refused in one line naming the file and the
line; a gzip-compressed valid file is read as the plain one.
"""

from __future__ import annotations

import gzip
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

from lmladder import registry
from lmladder.baselines.arpa import parse_arpa
from lmladder.baselines.ngram import NGramLM
from lmladder.cli import main
from lmladder.data import load_dataset
from lmladder.results import is_record_name


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


# -- outputs that overwrite inputs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, data):
    """A results folder (kn3 on synthetic, model saved beside its record), a second one, a
    saved n-gram folder, a corpus file and folder, and an ARPA file."""
    t = tmp_path_factory.mktemp("world")
    (t / "m.toml").write_text('[matrix]\ndatasets = ["synthetic"]\n[[models]]\nname = "kn3"\n')
    for name in ("res", "res2"):
        assert main(["run", str(t / "m.toml"), "--results", str(t / name), "--no-report",
                     "--save-models", "--in-process"]) == 0
    (t / "res" / "time-to-ppl.json").write_text("{}")
    model = NGramLM(order=2)
    model.fit(data.train.ids[:3000], data.vocab)
    model.save(t / "kn2.model")
    model.to_arpa(t / "kn2.arpa")
    text = data.vocab.detokenize(data.train.ids[:4000])
    (t / "corpus.txt").write_text(text)
    (t / "corpus").mkdir()
    for split in ("train", "valid", "test"):
        (t / "corpus" / f"{split}.txt").write_text(text)
    return t


def _record(t: Path, folder: str = "res") -> Path:
    (path,) = [p for p in (t / folder).rglob("*.json") if is_record_name(p)]
    return path


def _snapshot(t: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(t.rglob("*")) if p.is_file()
            and not p.is_symlink() and ".locks" not in p.parts}


def _link(t: Path, name: str, target: Path, hard: bool = False) -> Path:
    link = t / "links" / name
    link.parent.mkdir(exist_ok=True)
    if not os.path.lexists(link):
        (os.link if hard else os.symlink)(target, link)
    return link


def _export_beside_links_to_record(t: Path) -> Path:
    """A folder whose results.json (an export ``report`` writes beside its page) is a symlink
    to a record: the page is written there, the export would go through the link."""
    folder = t / "beside"
    folder.mkdir(exist_ok=True)
    if not os.path.lexists(folder / "results.json"):
        os.symlink(_record(t), folder / "results.json")
    return folder / "report.html"


def _model_folder_in_results(t: Path) -> Path:
    (folder,) = (t / "res").rglob("*.model")
    return folder


OVERWRITES = [
    # (case id, argv from the world folder, what the one line must name)
    ("report-onto-record", lambda t: ["report", str(t / "res"), "-o", str(_record(t))],
     "result record"),
    ("report-onto-kept-attempt-name",
     lambda t: ["report", str(t / "res"), "-o", str(_record(t).with_suffix(".failed-1.json"))],
     "result record"),
    ("report-onto-other-folders-record",
     lambda t: ["report", str(t / "res"), "-o", str(_record(t, "res2"))], "result record"),
    ("report-into-saved-model-beside-record",
     lambda t: ["report", str(t / "res"), "-o", str(_model_folder_in_results(t) / "state.npz")],
     ".model"),
    ("report-into-saved-model-folder",
     lambda t: ["report", str(t / "res"), "-o", str(t / "kn2.model" / "report.html")],
     "saved model folder"),
    ("report-onto-time-to-ppl",
     lambda t: ["report", str(t / "res"), "-o", str(t / "res" / "time-to-ppl.json")],
     "time-to-ppl.json"),
    ("report-into-locks", lambda t: ["report", str(t / "res"), "-o",
                                     str(t / "res" / ".locks" / "r.html")], ".locks"),
    ("report-symlink-to-record",
     lambda t: ["report", str(t / "res"), "-o", str(_link(t, "r.html", _record(t)))],
     "result record"),
    ("report-hardlink-to-record",
     lambda t: ["report", str(t / "res"), "-o", str(_link(t, "h.html", _record(t), hard=True))],
     "hard link"),
    ("report-export-beside-is-symlink-to-record",
     lambda t: ["report", str(t / "res"), "-o", str(_export_beside_links_to_record(t))],
     "results.json"),
    ("report-onto-results-folder", lambda t: ["report", str(t / "res"), "-o", str(t / "res")],
     "is a folder"),
    ("compare-onto-record-of-a",
     lambda t: ["report", "--compare", str(t / "res"), str(t / "res2"), "-o", str(_record(t))],
     "result record"),
    ("compare-symlink-to-record-of-b",
     lambda t: ["report", "--compare", str(t / "res"), str(t / "res2"), "-o",
                str(_link(t, "c.html", _record(t, "res2")))], "result record"),
    ("compare-hardlink-to-time-to-ppl",
     lambda t: ["report", "--compare", str(t / "res"), str(t / "res2"), "-o",
                str(_link(t, "c2.html", t / "res" / "time-to-ppl.json", hard=True))],
     "hard link"),
    ("compare-into-model-folder",
     lambda t: ["report", "--compare", str(t / "res"), str(t / "res2"), "-o",
                str(_model_folder_in_results(t) / "compare.html")], ".model"),
    ("export-into-model-folder",
     lambda t: ["export-arpa", "--model-dir", str(t / "kn2.model"), "-o",
                str(t / "kn2.model" / "state.npz")], "saved model folder"),
    ("export-onto-model-json",
     lambda t: ["export-arpa", "--model-dir", str(t / "kn2.model"), "-o",
                str(t / "kn2.model" / "model.json")], "saved model folder"),
    ("export-onto-model-folder",
     lambda t: ["export-arpa", "--model-dir", str(t / "kn2.model"), "-o", str(t / "kn2.model")],
     "saved model folder"),
    ("export-symlink-into-model-folder",
     lambda t: ["export-arpa", "--model-dir", str(t / "kn2.model"), "-o",
                str(_link(t, "e.arpa", t / "kn2.model" / "state.npz"))], "saved model folder"),
    ("export-hardlink-to-model-file",
     lambda t: ["export-arpa", "--model-dir", str(t / "kn2.model"), "-o",
                str(_link(t, "e2.arpa", t / "kn2.model" / "state.npz", hard=True))],
     "saved model folder"),
    ("export-into-another-model-folder",
     lambda t: ["export-arpa", "--model-dir", str(_model_folder_in_results(t)), "-o",
                str(t / "kn2.model" / "x.arpa")], "saved model folder"),
    ("export-onto-record",
     lambda t: ["export-arpa", "--model-dir", str(t / "kn2.model"), "-o", str(_record(t))],
     "result record"),
    ("export-onto-corpus-file",
     lambda t: ["export-arpa", "--model", "kn3", "--dataset", f"text:{t / 'corpus.txt'}", "-o",
                str(t / "corpus.txt")], "corpus file"),
    ("export-symlink-to-corpus-file",
     lambda t: ["export-arpa", "--model", "kn3", "--dataset", f"text:{t / 'corpus.txt'}", "-o",
                str(_link(t, "e3.arpa", t / "corpus.txt"))], "corpus file"),
    ("export-onto-corpus-folder-file",
     lambda t: ["export-arpa", "--model", "kn3", "--dataset", f"text:{t / 'corpus'}", "-o",
                str(t / "corpus" / "valid.txt")], "corpus file"),
    ("export-onto-a-device", lambda t: ["export-arpa", "--model-dir", str(t / "kn2.model"), "-o",
                                        os.devnull], "not a regular file"),
    ("export-an-arpa-entry",
     lambda t: ["export-arpa", "--model", f"arpa:{t / 'kn2.arpa'}", "--dataset", "synthetic",
                "-o", str(t / "kn2.arpa")], "ARPA file already; copy it"),
    ("export-a-saved-entry",
     lambda t: ["export-arpa", "--model", f"saved:{t / 'kn2.model'}", "--dataset", "synthetic",
                "-o", str(t / "x.arpa")], "--model-dir"),
]


@pytest.mark.parametrize("case,argv,needle", OVERWRITES, ids=[c[0] for c in OVERWRITES])
def test_outputs_never_overwrite_inputs(case, argv, needle, world, capsys):
    args = argv(world)  # builds the links first, so that the snapshot holds them
    before = _snapshot(world)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lmladder: error: "), err
    assert needle in err, err
    assert "internal error" not in err
    assert _snapshot(world) == before  # every input byte-identical, nothing new written


def test_saved_folders_of_arpa_and_saved_entries_say_what_to_do(world, data, capsys):
    arpa = registry.build(f"arpa:{world / 'kn2.arpa'}")
    arpa.fit(data.train.ids, data.vocab)
    arpa.save(world / "arpa.model")
    assert main(["export-arpa", "--model-dir", str(world / "arpa.model"), "-o",
                 str(world / "y.arpa")]) == 2
    err = capsys.readouterr().err
    assert f"copy it (cp {world / 'kn2.arpa'} OUT.arpa)" in err and err.count("\n") == 1
    saved = registry.build(f"saved:{world / 'kn2.model'}")
    saved.fit(data.train.ids, data.vocab)
    saved.save(world / "saved.model")
    assert main(["export-arpa", "--model-dir", str(world / "saved.model"), "-o",
                 str(world / "y.arpa")]) == 2
    assert f"--model-dir {world / 'kn2.model'}" in capsys.readouterr().err
    assert not (world / "y.arpa").exists()


def test_outputs_beside_inputs_are_still_written(world, capsys):
    """What the check allows: the default report and comparison pages inside the results
    folders, and an export next to (not inside) the model folder."""
    assert main(["report", str(world / "res")]) == 0
    assert (world / "res" / "report.html").is_file()
    assert main(["report", "--compare", str(world / "res"), str(world / "res2")]) == 0
    assert (world / "res2" / "compare.html").is_file()
    assert main(["export-arpa", "--model-dir", str(world / "kn2.model"), "-o",
                 str(world / "kn2.model.arpa")]) == 0
    assert (world / "kn2.model.arpa").read_bytes() == (world / "kn2.arpa").read_bytes()
    capsys.readouterr()


# -- ARPA files that lie --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good(tmp_path_factory, data) -> list[str]:
    """The lines of a valid trigram ARPA file (lmladder's kn3 on synthetic), without newlines."""
    model = NGramLM(order=3)
    model.fit(data.train.ids[:4000], data.vocab)
    path = model.to_arpa(tmp_path_factory.mktemp("good") / "kn3.arpa")
    return path.read_text().split("\n")


def _first(lines: list[str], section: str, skip: int = 0) -> int:
    """Index of the first n-gram line of ``section`` (e.g. ``\\2-grams:``) past ``skip``."""
    return lines.index(section) + 1 + skip


def _set(lines: list[str], i: int, field: int, value: str) -> list[str]:
    out = list(lines)
    parts = out[i].split("\t")
    parts[field] = value
    out[i] = "\t".join(parts)
    return out


def _count(lines: list[str], j: int, delta: int) -> list[str]:
    return [re.sub(r"=(\d+)$", lambda m: f"={int(m.group(1)) + delta}", s)
            if s.startswith(f"ngram {j}=") else s for s in lines]


def _insert(lines: list[str], i: int, text: str, j: int) -> list[str]:
    return _count(lines[:i] + [text] + lines[i:], j, +1)


def _uni(g, k=5):
    return _first(g, "\\1-grams:", k)


def _bi(g, k=5):
    return _first(g, "\\2-grams:", k)


def _tri(g, k=5):
    return _first(g, "\\3-grams:", k)


def _words(line: str) -> list[str]:
    return line.split("\t")[1].split()


# (case id, lines -> (new lines, 0-based index of the line to blame or None), needle)
MALFORMED = [
    ("underscore-number", lambda g: (_set(g, _uni(g), 0, "-1_6"), _uni(g)), "'-1_6'"),
    ("nan-probability", lambda g: (_set(g, _uni(g), 0, "nan"), _uni(g)), "'nan'"),
    ("inf-probability", lambda g: (_set(g, _uni(g), 0, "inf"), _uni(g)), "'inf'"),
    ("spaced-underscore-backoff",
     lambda g: (_set(g, _bi(g), 2, "-0_5") if g[_bi(g)].count("\t") == 2 else
                _set(g, _uni(g, 1), 2, "-0_5"), None), "'-0_5'"),
    ("hex-number", lambda g: (_set(g, _uni(g), 0, "-0x1p3"), _uni(g)), "decimal number"),
    ("positive-log-probability", lambda g: (_set(g, _uni(g), 0, "0.5"), _uni(g)), "positive"),
    ("duplicate-unigram",
     lambda g: (_insert(g, _uni(g, 7), g[_uni(g)], 1), _uni(g, 7)), "duplicate 1-gram"),
    ("duplicate-trigram",
     lambda g: (_insert(g, _tri(g, 7), g[_tri(g)], 3), _tri(g, 7)), "duplicate 3-gram"),
    ("header-count-too-big", lambda g: (_count(g, 2, +1), g.index(next(
        s for s in g if s.startswith("ngram 2=")))), "declares ngram 2="),
    ("header-count-too-small", lambda g: (_count(g, 1, -1), 1), "declares ngram 1="),
    ("missing-context",
     lambda g: (_insert(g, _tri(g), "-0.5\tzzz " + " ".join(_words(g[_tri(g)])[1:]), 3),
                _tri(g)), "context 'zzz"),
    ("missing-suffix",
     lambda g: (_insert(g, _tri(g), "-0.5\t" + " ".join(_words(g[_tri(g)])[:2]) + " zzz", 3),
                _tri(g)), "suffix"),
    ("backoff-on-highest-order",
     lambda g: (_set(g, _tri(g), 1, g[_tri(g)].split("\t")[1] + "\t-0.2"), _tri(g)),
     "highest order"),
    ("s-inside-an-ngram",
     lambda g: (_set(g, _bi(g), 1, _words(g[_bi(g)])[0] + " <s>"), _bi(g)), "<s> may only"),
    ("section-out-of-order",
     lambda g: ([s.replace("\\2-grams:", "\\3-grams:") for s in g], g.index("\\2-grams:")),
     "expected \\2-grams:"),
    ("no-data-header", lambda g: ([s for s in g if s != "\\data\\"], None), "\\data\\"),
    ("unigrams-not-normalised",
     lambda g: (_set(g, _uni(g), 0, "-0.01"), g.index("\\1-grams:")), "sum to"),
    ("backoffs-not-normalised",
     lambda g: ([re.sub(r"^(\S+\t\S+\t)(\S+)$", lambda m: f"{m.group(1)}"
                        f"{float(m.group(2)) + 0.3:.6f}", s) for s in g], None), "sums to"),
    ("truncated-mid-section", lambda g: (g[: _bi(g, 20)], None), "truncated"),
    ("truncated-after-header", lambda g: (g[:4], None), "line"),
]


@pytest.mark.parametrize("case,make,needle", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_arpa_is_one_line_naming_file_and_line(case, make, needle, good, data,
                                                         tmp_path):
    lines, blame = make(good)
    path = tmp_path / f"{case}.arpa"
    path.write_text("\n".join(lines))
    model = registry.build(f"arpa:{path}")
    with pytest.raises(ValueError) as err:
        model.fit(data.train.ids, data.vocab)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and needle in text, text
    if blame is not None:
        assert f"line {blame + 1}:" in text, text
    else:
        assert re.search(r"line \d+", text), text


BINARY = [
    ("empty-file", b""),
    ("binary-junk", random.Random(23).randbytes(3000)),
    ("gzip-of-junk", gzip.compress(random.Random(23).randbytes(3000), mtime=0)),
    ("utf8-junk-without-header", b"just some words\nand more\n"),
    ("bzip2-file", b"BZh91AY&SY" + bytes(40)),
    ("kenlm-binary", b"mmap lm http://kheafield.com/code format version 5\n" + bytes(40)),
]


@pytest.mark.parametrize("case,blob", BINARY, ids=[c[0] for c in BINARY])
def test_files_that_are_not_arpa_say_so_in_one_line(case, blob, tmp_path):
    path = tmp_path / f"{case}.arpa"
    path.write_bytes(blob)
    with pytest.raises(ValueError) as err:
        parse_arpa(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and re.search(r"line \d+", text), text
    assert "gzip" in text  # says whether the file was read as gzip (and that gzip is read)


def test_a_folder_is_not_an_arpa_file(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: is a folder")):
        parse_arpa(tmp_path)


def test_gzip_arpa_reads_as_the_plain_file_whatever_its_name(good, data, tmp_path):
    plain = tmp_path / "kn3.arpa"
    plain.write_text("\n".join(good))
    for name in ("kn3.arpa.gz", "kn3-no-suffix.arpa"):  # found by the magic bytes
        (tmp_path / name).write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
        a, b = (registry.build(f"arpa:{p}") for p in (plain, tmp_path / name))
        a.fit(data.train.ids, data.vocab)
        b.fit(data.train.ids, data.vocab)
        ids = data.test.ids[:500]
        np.testing.assert_array_equal(a.token_logprobs(ids), b.token_logprobs(ids))
    cut = tmp_path / "cut.arpa.gz"
    cut.write_bytes(gzip.compress(plain.read_bytes(), mtime=0)[:2000])
    with pytest.raises(ValueError, match=r"cut\.arpa\.gz \(gzip-compressed.*\), line \d+: "):
        parse_arpa(cut)


def test_minus_inf_and_minus_99_are_zero_probabilities(good, tmp_path):
    """``-inf`` (as KenLM reads it) and ``-99`` both stand for a zero probability."""
    i = good.index("\\1-grams:") + 1
    bos = next(k for k in range(i, len(good)) if _words(good[k]) == ["<s>"])
    for value in ("-inf", "-99", "-Infinity"):
        path = tmp_path / "z.arpa"
        path.write_text("\n".join(_set(good, bos, 0, value)))
        assert len(parse_arpa(path)) == 3
