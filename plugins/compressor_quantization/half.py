"""``quantize.half``: cast weights to float16 or bfloat16 and save them in that dtype."""

from __future__ import annotations

from typing import TYPE_CHECKING


from .backends import FORMAT_HALF
from .hardware import BF16_CPU_FLAGS, choose_half_dtype, cpu_flags, cpu_flags_source

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

    from .plugin import HalfConfig


def run_half(
    strategy: "Strategy", artifact: "Artifact", config: "HalfConfig", context: "StageContext"
) -> "Artifact":
    """Cast and save; see :class:`~.plugin.Half`.

    The input is loaded before the hardware is asked about, so an input that is not a model
    is reported as such on any machine.

    :raises StageError: if the artifact cannot be loaded, or for an unknown dtype.
    :raises compressor.errors.HardwareUnsupported: where the hardware supports neither dtype,
        or not the requested one.
    """
    import torch
    model = context.load_model(artifact, context.data.task.auto_class(), dtype=torch.float32).eval()
    tokenizer = context.load_tokenizer(artifact)
    flags = cpu_flags()
    cuda_bf16 = context.device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    dtype_name = choose_half_dtype(config.dtype, device=context.device, flags=flags, cuda_bf16=cuda_bf16)
    reason = (
        f"CUDA device ({context.device})"
        if context.device == "cuda"
        else f"CPU flags {sorted(set(flags) & set(BF16_CPU_FLAGS))} from {cpu_flags_source()}"
    )
    model = model.to(getattr(torch, dtype_name))
    context.save_model(model, tokenizer, format=FORMAT_HALF)
    context.logger.info("%s: weights cast to %s (%s)", context.stage_name, dtype_name, reason)
    return context.new_artifact(
        artifact, strategy.name, config, format=FORMAT_HALF, extra={"dtype": dtype_name, "reason": reason}
    )
