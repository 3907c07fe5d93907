"""The import path that torch language models had before the training code was split by its flow.

``lmladder.neural.train`` keeps every public name it had; the code lives in

* :mod:`lmladder.neural.torchlm` -- :class:`TorchLM`, the base class (state API, scoring,
  save/load, ``fit``), and the extension interface a model family implements;
* :mod:`lmladder.neural.loop` -- the budgeted training loop: :class:`TrainConfig`,
  :class:`StopTraining`, :func:`cross_entropy`, schedule, evaluation plan, resumable state;
* :mod:`lmladder.neural.batches` -- how the token stream becomes ``(B, T)`` batches (pictured);
* :mod:`lmladder.neural.finetune` -- :class:`FineTuneConfig`, :class:`ClassifierNet`,
  :class:`FineTunedClassifier`: fine-tuning with a classification head.
"""

from lmladder.neural.finetune import ClassifierNet, FineTuneConfig, FineTunedClassifier
from lmladder.neural.loop import StopTraining, TrainConfig, _Run, cross_entropy
from lmladder.neural.torchlm import TorchLM

__all__ = [
    "ClassifierNet",
    "FineTuneConfig",
    "FineTunedClassifier",
    "StopTraining",
    "TorchLM",
    "TrainConfig",
    "_Run",
    "cross_entropy",
]
