"""Old ONNX stack (transformers 4.57 + optimum-onnx) against the new one (transformers 5 +
torch.onnx + ONNX Runtime's own optimizer and quantizer), on the same fine-tuned encoder, timed
in one run on one machine.

    # 1. graphs of the old stack, in an environment with compressor 0.1's pins
    #    (git worktree of fab2c5e; pip install -e it in a fresh venv with torch==2.13.0)
    /path/to/old-venv/bin/python benchmarks/onnx_stacks.py build-old \\
        --teacher runs/quickstart/artifacts/01-teacher --out runs/bench-onnx-stacks
    # 2. graphs of the new stack, in this project's environment
    python benchmarks/onnx_stacks.py build-new \\
        --teacher runs/quickstart/artifacts/01-teacher --out runs/bench-onnx-stacks
    # 3. accuracy of every graph, then latency, every model taking turns in each round;
    #    PyTorch fp32 is timed in both environments (the old one in a worker process)
    python benchmarks/onnx_stacks.py measure --teacher runs/quickstart/artifacts/01-teacher \\
        --out runs/bench-onnx-stacks --old-python /path/to/old-venv/bin/python

Graphs (all from the same teacher; accuracy on the mr-snippets test split of seed 0, the split
the quick start evaluates on):

- ``old-O2``: optimum's ``ORTModelForSequenceClassification`` export + ``ORTOptimizer`` O2;
- ``old-int8``: that graph quantised by ``ORTQuantizer`` with the ``avx2``-or-better preset
  for this CPU, dynamic (what ``quantize.ort-dynamic`` did up to compressor 0.1);
- ``new-dynamo-O2``: ``torch.onnx.export(dynamo=True)`` + ONNX Runtime's transformer optimizer;
- ``new-torchscript-O2``: ``torch.onnx.export(dynamo=False)`` with eager attention + the same
  optimizer (attention fused);
- ``new-int8``, ``new-dynamo-int8``: those two quantised as ``quantize.ort-dynamic`` now does.

Latency: batch 1, ``--sequence-length`` tokens of real text (the test texts packed one after
another), ``--threads`` threads, ``torch.utils.benchmark`` ``Timer.timeit(--iters)`` per model
per round, ``--rounds`` rounds with the models in turn (the order rotated every round);
p50/p90 over the pooled samples.
Prints the CPU model and its instruction sets first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cpu_line() -> str:
    """``model name`` and the SIMD sets that matter for int8/bf16 kernels, from /proc/cpuinfo."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    sets = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16") if f in flags]
    return f"{model}; {', '.join(sets) or 'no AVX2'}; {os.cpu_count()} logical CPUs"


def _preset() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


def build_old(teacher: Path, out: Path) -> None:
    """optimum's export, O2 and dynamic int8 (run in the old environment)."""
    from optimum.onnxruntime import AutoOptimizationConfig, AutoQuantizationConfig, ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    import onnx
    import shutil

    work = out / "old-work"
    shutil.rmtree(work, ignore_errors=True)
    model = ORTModelForSequenceClassification.from_pretrained(str(teacher), export=True, provider="CPUExecutionProvider")
    model.save_pretrained(work / "exported")
    ORTOptimizer.from_pretrained(model).optimize(
        save_dir=work / "o2", optimization_config=AutoOptimizationConfig.with_optimization_level("O2", for_gpu=False)
    )
    o2 = next((work / "o2").glob("*.onnx"))
    shutil.copyfile(o2, out / "old-O2.onnx")
    prepared = work / "prepared"
    prepared.mkdir()
    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(o2)), auto_merge=True), str(prepared / "model.onnx"))
    shutil.copyfile(work / "exported" / "config.json", prepared / "config.json")
    qconfig = getattr(AutoQuantizationConfig, _preset())(is_static=False, per_channel=False)
    ORTQuantizer.from_pretrained(prepared, file_name="model.onnx").quantize(save_dir=work / "int8", quantization_config=qconfig)
    shutil.copyfile(next((work / "int8").glob("*.onnx")), out / "old-int8.onnx")
    print("wrote", out / "old-O2.onnx", out / "old-int8.onnx")


def build_new(teacher: Path, out: Path) -> None:
    """torch.onnx export (both exporters), ONNX Runtime optimizer, dynamic int8."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from compressor.onnx_export import export_onnx, fused_operators, optimize_onnx
    from compressor_quantization.ort import PRESET_TYPES, default_operators, prepare_for_quantization

    work = out / "new-work"
    shutil.rmtree(work, ignore_errors=True)
    model_type = json.loads((teacher / "config.json").read_text())["model_type"]
    for exporter, name in (("torchscript", "new"), ("dynamo", "new-dynamo")):
        t0 = time.perf_counter()
        exported = export_onnx(teacher, work / exporter, task_type="text-classification", exporter=exporter)
        seconds = time.perf_counter() - t0
        o2 = out / f"new-{exporter}-O2.onnx"
        optimize_onnx(exported.onnx_file, o2, model_type=model_type, level="O2",
                      num_heads=exported.num_heads, hidden_size=exported.attention_hidden_size)
        print(f"{exporter}: exported in {seconds:.1f} s; fused after O2: {fused_operators(o2)}")
        prepared = prepare_for_quantization(o2, teacher, work / f"{exporter}-prepared")
        weight = getattr(QuantType, PRESET_TYPES[_preset()][1])
        quantize_dynamic(prepared, out / f"{name}-int8.onnx", op_types_to_quantize=default_operators(False),
                         per_channel=False, reduce_range=False, weight_type=weight,
                         extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    print("wrote", sorted(p.name for p in out.glob("new*.onnx")))


def _test_split(seed: int) -> tuple[list[str], list[int]]:
    from compressor.plugins import get_plugins
    from compressor.recipe import DataConfig
    from compressor.sources.datasets import load_task_data
    from compressor.sources.packaged import cache_root

    data = load_task_data(DataConfig(name="mr-snippets"), datasets_registry=get_plugins().datasets,
                          cache_dir=cache_root(), seed=seed, base_dir=Path.cwd(), task_type="text-classification")
    test = data.split("test")
    return list(test["text"]), [int(x) for x in test["label"]]


def _packed_input(tokenizer, texts: list[str], length: int) -> dict:
    enc = tokenizer(" ".join(texts[:64]), truncation=True, max_length=length, return_tensors="np")
    assert enc["input_ids"].shape[1] == length, "not enough text for the sequence length"
    return {k: v.astype("int64") for k, v in enc.items()}


def worker() -> None:
    """Time PyTorch fp32 in this environment on commands from stdin (``time N`` / ``quit``);
    prints one JSON line per command (the old environment's side of ``measure``)."""
    import torch
    from torch.utils.benchmark import Timer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = json.loads(sys.stdin.readline())
    torch.set_num_threads(spec["threads"])
    model = AutoModelForSequenceClassification.from_pretrained(spec["teacher"]).eval()
    tok = AutoTokenizer.from_pretrained(spec["teacher"])
    batch = {k: torch.from_numpy(v) for k, v in _packed_input(tok, spec["texts"], spec["length"]).items()}

    def call() -> None:
        with torch.inference_mode():
            model(**batch)

    call()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(spec["test_texts"]), 64):
            enc = tok(spec["test_texts"][i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1).tolist()
            correct += sum(int(p == y) for p, y in zip(pred, spec["test_labels"][i:i + 64]))
    import transformers
    print(json.dumps({"ready": True, "transformers": transformers.__version__,
                      "accuracy": correct / len(spec["test_texts"])}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        m = Timer("f()", globals={"f": call}, num_threads=spec["threads"]).timeit(int(cmd[1]))
        print(json.dumps({"times": list(m.times)}), flush=True)


def measure(args: argparse.Namespace) -> None:
    import numpy as np
    import onnxruntime
    import torch
    import transformers
    from tabulate import tabulate
    from torch.utils.benchmark import Timer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compressor.onnx_export import run_logits, session

    print(f"CPU: {cpu_line()}")
    print(f"new stack: torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}")
    texts, labels = _test_split(args.seed)
    tok = AutoTokenizer.from_pretrained(args.teacher)
    graphs = {p.stem: p for p in sorted(args.out.glob("*.onnx"))}
    sessions = {name: session(path, threads=args.threads) for name, path in graphs.items()}

    accuracy: dict[str, float] = {}
    for name, sess in sessions.items():
        correct = 0
        for i in range(0, len(texts), 64):
            enc = tok(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="np")
            correct += int((run_logits(sess, dict(enc)).argmax(-1) == np.array(labels[i:i + 64])).sum())
        accuracy[name] = correct / len(texts)
    torch.set_num_threads(args.threads)
    model = AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    with torch.inference_mode():
        correct = 0
        for i in range(0, len(texts), 64):
            enc = tok(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            correct += int((model(**enc).logits.argmax(-1).numpy() == np.array(labels[i:i + 64])).sum())
    accuracy["pytorch-fp32"] = correct / len(texts)

    batch = _packed_input(tok, texts, args.sequence_length)
    tbatch = {k: torch.from_numpy(v) for k, v in batch.items()}

    def pt_call() -> None:
        with torch.inference_mode():
            model(**tbatch)

    calls = {"pytorch-fp32": pt_call}
    for name, sess in sessions.items():
        names = [i.name for i in sess.get_inputs()]
        feed = {k: batch[k] for k in names}
        calls[name] = (lambda s=sess, f=feed: s.run(None, f))
    old = None
    if args.old_python:
        old = subprocess.Popen([str(args.old_python), __file__, "worker"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        old.stdin.write(json.dumps({"teacher": str(args.teacher.resolve()), "threads": args.threads,
                                    "texts": texts[:64], "length": args.sequence_length,
                                    "test_texts": texts, "test_labels": labels}) + "\n")
        old.stdin.flush()
        ready = json.loads(old.stdout.readline())
        accuracy["old-pytorch-fp32"] = ready["accuracy"]
        print(f"old stack worker: transformers {ready['transformers']}")
    samples: dict[str, list[float]] = {name: [] for name in calls}
    if old:
        samples["old-pytorch-fp32"] = []
    order = list(calls)
    for r in range(args.rounds):
        # rotate the order every round, so no model always runs right after the same one
        for name in order[r % len(order):] + order[:r % len(order)]:
            call = calls[name]
            call()
            m = Timer("f()", globals={"f": call}, num_threads=args.threads).timeit(args.iters)
            samples[name] += list(m.times)
        if old:
            old.stdin.write(f"time {args.iters}\n")
            old.stdin.flush()
            samples["old-pytorch-fp32"] += json.loads(old.stdout.readline())["times"]
    if old:
        old.stdin.write("quit\n")
        old.stdin.flush()
        old.wait(timeout=60)

    ref = {"old": float(np.median(samples.get("old-pytorch-fp32", samples["pytorch-fp32"]))),
           "new": float(np.median(samples["pytorch-fp32"]))}
    rows = []
    for name, times in samples.items():
        p50 = float(np.median(times)) * 1e3
        base = ref["old"] if name.startswith("old") else ref["new"]
        size = graphs[name].stat().st_size / 1e6 if name in graphs else None
        acc = accuracy.get(name)
        rows.append([name, f"{p50:.2f}", f"{np.percentile(times, 90) * 1e3:.2f}", f"{base * 1e3 / p50:.2f}x",
                     f"{size:.1f}" if size else "-", f"{100 * acc:.2f}" if acc is not None else "-"])
    print(f"\nbatch 1, {args.sequence_length} tokens, {args.threads} threads, {args.rounds} rounds x "
          f"{args.iters} calls; speedup vs the same stack's PyTorch fp32; accuracy on {len(texts)} test texts")
    print(tabulate(rows, headers=["model", "p50 ms", "p90 ms", "speedup", "MB", "accuracy %"], tablefmt="github"))
    print(f"load average after: {os.getloadavg()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build-old", "build-new", "measure", "worker"])
    parser.add_argument("--teacher", type=Path, help="fine-tuned PyTorch classifier folder")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-onnx-stacks"))
    parser.add_argument("--old-python", type=Path, help="python of the old environment (for old PyTorch fp32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args(argv)
    if args.command == "worker":
        worker()
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    {"build-old": lambda: build_old(args.teacher, args.out), "build-new": lambda: build_new(args.teacher, args.out),
     "measure": lambda: measure(args)}[args.command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
