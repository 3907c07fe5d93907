"""Older result records brought forward to :data:`lmladder.record.API_VERSION`.

Each step adds what its schema version introduced, with the value an older lmladder meant::

    version 1 ──▶ 2   cell.threads = None (not recorded)
    version 2 ──▶ 3   tasks = {}, cell.tasks = [], cell.fraction = 1.0
    version 3 ──▶ 4   model.family where missing (the family of the recorded class, read only for
                      lmladder's own classes); each task result's metric specs (direction and
                      chance), from the task registry, so a report never imports a task;
                      protocol.example, the worked example of the scoring protocol
                      (:func:`lmladder.protocol_example.worked_example`), so a report never scores

Only the harness runs this (reading a results folder); a report receives records already
migrated and checked by :meth:`lmladder.record.Record.from_json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmladder.record import API_VERSION, RecordError


def migrate(record: dict, where: str | Path = "<record>") -> dict:
    """``record`` (a JSON object) at :data:`API_VERSION`; a new dict where anything changed.
    Unknown or newer versions are refused with :class:`RecordError` naming ``where``."""
    version = record.get("api_version")
    if version == 1:
        record = {**record, "api_version": 2, "cell": {**_section(record, "cell"),
                                                         "threads": None}}
        version = 2
    if version == 2:
        record = {**record, "api_version": 3, "tasks": {},
                  "cell": {**_section(record, "cell"), "tasks": [], "fraction": 1.0}}
        version = 3
    if version == 3:
        record = {**record, "api_version": 4, "tasks": _with_specs(record.get("tasks"))}
        model = record.get("model")
        if isinstance(model, dict) and not model.get("family"):
            record["model"] = {**model, "family": _family_of_class(model.get("class"))}
        record = _with_example(record)
        version = 4
    if version != API_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > API_VERSION
        raise RecordError(
            f"{where}: result schema version {version!r} "
            + ("is newer than this lmladder reads; upgrade lmladder"
               if newer else "is not one this lmladder reads")
            + f" (it reads versions 1 to {API_VERSION})"
        )
    return record


def _section(record: dict, name: str) -> dict:
    value = record.get(name)
    return value if isinstance(value, dict) else {}


def _with_specs(tasks: Any) -> Any:
    """Version 3 task results with the metric specs of their tasks (none for a task this
    lmladder does not know)."""
    if not isinstance(tasks, dict) or not tasks:
        return tasks
    from lmladder import registry
    from lmladder import tasks as task_registry

    out = {}
    for name, result in tasks.items():
        if isinstance(result, dict) and "metrics" not in result:
            try:
                specs = [m.to_json() for m in task_registry.task_class(name).metrics]
            except registry.UnknownNameError:
                specs = []
            result = {**result, "metrics": specs}
        out[name] = result
    return out


def _with_example(record: dict) -> dict:
    """``record`` with ``protocol.example`` where it describes its dataset and protocol."""
    dataset, protocol = record.get("dataset"), record.get("protocol")
    if not isinstance(dataset, dict) or not isinstance(protocol, dict) or "example" in protocol:
        return record
    from lmladder.protocol_example import worked_example

    def text(key: str) -> str | None:
        return dataset[key] if isinstance(dataset.get(key), str) else None

    example = worked_example(text("level"), text("boundary") or "<eos>", text("unk"))
    return {**record, "protocol": {**protocol, "example": example}}


def _family_of_class(target: Any) -> str:
    """The ``family`` of a recorded model class, read only for lmladder's own classes (an old
    record never makes lmladder import other code); "other" where it cannot be found."""
    target = str(target or "")
    if target.startswith("lmladder."):
        from lmladder import registry

        try:
            return str(getattr(registry.import_target(target), "family", "other"))
        except Exception:  # noqa: BLE001 -- a class renamed or removed since the record was written
            pass
    return "other"
