"""The one place that turns a requested device ("auto", "cpu", "cuda", "cuda:N", "mps") into the
device a model runs on."""

from __future__ import annotations

DEVICE_KINDS = ("cpu", "cuda", "mps")


def resolve_device(requested: str, supported: tuple[str, ...] = DEVICE_KINDS) -> str:
    """``"auto"`` picks CUDA, then MPS, then the CPU among the ``supported`` kinds that this
    machine has; any other request is returned unchanged (it is checked where it is used).
    torch is imported only when a GPU kind could be chosen."""
    if requested != "auto":
        return requested
    if "cuda" in supported or "mps" in supported:
        import torch

        if "cuda" in supported and torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if "mps" in supported and mps is not None and mps.is_available():
            return "mps"
    return "cpu"
