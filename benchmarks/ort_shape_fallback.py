"""ONNX Runtime dynamic int8 of one O2-optimised graph, prepared two ways (issue 24):
ONNX Runtime's symbolic shape inference, and the fallback ``quantize.ort-dynamic`` uses when
that fails (``compressor_quantization.ort.infer_types`` plus ``DefaultTensorType``).

    python benchmarks/ort_shape_fallback.py bert
    python benchmarks/ort_shape_fallback.py modernbert

The model is the conformance kit's tiny random one (``compressor.testing.tiny_model``, 4
layers of 4 heads, hidden 32) with its family's tokenizer; both graphs are quantised with
s8 per-channel weights (symmetric) and run on the kit's 32 test sentences. Prints, per
path, the int8 node counts, the largest |int8 - float| logit difference against the largest
|float| logit, and how often the int8 argmax agrees with the float one.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from compressor import testing
    from compressor.onnx_export import export_onnx, optimize_onnx
    from compressor_quantization.ort import FALLBACK_EXTRA_OPTIONS, infer_types, prepare_for_quantization

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch", choices=sorted(testing.ARCHITECTURES))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ort-shape-fallback-"))
    folder = testing.tiny_model(args.arch, tmp / "m", config={"num_hidden_layers": 4, "num_attention_heads": 4})
    exported = export_onnx(folder, tmp / "exp", task_type="text-classification")
    optimized = tmp / "exp" / "optimized.onnx"
    optimize_onnx(exported.onnx_file, optimized, model_type=args.arch, level="O2",
                  num_heads=exported.num_heads, hidden_size=exported.attention_hidden_size)
    record: dict = {}
    symbolic = prepare_for_quantization(optimized, tmp / "exp", tmp / "symbolic", record=record)
    typed, untyped = infer_types(onnx.load(str(optimized)))
    (tmp / "fallback").mkdir()
    fallback = tmp / "fallback" / "model.onnx"
    onnx.save(typed, str(fallback))
    tok = testing.tiny_tokenizer(args.arch)
    enc = tok(list(testing.tiny_task_data().split("test")["text"]), padding=True, return_tensors="np")

    def run(graph: Path) -> np.ndarray:
        sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        return sess.run(None, {k: v.astype(np.int64) for k, v in enc.items() if k in names})[0]

    ref = run(optimized)
    base = {"WeightSymmetric": True, "ActivationSymmetric": False}
    for name, source, extra, how in (
        ("symbolic", symbolic, base, record["method"]),
        ("fallback", fallback, {**base, **FALLBACK_EXTRA_OPTIONS}, f"{untyped} tensors untyped"),
    ):
        target = tmp / f"int8-{name}.onnx"
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, extra_options=extra)
        ops = collections.Counter(n.op_type for n in onnx.load(str(target)).graph.node)
        out = run(target)
        print(
            f"{name} ({how}): MatMulInteger {ops['MatMulInteger']}, QAttention {ops['QAttention']}, "
            f"float MatMul {ops['MatMul']}; max |int8 - float| {np.abs(out - ref).max():.4f} of "
            f"max |float| {np.abs(ref).max():.3f}; argmax agreement {(out.argmax(1) == ref.argmax(1)).mean():.3f}"
        )


if __name__ == "__main__":
    main()
