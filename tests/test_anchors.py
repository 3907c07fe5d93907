"""The literature anchors file: every figure parses, carries a source, and the ones the issue
names are there with their published values."""

from __future__ import annotations

import pytest

from lmladder.reports.anchors import AnchorError, load_anchors, matching


def test_the_shipped_anchors_parse_and_name_their_sources():
    anchors = load_anchors()
    assert len(anchors) >= 12
    for a in anchors:
        assert a.source and a.url.startswith("http"), a
        assert a.family in {"n-gram", "HMM", "RNN", "Transformer", "other"}, a


@pytest.mark.parametrize("dataset,metric,model_word,value", [
    ("ptb", "metrics.test.ppl", "KN5", 141.2),
    ("ptb", "metrics.test.ppl", "KN3", 148.3),
    ("ptb", "metrics.test.ppl", "Elman", 124.7),
    ("ptb", "metrics.test.ppl", "small", 114.5),
    ("ptb", "metrics.test.ppl", "medium", 82.7),
    ("ptb", "metrics.test.ppl", "large", 78.4),
    ("ptb", "metrics.test.ppl", "AWD", 57.3),
    ("wikitext-2", "metrics.test.ppl", "AWD", 65.8),
    ("tinyshakespeare", "metrics.valid.nll", "baby GPT", 1.4697),
    ("tinyshakespeare", "metrics.valid.nll", "CPU", 1.88),
    ("ptb", "tasks.rt-polarity.accuracy", "Naive Bayes", 0.779),
    ("wikitext-2", "tasks.cloze.accuracy", "RNN", 0.49),
])
def test_the_issues_figures_are_anchors(dataset, metric, model_word, value):
    found = [a for a in matching(load_anchors(), dataset, metric) if model_word in a.model]
    assert [a.value for a in found] == [value]


def test_a_figure_from_another_test_is_marked_not_comparable():
    msr = [a for a in load_anchors() if a.metric == "tasks.cloze.accuracy"]
    assert msr and not any(a.comparable for a in msr)
    assert all("MSR" in a.note for a in msr)


def test_task_anchors_apply_to_every_dataset_and_dataset_anchors_only_to_theirs():
    anchors = load_anchors()
    assert matching(anchors, "synthetic", "tasks.rt-polarity.accuracy")
    assert not matching(anchors, "synthetic", "metrics.test.ppl")


@pytest.mark.parametrize("body,message", [
    ('[[anchor]]\ndataset = "ptb"\n', "missing key 'metric'"),
    ('[[anchor]]\ndataset = "ptb"\nmetric = "metrics.test.ppl"\nvalue = "141"\nmodel = "x"\n'
     'family = "n-gram"\nsource = "s"\n', "value must be float"),
    ('[[anchor]]\ndataset = "ptb"\nmetric = "ppl"\nvalue = 1\nmodel = "x"\nfamily = "n-gram"\n'
     'source = "s"\n', "not a record path"),
    ('[[anchor]]\ndataset = "ptb"\nmetric = "metrics.test.ppl"\nvalue = 1\nmodel = "x"\n'
     'family = "n-gram"\nsource = "s"\ncolour = "red"\n', "unknown key 'colour'"),
    ("[[anchor]\n", "cannot read"),
    ('title = "x"\n', "only [[anchor]]"),
])
def test_a_malformed_file_is_one_clear_error(tmp_path, body, message):
    path = tmp_path / "a.toml"
    path.write_text(body)
    with pytest.raises(AnchorError, match=message.replace("[", r"\[")) as err:
        load_anchors(path)
    assert str(path) in str(err.value)
