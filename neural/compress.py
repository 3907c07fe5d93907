"""Post-training compression of a trained network: magnitude pruning and int8 dynamic quantization.

:class:`~lmladder.neural.torchlm.TorchLM` applies both at the end of ``fit`` when its config asks
(``sparsity``, then ``quantize``), so every torch family has them; this module holds the
algorithms and the checkpoint format of a quantized network.

Magnitude pruning
-----------------
``sparsity = s`` zeroes the ``round(s * N)`` weights of smallest absolute value among the ``N``
weights of every Linear and Embedding matrix and every recurrent weight matrix (``weight_ih_l*``,
``weight_hh_l*``), ranked together across layers ("class-blind" pruning, See et al. 2016,
"Compression of Neural Machine Translation Models via Pruning"), with
``torch.nn.utils.prune.global_unstructured`` and ``L1Unstructured``; the masks are then made
permanent (``prune.remove``), so the network is an ordinary dense one with exact zeros.  Biases and
normalisation weights are kept.  A tied matrix (embedding = output layer) is one tensor and is
counted once.  There is no fine-tuning after pruning.

int8 dynamic quantization
-------------------------
``quantize = "int8"`` runs ``torch.ao.quantization.quantize_dynamic``: Linear, LSTM and GRU
layers get int8 weights with one scale per output row (``per_channel_dynamic_qconfig``; their
inputs are quantized on the fly, per batch, and biases stay float), and Embedding layers get
8-bit rows with a float scale and offset each (``float_qparams_weight_only_qconfig``).  Elman RNN
layers (``nn.RNN``) and other layers (LayerNorm, ``transformers``' ``Conv1D`` inside ``hf-gpt2``'s
blocks) stay float.  A tied embedding and output layer become two 8-bit copies.  The kernels
(fbgemm/onednn) are CPU-only, so a quantized model runs on the CPU.

torch marks ``torch.ao.quantization`` deprecated in favour of ``torchao``'s ``quantize_``, a
separate package whose int8 configs cover Linear layers only (no LSTM/GRU); torch 2.13 still
ships and runs the eager API used here, and its deprecation warnings are silenced where it is
called (they would repeat on every fit and load).

Checkpoint format
-----------------
:func:`module_arrays` writes the weights of any network, quantized or not, as named arrays: each
float tensor of the ``state_dict`` as ``param/<name>`` (the format of an uncompressed network),
and for each quantized layer its biases as ``param/<layer>.<bias name>`` and each int8 weight as
its integer values ``qweight/<layer>.<weight name>`` (int8, or uint8 for embeddings) with
``qscale/...`` and ``qzero/...`` (one per row).  :func:`load_module_arrays` puts them back into a
network of the same structure bit for bit.  A pruned network is saved dense (its zeros take as
much room as other weights).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn
from torch.ao.quantization import (
    float_qparams_weight_only_qconfig,
    per_channel_dynamic_qconfig,
    quantize_dynamic,
)
from torch.nn.utils import prune

QCONFIGS = {nn.Linear: per_channel_dynamic_qconfig, nn.LSTM: per_channel_dynamic_qconfig,
            nn.GRU: per_channel_dynamic_qconfig, nn.Embedding: float_qparams_weight_only_qconfig}
QUANTIZED_LAYERS = (nnqd.Linear, nnqd.LSTM, nnqd.GRU, nnq.Embedding)
WEIGHT_PREFIXES = ("param/", "qweight/", "qscale/", "qzero/")  # the keys module_arrays writes
_PER_TENSOR = (torch.per_tensor_affine, torch.per_tensor_symmetric)


@dataclass(frozen=True)
class Compression:
    """What post-training compression did to a network: ``note`` (one line, for the fit notes
    and the model card) and ``parameters``, the network's parameter count before compression
    (what ``num_parameters`` keeps reporting: quantized layers hide their weights from
    ``Module.parameters()``)."""

    note: str
    parameters: int

    def arrays(self) -> dict[str, np.ndarray]:
        return {"compression/note": np.array(self.note),
                "compression/parameters": np.array(self.parameters)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Compression | None:
        """The record :meth:`arrays` wrote, or ``None`` for an uncompressed network."""
        if "compression/note" not in arrays:
            return None
        return cls(str(arrays["compression/note"]), int(arrays["compression/parameters"]))


def compress(module: nn.Module, *, sparsity: float, quantize: str
             ) -> tuple[nn.Module, Compression]:
    """Prune (``sparsity`` > 0), then quantize (``quantize == "int8"``) the CPU network
    ``module``; returns the compressed network (``module`` itself is changed) and the record."""
    parameters = sum(p.numel() for p in module.parameters())
    done = []
    if sparsity > 0:
        zeroed, total = prune_magnitude(module, sparsity)
        done.append(f"{zeroed:,} of {total:,} weights ({zeroed / total:.1%}) pruned by global "
                    "magnitude")
    if quantize == "int8":
        module = quantize_int8(module)
        kinds = sorted({type(m).__name__ for m in quantized_layers(module).values()})
        done.append(f"int8 dynamic quantization of {len(quantized_layers(module))} layers "
                    f"({', '.join(kinds)})")
    return module, Compression("; ".join(done) or "none", parameters)


# ----------------------------------------------------------------------------------------------
# Pruning


def prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(layer, name)`` of every weight matrix magnitude pruning ranks: Linear and Embedding
    weights and the recurrent layers' ``weight_ih_l*``/``weight_hh_l*``, each tensor once."""
    out, seen = [], set()
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Embedding)):
            names = ["weight"]
        elif isinstance(layer, nn.RNNBase):
            names = [n for n in layer._flat_weights_names if n.startswith("weight_")]
        else:
            continue
        for name in names:
            tensor = getattr(layer, name)
            if id(tensor) not in seen:  # a tied weight is pruned (and counted) once
                seen.add(id(tensor))
                out.append((layer, name))
    return out


def prune_magnitude(module: nn.Module, sparsity: float) -> tuple[int, int]:
    """Zero the ``sparsity`` share of :func:`prunable_weights` with the smallest magnitudes,
    ranked across all of them, permanently.  Returns ``(weights now zero, weights ranked)``."""
    targets = prunable_weights(module)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    for layer, name in targets:
        # remove() writes the masked values into the original Parameter object, so a weight
        # shared with another layer (tying) stays shared, and RNNs keep their flat weights.
        prune.remove(layer, name)
    zeros = sum(int((getattr(layer, name) == 0).sum()) for layer, name in targets)
    return zeros, sum(getattr(layer, name).numel() for layer, name in targets)


# ----------------------------------------------------------------------------------------------
# Quantization


@contextmanager
def _quiet_quantization():
    """Silence torch's warnings that ``torch.ao.quantization`` and quantized tensors move to
    torchao (see the module docs); every other warning passes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, ")
        yield


def quantize_int8(module: nn.Module) -> nn.Module:
    """``module`` (on the CPU) with its Linear/LSTM/GRU/Embedding layers quantized to int8 in
    place (see the module docs); returned in eval mode."""
    with _quiet_quantization():
        return quantize_dynamic(module.eval(), QCONFIGS, inplace=True)


def quantized_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The quantized layers of ``module`` by their qualified names."""
    return {name: m for name, m in module.named_modules() if isinstance(m, QUANTIZED_LAYERS)}


def _layer_tensors(layer: nn.Module) -> dict[str, torch.Tensor]:
    """A quantized layer's weights (quantized tensors) and biases (float), by the names the
    float layer gives them (``weight``, ``bias``, ``weight_ih_l0``, ...)."""
    if isinstance(layer, nnq.Embedding):
        return {"weight": layer.weight()}
    if isinstance(layer, nnqd.Linear):
        bias = layer.bias()
        return {"weight": layer.weight()} | ({} if bias is None else {"bias": bias})
    return {**layer.get_weight(), **layer.get_bias()}  # LSTM/GRU: weight_ih_l0, bias_ih_l0, ...


def _set_layer_tensors(layer: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    with _quiet_quantization():
        if isinstance(layer, nnq.Embedding):
            layer.set_weight(tensors["weight"])
        elif isinstance(layer, nnqd.Linear):
            layer.set_weight_bias(tensors["weight"], tensors.get("bias"))
        else:
            layer.set_weight_bias(tensors)


def _quantized_from(like: torch.Tensor, values: np.ndarray, scale: np.ndarray,
                    zero: np.ndarray) -> torch.Tensor:
    """The quantized tensor with integer ``values`` and ``like``'s scheme, exactly."""
    ints = torch.from_numpy(np.array(values))
    if like.qscheme() in _PER_TENSOR:
        return torch._make_per_tensor_quantized_tensor(ints, float(scale), int(zero))
    return torch._make_per_channel_quantized_tensor(
        ints, torch.from_numpy(np.array(scale)), torch.from_numpy(np.array(zero)),
        like.q_per_channel_axis())


# ----------------------------------------------------------------------------------------------
# Checkpoint arrays


def module_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """The weights of ``module``, quantized layers included, as named arrays (the format in the
    module docs); a network without quantized layers gives its ``state_dict`` as ``param/``."""
    layers = quantized_layers(module)
    out = {f"param/{key}": t.detach().cpu().numpy() for key, t in module.state_dict().items()
           if isinstance(t, torch.Tensor) and _owner(key, layers) is None}
    for name, layer in layers.items():
        for part, t in _layer_tensors(layer).items():
            key = f"{name}.{part}"
            if not t.is_quantized:
                out[f"param/{key}"] = t.detach().numpy()
                continue
            out[f"qweight/{key}"] = t.int_repr().numpy()
            if t.qscheme() in _PER_TENSOR:
                out[f"qscale/{key}"] = np.array(t.q_scale())
                out[f"qzero/{key}"] = np.array(t.q_zero_point())
            else:
                out[f"qscale/{key}"] = t.q_per_channel_scales().numpy()
                out[f"qzero/{key}"] = t.q_per_channel_zero_points().numpy()
    return out


def load_module_arrays(module: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Put :func:`module_arrays` output back into ``module``, a network of the same structure
    (for a quantized one: built, then quantized by :func:`quantize_int8`).  The caller checks
    first that the names and shapes are those of ``module_arrays(module)``."""
    floats = {k[6:]: torch.from_numpy(np.array(a)) for k, a in arrays.items()
              if k.startswith("param/")}
    layers = quantized_layers(module)
    for name, layer in layers.items():
        tensors = {}
        for part, like in _layer_tensors(layer).items():
            key = f"{name}.{part}"
            if like.is_quantized:
                tensors[part] = _quantized_from(like, arrays[f"qweight/{key}"],
                                                arrays[f"qscale/{key}"], arrays[f"qzero/{key}"])
            else:
                tensors[part] = floats.pop(key)
        _set_layer_tensors(layer, tensors)
    # What load_state_dict does, for the float tensors only: it would also ask the quantized
    # layers for their packed entries, which are set above from the int8 arrays.
    targets = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for key, t in floats.items():
            targets[key].copy_(t)


def _owner(key: str, layers: Mapping[str, nn.Module]) -> str | None:
    """The quantized layer a ``state_dict`` key belongs to, if any."""
    return next((name for name in layers if key.startswith(f"{name}.")), None)


# ----------------------------------------------------------------------------------------------
# The model card


def layer_table(module: nn.Module) -> dict:
    """An ``inspect`` table: one row per weight matrix pruning or quantization touches (layer,
    type, weights, share of zeros, how it is stored)."""
    named = [(f"{name}.{part}", layer, t) for name, layer in quantized_layers(module).items()
             for part, t in _layer_tensors(layer).items() if t.is_quantized]
    qualified = {id(m): name for name, m in module.named_modules()}
    named += [(f"{qualified[id(layer)]}.{part}".lstrip("."), layer, getattr(layer, part))
              for layer, part in prunable_weights(module)]
    rows = []
    for name, layer, t in named:
        values = t.dequantize() if t.is_quantized else t
        stored = str(t.dtype).removeprefix("torch.")
        rows.append([name, type(layer).__name__, t.numel(), float((values == 0).float().mean()),
                     f"{stored} + per-row scales" if t.is_quantized else stored])
    return {"title": "Compressed weights",
            "columns": ["layer", "type", "weights", "zero share", "stored as"], "rows": rows}
