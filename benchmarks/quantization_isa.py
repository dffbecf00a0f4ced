"""ONNX Runtime dynamic int8 settings on this CPU: weight type, per-channel scales and
``reduce_range``, against the float graph (issue 25).

    python benchmarks/quantization_isa.py            # the packaged all-minilm-l6-v2
    python benchmarks/quantization_isa.py --model path/to/folder --rounds 7

The model is exported twice through the same path as ``quantize.ort-dynamic`` (TorchScript
export, O2 fusion, symbolic shape inference): with a sequence-classification head
(``num_labels=2``, drawn after ``torch.manual_seed(0)``; output ``logits``) and headless
(``sentence-embedding``; output ``last_hidden_state``). Each float graph is quantised with
``quantize_dynamic`` in every setting below (symmetric weights, the strategies' options) and
run on 8 rows of 128 real tokens (``torch_int8_paths.build_inputs``).

Columns:

- ``max |Δ|`` / ``rel.``: the largest absolute output difference to the float graph, and that
  divided by the largest absolute float output (the saturation check's measure).
- ``saturated``: the largest difference between the int8 graph run as usual and run with
  ONNX Runtime's ``session.x64quantprecision`` option, which on x86 CPUs without VNNI swaps
  the u8s8 kernels of weights outside [-64, 63] for u8u8 ones that cannot saturate: the part
  of the error that saturated 16-bit sums cause (0 on VNNI, AMX and ARM CPUs).
- ``p50 ms``: batch 1, 128 tokens, 1 thread, the graphs taking turns round by round.

The top of the output names the CPU and its instruction sets, then runs one ``MatMulInteger``
of 64 activations of 255 with weights of 127, 64 (s8) and 255 (u8) and prints what ONNX
Runtime returns against the exact sum: the kernel-level view of saturation on this CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from torch_int8_paths import build_inputs, cpu_description  # noqa: E402

#: (label, weight type, per_channel, reduce_range)
SETTINGS = (
    ("u8u8 per-tensor 8-bit (old default, avx2 preset)", "QUInt8", False, False),
    ("u8u8 per-channel 8-bit (old avx2 + per_channel)", "QUInt8", True, False),
    ("u8u8 per-channel 7-bit", "QUInt8", True, True),
    ("u8s8 per-tensor 8-bit", "QInt8", False, False),
    ("u8s8 per-tensor 7-bit", "QInt8", False, True),
    ("u8s8 per-channel 8-bit (auto on VNNI/ARM)", "QInt8", True, False),
    ("u8s8 per-channel 7-bit (auto on AVX2/AVX-512)", "QInt8", True, True),
)


def packaged_minilm() -> Path:
    """The packaged all-minilm-l6-v2 folder (resolved offline)."""
    import compressor.sources.packaged as packaged
    from compressor.plugins import get_plugins
    from compressor.sources.models import resolve_model

    return Path(resolve_model(
        "all-minilm-l6-v2", "auto", sources=get_plugins().model_sources, cache_dir=packaged.cache_root()
    ))


def float_graph(model_dir: Path, task: str, work: Path) -> Path:
    """The O2 float graph of ``model_dir`` with ``task``'s head, shape-inferred as the
    strategy prepares it."""
    import json

    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from compressor.onnx_export import export_onnx, optimize_onnx
    from compressor_quantization.ort import prepare_for_quantization

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    folder = work / task / "pytorch"
    if task == "text-classification":
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    else:
        model = AutoModel.from_pretrained(model_dir)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    exported = export_onnx(folder, work / task / "exported", task_type=task)
    print(f"{task}: exported with {exported.exporter}" + (f" ({'; '.join(exported.notes)})" if exported.notes else ""))
    optimized = work / task / "exported" / "optimized.onnx"
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    optimize_onnx(exported.onnx_file, optimized, model_type=model_type, level="O2",
                  num_heads=exported.num_heads, hidden_size=exported.attention_hidden_size)
    return prepare_for_quantization(optimized, work / task / "exported", work / task / "prepared")


def quantized_graphs(prepared: Path, out: Path) -> dict[str, Path]:
    """``prepared`` quantised in every :data:`SETTINGS`."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from compressor_quantization.ort import default_operators

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" notes
    graphs = {}
    for label, weight, per_channel, reduce_range in SETTINGS:
        target = out / f"{weight}-{per_channel}-{reduce_range}.onnx"
        quantize_dynamic(prepared, target, op_types_to_quantize=default_operators(False), per_channel=per_channel,
                         reduce_range=reduce_range, weight_type=getattr(QuantType, weight),
                         extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        graphs[label] = target
    return graphs


def make_session(graph: Path, *, precise: bool = False) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if precise:
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def run(sess: Any, inputs: dict[str, Any]) -> Any:
    import numpy as np

    return np.asarray(sess.run(None, {i.name: inputs[i.name] for i in sess.get_inputs()})[0], dtype=np.float64)


def deviations(prepared: Path, graphs: dict[str, Path], inputs: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """label -> (max |Δ|, relative, saturated part) against the float graph."""
    import numpy as np

    ref = run(make_session(prepared), inputs)
    scale = float(np.abs(ref).max())
    rows = {}
    for label, graph in graphs.items():
        got = run(make_session(graph), inputs)
        precise = run(make_session(graph, precise=True), inputs)
        diff = float(np.abs(got - ref).max())
        rows[label] = (diff, diff / scale, float(np.abs(got - precise).max()))
    return rows


def latencies(graphs: dict[str, Path], inputs: dict[str, Any], *, rounds: int, calls: int) -> dict[str, float]:
    """label -> median ms per call at batch 1, the graphs taking turns each round."""
    sessions = {label: make_session(g) for label, g in graphs.items()}
    one = {k: v[:1] for k, v in inputs.items()}
    samples: dict[str, list[float]] = {label: [] for label in sessions}
    for label, sess in sessions.items():  # warm-up
        for _ in range(3):
            run(sess, one)
    labels = list(sessions)
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            for _ in range(calls):
                t0 = time.perf_counter()
                run(sessions[label], one)
                samples[label].append(1000 * (time.perf_counter() - t0))
    return {label: statistics.median(v) for label, v in samples.items()}


def kernel_check() -> list[str]:
    """One ``MatMulInteger`` (1 x 64 activations of 255 times a constant 64 x 8 weight) per
    weight value: what this CPU's kernels return against the exact sum."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    lines = []
    for dtype, value in ((np.int8, 127), (np.int8, 64), (np.uint8, 255)):
        a = helper.make_tensor_value_info("A", TensorProto.UINT8, [1, 64])
        y = helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 8])
        b = numpy_helper.from_array(np.full((64, 8), value, dtype=dtype), "B")
        model = helper.make_model(
            helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "g", [a], [y], [b]),
            opset_imports=[helper.make_opsetid("", 13)],
        )
        model.ir_version = 8
        for precise in (False, True):
            import onnxruntime as ort

            options = ort.SessionOptions()
            if precise:
                options.add_session_config_entry("session.x64quantprecision", "1")
            sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            got = int(sess.run(None, {"A": np.full((1, 64), 255, dtype=np.uint8)})[0][0, 0])
            lines.append(
                f"u8 255 x {np.dtype(dtype).name} {value}, 64 terms{' (x64quantprecision)' if precise else ''}: "
                f"{got} (exact {64 * 255 * value})"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: packaged MiniLM-L6)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)

    import onnxruntime
    from transformers import AutoTokenizer

    model_dir = args.model or packaged_minilm()
    name, flags = cpu_description()
    print(f"CPU: {name}; flags: " + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in flags.items()))
    print(f"onnxruntime {onnxruntime.__version__}; load average {os.getloadavg()[0]:.2f}; model {model_dir}")
    print(*kernel_check(), sep="\n")
    tok = AutoTokenizer.from_pretrained(model_dir)
    inputs = {k: v.numpy() for k, v in build_inputs(tok, batch=8, length=128).items()}
    with tempfile.TemporaryDirectory(prefix="quantization-isa-") as tmp:
        work = Path(tmp)
        for task, output in (("text-classification", "logits"), ("sentence-embedding", "last_hidden_state")):
            prepared = float_graph(model_dir, task, work)
            graphs = quantized_graphs(prepared, work / task)
            rows = deviations(prepared, graphs, inputs)
            times = latencies({"fp32": prepared, **graphs}, inputs, rounds=args.rounds, calls=args.calls) \
                if task == "text-classification" else {}
            print(f"\n{task} ({output}), 8 x 128 tokens:\n")
            print("| setting | max abs diff | rel. | saturated | p50 ms |")
            print("| --- | --- | --- | --- | --- |")
            if times:
                print(f"| fp32 | 0 | 0 | 0 | {times['fp32']:.1f} |")
            for label, (diff, rel, sat) in rows.items():
                p50 = f"{times[label]:.1f}" if times else "-"
                print(f"| {label} | {diff:.4f} | {rel:.3f} | {sat:.4f} | {p50} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
