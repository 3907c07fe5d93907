"""Performance scripts: lmladder beside its peers (KenLM, nltk.lm, hmmlearn, the PyTorch example),
run as ``python -m lmladder.perf.ngram | hmm | neural``.  They may import the model families; the
harness core never imports them."""
