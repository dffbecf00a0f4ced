"""ONNX Runtime int8 latency on full-length versus padded inputs, with raw sessions.

    python benchmarks/ort_padding.py runs/quickstart/artifacts/01-teacher [--fused DIR]

Exports the fine-tuned PyTorch classifier to ONNX with optimum, quantises it to dynamic int8
(avx512_vnni preset, no graph fusion), and times ``InferenceSession.run`` back to back at
batch 1 and ``--length`` tokens, on an input whose positions are all real (attention mask of
ones) and on a short sentence padded to the same length. ``--fused DIR`` adds an ONNX model
made by ``quantize.ort-dynamic`` (O2 fusion). Prints median milliseconds per call.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def median_ms(session, feeds, calls: int) -> float:
    import numpy as np

    for _ in range(30):
        session.run(None, feeds)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="fine-tuned PyTorch sequence classifier folder")
    ap.add_argument("--fused", type=Path, help="folder with a quantize.ort-dynamic model.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from tabulate import tabulate
    from transformers import AutoTokenizer

    out = Path(tempfile.mkdtemp(prefix="ort-padding-"))
    ORTModelForSequenceClassification.from_pretrained(args.model, export=True).save_pretrained(out / "fp32")
    ORTQuantizer.from_pretrained(out / "fp32").quantize(
        save_dir=out / "int8", quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
    )
    graphs = {"fp32, no fusion": out / "fp32" / "model.onnx", "int8, no fusion": out / "int8" / "model_quantized.onnx"}
    if args.fused:
        graphs["int8, O2 fusion (quantize.ort-dynamic)"] = next(args.fused.glob("*.onnx"))
    padded = AutoTokenizer.from_pretrained(args.model)(
        ["a movie that is good"], padding="max_length", max_length=args.length, return_tensors="np"
    )
    rows = []
    for name, path in graphs.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        full = {n: np.ones((1, args.length), dtype=np.int64) for n in names}
        if "token_type_ids" in full:
            full["token_type_ids"][:] = 0
        pad = {n: padded[n].astype(np.int64) for n in names}
        rows.append([name, median_ms(session, full, args.calls), median_ms(session, pad, args.calls)])
        del session
    real = int(padded["attention_mask"].sum())
    print(tabulate(rows, headers=["graph", f"all {args.length} positions real (ms)", f"{real} real tokens, padded (ms)"], floatfmt=".2f"))


if __name__ == "__main__":
    main()
