"""lmladder: n-gram, HMM, RNN and Transformer language models on one ladder, measured alike.

From Python (a notebook, a script)::

    import lmladder

    data = lmladder.load_dataset("ptb", data_dir="~/corpora")  # or $LMLADDER_DATA, the cache
    kn5 = lmladder.build("kn5")
    kn5.fit(data.train.ids, data.vocab)
    lmladder.score(kn5, data).ppl                    # test perplexity: 141.19
    frame = lmladder.load_results("results/quick")   # one row per matrix cell

The package is the harness (this folder, ``benchmarks/`` in the source tree); the model families
are :mod:`lmladder.baselines` and :mod:`lmladder.neural`, the HTML report :mod:`lmladder.reports`
and the performance scripts :mod:`lmladder.perf`.  The names below are imported on first use, so
``import lmladder`` stays cheap and needs neither torch nor matplotlib.
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it (the version too: importlib.metadata costs a lean
# process such as ``lmladder score`` more than its own imports)
_EXPORTS = {
    "__version__": "_version",
    "LanguageModel": "api",
    "Vocab": "api",
    "Budget": "api",
    "FitReport": "api",
    "ContextPolicy": "api",
    "Progress": "api",
    "ConfigError": "api",
    "CheckpointError": "api",
    "register": "registry",
    "build": "registry",
    "load_model": "registry",
    "Dataset": "corpus",
    "Split": "corpus",
    "load_dataset": "data",
    "Metrics": "scoring",
    "score": "scoring",
    "score_split": "scoring",
    "load_matrix": "run",
    "run_matrix": "run",
    "load_results": "results",
    "render_report": "reports.render",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lmladder' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lmladder.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

