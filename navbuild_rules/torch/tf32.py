"""TensorFloat-32 in the torch-family builds and runners: off for every precision but ``tf32``.

On an Ampere-or-newer GPU PyTorch lets cuDNN run float32 convolutions in TF32 by default
(``torch.backends.cudnn.allow_tf32``), operands rounded to a 10-bit mantissa: a convolutional fp32
model then differs from its CPU reference by about 1e-3 and fails fp32 tolerances. navbuild sets
the switches for each target in the process that builds or runs it, after the model's own code has
loaded (which may set them too): cuDNN's and cuBLAS's TF32 flags and the float32 matmul precision,
``"highest"`` (TF32 off) for fp32 and the reduced precisions, ``"high"`` (TF32 on) for ``tf32``.
torch.compile and AOTInductor read them when they compile, the eager kernels when they run.

The legacy switches are used rather than torch 2.9's ``fp32_precision`` attributes: torch refuses
to read one API after the other was written, and its own inductor reads both, legacy ones among
them. On the CPU there is no TF32; the float32 matmul precision is still set to "highest", so that
no model code leaves oneDNN free to compute float32 matmuls in bfloat16.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from navbuild.lazy import lazy_import
from navbuild.rule import tf32_enabled

torch = lazy_import("torch")

HIGHEST, HIGH = "highest", "high"  # torch.set_float32_matmul_precision: float32 only, or TF32 allowed


def enabled(precision: str, device: str) -> bool:
    """Whether a target of ``precision`` on ``device`` runs with TF32 on."""
    return tf32_enabled(precision) and device == "cuda"


def apply(precision: str, device: str) -> bool:
    """TF32 on or off for a target of ``precision`` on ``device`` (process-wide); whether it is on."""
    on = enabled(precision, device)
    torch.set_float32_matmul_precision(HIGH if on else HIGHEST)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    return on


@contextlib.contextmanager
def traced_flags(precision: str, device: str) -> Iterator[None]:
    """cuDNN's switches while torch.jit traces or scripts: the graph keeps each convolution's
    ``benchmark`` and ``allow_tf32`` as constants, so they are set here, on every device, to what the
    target's runner uses (TF32 as ``apply`` says, the autotuner on for CUDA): the file's bytes then
    depend on the target alone, not on what an earlier target in the same worker set."""
    cudnn = torch.backends.cudnn
    before = (cudnn.allow_tf32, cudnn.benchmark)
    cudnn.allow_tf32, cudnn.benchmark = enabled(precision, device), device == "cuda"
    try:
        yield
    finally:
        cudnn.allow_tf32, cudnn.benchmark = before
