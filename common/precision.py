"""PRECISION for every benchmark: fp32, bf16 autocast, or bf16 plus Transformer Engine FP8 linears.

`Precision.autocast()` is the one context every forward pass (training and
evaluation) runs under; `fsdp_policy()` is FSDP2's matching mixed-precision
policy: with bf16, parameters are all-gathered and computed in bf16 while
gradients are reduced in fp32 (FSDP2 otherwise all-gathers fp32 weights).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    kind: str  # "fp32" | "bf16" | "fp8"
    device_type: str  # "cpu" | "cuda"
    fp8_amax_history: int = 16  # steps of amax history in TE's delayed-scaling recipe (a benchmark's setting)

    def __post_init__(self):
        if self.kind not in ("fp32", "bf16", "fp8"):
            raise ValueError(f"PRECISION={self.kind!r} is not fp32, bf16 or fp8")

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32 if self.kind == "fp32" else torch.bfloat16

    @property
    def fp8(self) -> bool:
        return self.kind == "fp8"

    def autocast(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        if self.kind != "fp32":
            stack.enter_context(torch.autocast(self.device_type, dtype=torch.bfloat16))
        if self.fp8:
            from common.te import fp8_autocast  # Transformer Engine: imported only for FP8 runs

            stack.enter_context(fp8_autocast(self.fp8_amax_history))
        return stack

    def fsdp_policy(self):
        """FSDP2's MixedPrecisionPolicy: bf16 parameters and compute, fp32 gradient reduction (None for fp32)."""
        if self.kind == "fp32":
            return None
        from torch.distributed.fsdp import MixedPrecisionPolicy

        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
