"""The lmladder harness: the model contract, data, scoring, matrices, results and the CLI."""

__version__ = "0.1.0"
