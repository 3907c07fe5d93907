"""Files that are whole or absent, and never written through a symbolic link.

Every file lmladder writes for a user (result records, reports, downloaded corpora) goes through
:func:`atomic_write`, so a reader -- or a run resumed after ``kill -9`` -- sees the old file or
the whole new one, never half of one.

Links: a results folder may be shared, and a link planted in it (``.locks/x.lock`` pointing at
``~/.bashrc``) would make a run overwrite whatever it points to.  So what lmladder creates or
replaces inside a results or model folder -- records, exports, temporary files, lock files, model
folders, the ``.locks`` folder -- is opened with ``O_NOFOLLOW`` (:func:`open_nofollow`) or checked
(:func:`refuse_link`), and a link there is refused with :class:`LinkError` ("... is a symbolic
link; lmladder does not write through links in a results folder: remove it").  Records are read
the same way (:func:`read_regular`): a link could point a report at any file of the machine.
The folder a user names (``--results``, ``-o``, ``--data-dir``) may itself be a link -- that is
the user's own choice, like any path on a command line; links *inside* it are not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".tmp-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 on Windows: there a lstat check does the work
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class LinkError(OSError):
    """A file or folder lmladder would write through (or read a record from) is a symbolic
    link.  ``str()`` is one line: the path, what is wrong and what to do."""

    def __init__(self, path: str | os.PathLike, where: str = "a results folder"):
        super().__init__(errno.ELOOP, f"is a symbolic link; lmladder does not write through "
                                      f"links in {where}: remove it", str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def refuse_link(path: str | os.PathLike, where: str = "a results folder") -> Path:
    """``path``, unless it is a symbolic link (dangling or not): then :class:`LinkError`."""
    path = Path(path)
    if path.is_symlink():
        raise LinkError(path, where)
    return path


def open_nofollow(path: str | os.PathLike, flags: int, mode: int = 0o666, *,
                  folder: bool = False, where: str = "a results folder") -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)``: a file descriptor, or
    :class:`LinkError` when ``path`` -- or, with ``folder``, the folder holding it -- is a
    symbolic link.

    With ``folder`` the folder is opened first (``O_DIRECTORY | O_NOFOLLOW``) and the file
    relative to it, so a link swapped in between a check and the open is refused too.  Add
    ``O_CREAT | O_EXCL`` for a file that must be new (a temporary file).
    """
    path = Path(path)
    if not _NOFOLLOW or (folder and os.open not in os.supports_dir_fd):  # check, then open
        if folder:
            refuse_link(path.parent, where)
        refuse_link(path, where)
        return os.open(path, flags | _CLOEXEC, mode)
    parent = None
    try:
        if folder:
            try:
                parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC)
            except OSError:
                refuse_link(path.parent, where)
                raise
            return os.open(path.name, flags | _NOFOLLOW | _CLOEXEC, mode, dir_fd=parent)
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as err:
        if not isinstance(err, LinkError) and (err.errno == errno.ELOOP or path.is_symlink()):
            raise LinkError(path, where) from None
        raise
    finally:
        if parent is not None:
            os.close(parent)


def read_regular(path: str | os.PathLike, *, folder: bool = False,
                 where: str = "a results folder") -> bytes:
    """The bytes of the regular file ``path``: :class:`LinkError` for a symbolic link (at the
    file or, with ``folder``, its folder), OSError "not a regular file" for a FIFO, device or
    folder (which would block or never end), OSError as ``open`` raises it otherwise."""
    path = Path(path)
    fd = open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0), folder=folder,
                       where=where)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return f.read()


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path``: a reader sees the old file or the whole new one.

    See :func:`atomic_writer`; ``path`` must not be a symbolic link (:class:`LinkError`).
    """
    with atomic_writer(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def atomic_writer(path: Path, *, where: str = "a results folder",
                  sync: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; renamed over ``path`` when the
    ``with`` block ends without an exception, deleted otherwise.

    The temporary file sits beside ``path``, is created new (``O_CREAT | O_EXCL | O_NOFOLLOW``,
    a random name after this process: :func:`remove_orphans` clears those whose process is
    gone) and gets the permissions of a newly created file (0666 less the umask), not
    ``mkstemp``'s 0600.  A ``path`` that is a symbolic link is refused (:class:`LinkError`)
    rather than replaced: a link in a results folder was put there by someone else.
    """
    path = Path(path)
    refuse_link(path, where)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():  # os.replace would fail naming the temporary file
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file lmladder can replace; "
                                "remove or rename it", str(path))
    import tempfile  # here, not above: it costs a reader such as ``lmladder score`` 1 MiB

    try:  # mkstemp: O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, a name nobody can guess
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-",
                                   suffix=path.suffix)
    except OSError as err:  # name the file the user asked for, not the temporary one
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if sync:  # on disk before the rename (False: a reader checks the file's whole)
                os.fsync(f.fileno())
            if hasattr(os, "fchmod"):  # the descriptor, not the name: it cannot be swapped
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            else:
                os.chmod(tmp, 0o666 & ~_umask())
        refuse_link(path, where)  # rename replaces a link, never follows it; still refuse one
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the temporary files in ``folder`` left by processes that no longer run."""
    removed = []
    for tmp in Path(folder).glob(f"{TMP_PREFIX}*"):
        pid = tmp.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- outputs that never overwrite inputs ------------------------------------------------------
# Outputs that never overwrite inputs: the check every command makes before it writes a file the
# user named (``report -o``, ``report --compare … -o``, ``export-arpa -o``).
#
# :func:`check_output` refuses, in one line naming the output, what it would overwrite and what
# to do instead, an output that
#
# * is a folder, or exists and is not a regular file (a FIFO, a device such as ``/dev/null``);
# * is named like a result record or a kept failed attempt (``LABEL__…__KEY.json``,
#   ``LABEL__…__KEY.failed-STAMP.json``): a report there would be read as a record next time;
# * lies inside a saved model folder (a folder holding ``model.json``), or is that folder;
# * is an input of the same command: a file it reads (an ARPA file, a corpus file), a file inside a
#   saved model folder it loads, or a file of a results folder it reads (a record, a kept attempt,
#   anything under a ``*.model`` folder or a hidden folder such as ``.locks``, the
#   ``time-to-ppl.json`` the report shows).
#
# Paths are compared resolved (symlinks followed, so a link to an input is the input) and, for files
# that exist, by device and inode (so a hard link to an input is the input too).  Files beside an
# input that the command does not read (``report.html``, ``compare.html`` in a results folder) may
# be written.

RESULTS_INPUTS = ("time-to-ppl.json",)  # files of a results folder besides records that are read


class OutputError(ValueError):
    """An output that would overwrite an input; the message is one line."""


def _record_like(name: str) -> bool:
    """Named like a record or a kept failed attempt: ``LABEL__…__KEY.json``,
    ``LABEL__…__KEY.failed-STAMP.json`` (``KEY``: 16 hex digits)."""
    if name.startswith(".") or not name.endswith(".json") or "__" not in name:
        return False
    tail = name.rsplit("__", 1)[1]
    key, rest = tail[:16], tail[16:]
    return len(key) == 16 and all(c in "0123456789abcdef" for c in key) and \
        rest.startswith(".")


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat() if path.is_file() else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st else None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _model_folder(path: Path) -> Path | None:
    """The saved model folder (holding ``model.json``) that folder ``path`` is or lies in."""
    for folder in (path, *path.parents):
        if (folder / "model.json").is_file():
            return folder
    return None


def check_output(output: str | os.PathLike, *, files: list[tuple[str, Path]] | tuple = (),
                 model_folders: list[Path] | tuple = (), results: list[Path] | tuple = (),
                 flag: str = "-o", error: type[Exception] = OutputError,
                 example: str = "report.html") -> Path:
    """Refuse ``output`` if writing it could overwrite an input (module docstring); returns it.

    ``files``: (what it is, path) of every file the command reads, e.g. ``("ARPA file", p)``;
    ``model_folders``: saved model folders it loads; ``results``: results folders it reads.
    Raises ``error`` (one line naming ``flag``, the output and the input it would overwrite);
    ``example`` is the file name suggested where the output is a folder.
    """
    given = Path(output)
    out = Path(os.path.abspath(given)).resolve()  # symlinks followed, also a dangling one's
    say = f"{flag} {given}"
    if out != given.absolute():
        say += f" (resolves to {out})"
    elsewhere = "write it to another file"

    def refuse(what: str, instead: str = elsewhere) -> Exception:
        return error(f"{say}: {what}; {instead}")

    me = _file_identity(out)
    for what, path in files:
        path = Path(path)
        if out == Path(os.path.abspath(path)).resolve() or (me and me == _file_identity(path)):
            raise refuse(f"would overwrite {path}, the {what}, which this command reads")
    for folder in model_folders:
        folder = Path(os.path.abspath(folder)).resolve()
        if _inside(out, folder) or (me and any(me == _file_identity(p) for p in folder.rglob("*"))):
            raise refuse(f"would overwrite a file of the saved model folder {folder}, which "
                         "this command reads",
                         f"write it outside the folder, e.g. {folder.parent / example}")
    if out.is_dir():
        raise refuse("is a folder", f"give a file name, e.g. {given / example}")
    if out.exists() and not out.is_file():
        raise refuse("exists and is not a regular file (a FIFO, a device, ...)")
    if _record_like(out.name) or _record_like(given.name):
        raise refuse(("would overwrite a result record" if out.exists() else
                      "is named like a result record (LABEL__...__KEY.json), which a report "
                      "would read as one"), f"choose a name without __KEY.json, e.g. {example}")
    if (folder := _model_folder(out.parent)) is not None:
        raise refuse(f"lies inside the saved model folder {folder} (its files are the model)",
                     "write it outside that folder")
    for folder in results:
        _check_results(out, me, Path(folder), refuse)
    return given


def _check_results(out: Path, me: tuple[int, int] | None, folder: Path, refuse) -> None:
    """Refuse ``out`` where it is (or is a hard link to) a file that reading results ``folder``
    reads: records and kept attempts, files under a ``*.model`` or hidden folder, the
    time-to-ppl benchmark."""
    root = Path(os.path.abspath(folder)).resolve()
    if _inside(out, root):
        parts = out.relative_to(root).parts
        inner = [p for p in parts[:-1] if p.startswith(".") or p.endswith(".model")]
        if inner or (parts and (parts[-1].startswith(".") or parts[-1] in RESULTS_INPUTS)):
            what = f"lies in {inner[0]}/, lmladder's own files" if inner else \
                f"would overwrite {parts[-1]}"
            raise refuse(f"{what} of the results folder {folder}, which this command reads",
                         f"write it elsewhere, e.g. {root / 'report.html'}")
    if me is None or not root.is_dir():
        return
    for path in root.rglob("*.json"):
        if (_record_like(path.name) or path.name in RESULTS_INPUTS) and \
                me == _file_identity(path):
            raise refuse(f"is a hard link to {path} of the results folder {folder}, which this "
                         "command reads")
