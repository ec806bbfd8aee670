"""Where the number-pinning tests run: the CPU always, CUDA where there is one.

``pytest -m cuda`` runs only the CUDA variants; on a machine without CUDA they are skipped.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
CUDA = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")]
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@contextmanager
def exact_kernels(device: str) -> Iterator[None]:
    """On CUDA, the arithmetic a comparison at float32 tolerances assumes: cuDNN's deterministic
    algorithms (no autotuning, no atomics in the convolutions' backward) and no TF32, which rounds
    convolution and matmul inputs to 10 mantissa bits, enough to move a membrane across the threshold.
    On the CPU it changes nothing."""
    if torch.device(device).type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = True, False, False, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved
