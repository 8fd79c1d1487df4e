"""torch's own FLOP counter (``torch.utils.flop_counter.FlopCounterMode``), set up once for jestbench.

It counts what runs, op by op, forward or backward, which fvcore (a tracer of forward graphs) cannot:
the selection's own tensor work (:func:`harness.view.select_counted`) and the backward pass of a
training step (:func:`harness.flops.training_ratio`). It counts 2 per multiply-add (jestbench's
ledger counts 1: halve it), matrix products (``mm``, ``addmm``, ``bmm``, ``baddbmm``, hence ``@``,
``matmul`` and ``einsum``, which lower to them), convolutions and attention; element-wise ops count
zero, as in fvcore's defaults. On CPU, attention runs as an op it has no formula for
(``_scaled_dot_product_flash_attention_for_cpu``, and its backward), so those get torch's own
attention formulas here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

# FlopCounterMode counts one multiply-add as this many FLOPs.
FLOPS_PER_MULTIPLY_ADD = 2


def _sdpa_cpu(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_flop_count(query, key, value))  # type: ignore[no-untyped-call]


def _sdpa_cpu_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_backward_flop_count(grad_out, query, key, value))  # type: ignore[no-untyped-call]


_CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
}


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts attention on CPU; ``get_total_flops()`` is in its
    convention (2 per multiply-add)."""
    return FlopCounterMode(display=False, custom_mapping=dict(_CPU_ATTENTION))


def multiply_adds(counter: FlopCounterMode) -> int:
    """A finished counter's total in jestbench's convention (1 FLOP = 1 multiply-add)."""
    return counter.get_total_flops() // FLOPS_PER_MULTIPLY_ADD
