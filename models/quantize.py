"""Dynamic int8 quantisation of a SentenceTransformer's linear layers.

Dynamic quantisation stores the weights of every ``torch.nn.Linear`` as int8 and
quantises activations on the fly, per batch. On a CPU the encoder of m3e-small is
dominated by those matrix products, so int8 is where the speed is; LayerNorm,
embeddings and pooling stay in fp32 and keep the embeddings close to the fp32 ones
(measured cosine and the CCF dev quality bound are in ``bench/RESULTS.md``).

torch 2.13 still ships ``torch.ao.quantization.quantize_dynamic`` (eager mode). It
emits a DeprecationWarning that points at torchao's ``quantize_``; torchao is not a
dependency of this project, so we keep the torch API and silence only that warning.
"""

from __future__ import annotations

import copy
import warnings
from typing import TypeVar

import torch

QUANTIZATION_TAG = "int8-dynamic"
"""Goes into the encoder fingerprint, so an index built with int8 embeddings is
never silently served with fp32 query embeddings (or the reverse)."""

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def quantize_dynamic_int8(
    model: ModuleT, *, inplace: bool = False, per_channel: bool = False
) -> ModuleT:
    """Return ``model`` with every ``torch.nn.Linear`` replaced by a dynamic int8 one.

    Works on any ``torch.nn.Module``, including a ``SentenceTransformer`` (whose
    ``encode`` keeps working unchanged on the returned object).

    Args:
        model: The float model. It is put in eval mode: dynamic quantisation is for
            inference only.
        inplace: Mutate ``model`` instead of quantising a deep copy.
        per_channel: One int8 scale per output row of each weight matrix instead of
            one per matrix. Its embeddings are closer to fp32 (cosine 0.991 vs 0.986)
            but on CCF dev it ranked no better, so the default stays per-tensor
            (see bench/RESULTS.md).

    Returns:
        The quantised model (``model`` itself when ``inplace`` is true).

    Raises:
        ValueError: If ``model`` has no ``torch.nn.Linear`` layer to quantise, which
            would make the result silently identical to the input.
    """
    if count_linear_layers(model) == 0:
        raise ValueError(
            f"{type(model).__name__} has no torch.nn.Linear layer; dynamic int8 "
            "quantisation would change nothing"
        )
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    # fbgemm/x86 kernels are the fast ones on x86 CPUs; qnnpack is for ARM.
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        if per_channel:
            quantize_dynamic(target, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
        else:
            quantize_dynamic(target, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return target


def count_linear_layers(model: torch.nn.Module) -> int:
    """Number of float ``torch.nn.Linear`` modules in ``model`` (0 once quantised)."""
    return sum(1 for module in model.modules() if type(module) is torch.nn.Linear)


def is_quantized(model: torch.nn.Module) -> bool:
    """True when ``model`` contains at least one dynamic int8 linear layer."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return any(isinstance(module, DynamicQuantizedLinear) for module in model.modules())
