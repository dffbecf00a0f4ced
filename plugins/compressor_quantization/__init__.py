"""Built-in quantisation strategies of compressor, registered through the ``compressor``
entry-point group like any third-party plugin:

- ``quantize.dynamic-int8``: PyTorch dynamic int8 of Linear layers (format
  ``pytorch-dynamic-int8``, with its own evaluation backend);
- ``quantize.ort-dynamic``: ONNX Runtime dynamic int8 (``onnxruntime.quantization``), preset chosen
  from the CPU's features;
- ``quantize.ort-static``: ONNX Runtime static int8 calibrated on training examples;
- ``quantize.qat``: quantization-aware training distilled from the fp32 input, exported as a
  QDQ int8 ONNX graph;
- ``quantize.half``: fp16 (CUDA) or bf16 (CPUs with AMX / AVX-512 BF16) PyTorch weights
  (format ``pytorch-half``, with its own evaluation backend).
"""

from .plugin import (
    DynamicInt8,
    DynamicInt8Config,
    Half,
    HalfConfig,
    OrtDynamic,
    OrtDynamicConfig,
    OrtStatic,
    OrtStaticConfig,
    QATConfig,
    QuantizationAwareTraining,
)

__all__ = [
    "DynamicInt8",
    "DynamicInt8Config",
    "Half",
    "HalfConfig",
    "OrtDynamic",
    "OrtDynamicConfig",
    "OrtStatic",
    "OrtStaticConfig",
    "QATConfig",
    "QuantizationAwareTraining",
]
