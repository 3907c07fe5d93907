"""The ``lmladder`` command (and ``python -m lmladder``).

``lmladder score`` is a whole-process query program timed against KenLM's (see
:mod:`lmladder.query`), so it starts on lean imports; every other command loads the full command
line, :mod:`lmladder.cli`, which also lists ``score`` in its help.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["score"]:
        from lmladder.query import main as score

        return score(argv[1:])
    from lmladder.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
