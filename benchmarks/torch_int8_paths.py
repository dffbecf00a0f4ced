"""PyTorch dynamic int8 on CPU: ``torch.ao.quantization.quantize_dynamic`` (what
``quantize.dynamic-int8`` runs) against torchao's replacements, with fp32 interleaved.

    python benchmarks/torch_int8_paths.py \
        --model ~/.cache/compressor/models/all-minilm-l6-v2 --threads 1 2 --repeats 15

The model is loaded with ``AutoModelForSequenceClassification`` (``num_labels=2``, the
classifier head drawn after ``torch.manual_seed(0)``); inputs are 128 tokens of English prose
(every position a real token, no padding), batch 1 and batch 8 (eight different windows of the
text). Paths:

- ``fp32``: the model as loaded (reference).
- ``torch.ao``: ``quantize_dynamic`` of every ``nn.Linear`` with
  ``per_channel_dynamic_qconfig`` and ``dtype=torch.qint8``, exactly the call of
  ``quantize_linear_layers(per_channel=True)`` (the strategy's default).
- ``torchao int8-int8``: ``torchao.quantization.quantize_`` with
  ``Int8DynamicActivationInt8WeightConfig()`` (per-token symmetric int8 activations,
  per-channel int8 weights), eager.
- ``torchao int8-intx(8)``: ``Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8,
  weight_granularity=PerAxis(0))`` with its default ``unpacked_to_int8`` layout (the layout
  meant for export); the ``opaque_*`` layouts are tried and reported when they cannot run.
- ``torchao int8-int8 + compile`` (only with ``--compile``): the torchao model through
  ``torch.compile`` (Inductor).

Timing: ``torch.utils.benchmark.Timer.timeit`` per sample, the paths taking turns inside each
(threads, batch) cell, ``--repeats`` samples per path (a path whose samples would take more
than ``--max-path-s`` in total gets fewer, never under 3; the ``n`` column says how many);
p50 is the median per-call time over the samples. Accuracy: max |logit difference| against
fp32 on the batch-8 input. Size: bytes of ``torch.save(model.state_dict())``. Kernels: one
batch-1 call of each path under ``torch.profiler`` (``--profile-threads``), the operators with
the most self CPU time.
Kernel microbenchmark: ``torch._int_mm`` (int8 x int8 -> int32) against fp32 ``torch.mm`` and
fbgemm's ``quantized::linear_dynamic`` at the Linear shapes of a BERT layer, in GFLOP/s.

The top of the output names the CPU and its instruction sets (from ``/proc/cpuinfo``), the
library versions, the quantized engine and the load average, since every figure depends on
them.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: /proc/cpuinfo flags that decide which int8 kernels a CPU can run.
ISA_FLAGS = (
    "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "amx_tile", "amx_int8", "amx_bf16",
)

#: Real-ish English text (short film reviews, written for this benchmark) that the inputs are
#: cut from: every one of the 128 positions is a real token.
TEXT = (
    "The film opens on a crowded ferry at dawn, and for twenty minutes it barely says a word. "
    "That patience pays off: by the time the brothers finally argue, we know exactly what each "
    "of them stands to lose. The script stumbles in the middle, where a subplot about a missing "
    "ledger goes nowhere, but the last act is as tense as anything released this year. "
    "A loud, cheerful mess of a comedy that mistakes volume for wit. Half the jokes land, the "
    "other half are shouted twice in case you missed them, and the lead seems to be acting in a "
    "different movie altogether. Still, the supporting cast is game, and the dog steals every "
    "scene it is in. Quietly devastating. The director trusts long takes and small gestures, a "
    "hand that stays on a doorframe a second too long, a phone call that is never returned. "
    "Some viewers will find it slow; others will find they cannot stop thinking about it for "
    "days. The sequel keeps the spaceships and forgets the people. Every battle is bigger than "
    "the last and none of them matters, because the characters have been reduced to catchphrases "
    "and the plot to a list of locations. The score is lovely, which only makes the emptiness "
    "louder. An honest, funny documentary about a village bakery that refuses to close. It never "
    "pretends the numbers add up, and it is better for it. Worth seeking out, especially on a "
    "cold evening with something warm to eat."
)


def cpu_description() -> tuple[str, dict[str, bool]]:
    """The CPU model name and which of :data:`ISA_FLAGS` it has, from ``/proc/cpuinfo``.

    :returns: ``(model name, {flag: present})``; ``("unknown", {})`` where the file is absent.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown", {}
    name, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, {flag: flag in flags for flag in ISA_FLAGS}


def build_inputs(tokenizer: Any, *, batch: int, length: int) -> dict[str, Any]:
    """``batch`` rows of ``length`` tokens: ``[CLS]``, a window of :data:`TEXT`, ``[SEP]``.

    Row ``i`` starts ``i * 13`` word pieces into the text, so the rows differ.

    :raises ValueError: if the text is too short for the requested windows.
    """
    import torch

    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    body = length - 2
    if len(ids) < body + 13 * (batch - 1):
        raise ValueError(f"the text has {len(ids)} tokens, too few for {batch} windows of {body}")
    rows = [
        [tokenizer.cls_token_id, *ids[13 * i: 13 * i + body], tokenizer.sep_token_id] for i in range(batch)
    ]
    input_ids = torch.tensor(rows, dtype=torch.long)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": torch.zeros_like(input_ids),
    }


def state_dict_bytes(model: Any) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a saved artifact's weights file holds."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def build_paths(
    model_dir: Path, *, inputs: dict[int, dict[str, Any]], compile_: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load the fp32 model and make each quantised version of it.

    :param model_dir: a BERT-style folder ``AutoModelForSequenceClassification`` can load.
    :param inputs: model inputs by batch size; each layout is tried on the smallest, and a
        compiled model is called once on each (so that compilation is not timed).
    :param compile_: also add the torchao int8-int8 model wrapped in ``torch.compile``.
    :returns: ``({path name: model in eval mode}, {path name: why it was skipped}``).
    """
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized: classifier.*" is expected here
    torch.manual_seed(0)
    fp32 = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, dtype=torch.float32).eval()
    models: dict[str, Any] = {"fp32": fp32}
    skipped: dict[str, str] = {}

    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():  # the "moves to torchao" deprecation notice
        warnings.simplefilter("ignore")
        models["torch.ao"] = torch.ao.quantization.quantize_dynamic(
            fp32, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=False
        ).eval()

    try:
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8DynamicActivationIntxWeightConfig,
            quantize_,
        )
        from torchao.quantization.granularity import PerAxis
        from torchao.quantization.quantize_.workflows import IntxPackingFormat
    except ImportError as exc:
        skipped["torchao"] = f"torchao not importable: {exc}"
        return models, skipped

    int8 = copy.deepcopy(fp32)
    quantize_(int8, Int8DynamicActivationInt8WeightConfig())
    models["torchao int8-int8"] = int8.eval()

    layouts = [("", IntxPackingFormat.UNPACKED_TO_INT8)] + [
        (f" {fmt.value}", fmt) for fmt in IntxPackingFormat if fmt.value.startswith("opaque")
    ]
    for suffix, fmt in layouts:
        name = f"torchao int8-intx(8){suffix}"
        candidate = copy.deepcopy(fp32)
        try:
            quantize_(candidate, Int8DynamicActivationIntxWeightConfig(
                weight_dtype=torch.int8, weight_granularity=PerAxis(0), intx_packing_format=fmt,
            ))
            with torch.inference_mode():
                candidate(**inputs[min(inputs)])
        except Exception as exc:  # noqa: BLE001 - report why a layout cannot run here
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            continue
        models[name] = candidate.eval()

    if compile_:
        compiled = torch.compile(copy.deepcopy(int8))
        t0 = time.perf_counter()
        with torch.inference_mode():
            for batch_inputs in inputs.values():
                compiled(**batch_inputs)
        print(f"torch.compile of torchao int8-int8: first calls (compilation) {time.perf_counter() - t0:.0f} s")
        models["torchao int8-int8 + compile"] = compiled
    return models, skipped


def call_of(model: Any, inputs: dict[str, Any]) -> Callable[[], Any]:
    """A no-argument call of ``model`` on ``inputs`` under ``torch.inference_mode``."""
    import torch

    def run() -> Any:
        with torch.inference_mode():
            return model(**inputs)

    return run


def time_interleaved(
    calls: dict[str, Callable[[], Any]], *, threads: int, repeats: int, sample_s: float, max_path_s: float
) -> dict[str, list[float]]:
    """Per-call seconds of each call, the calls taking turns sample by sample.

    Each sample is one ``Timer.timeit(number)``, ``number`` chosen so that a sample lasts
    about ``sample_s``. A call gets ``repeats`` samples, or fewer (at least 3) where they would
    take more than ``max_path_s`` in all.

    :returns: ``{name: [seconds per call, one per sample]}``.
    """
    import torch.utils.benchmark as benchmark

    plan: dict[str, tuple[benchmark.Timer, int, int]] = {}
    for name, fn in calls.items():
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
        timer.timeit(1)  # warm-up (first-call allocations, lazy packing)
        estimate = timer.timeit(1).mean
        number = max(1, int(sample_s / estimate))
        samples = min(repeats, max(3, int(max_path_s / (estimate * number))))
        plan[name] = (timer, number, samples)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(max(s for _, _, s in plan.values())):
        for name, (timer, number, samples) in plan.items():
            if round_ < samples:
                times[name].append(timer.timeit(number).mean)
    return times


def kernels_of(fn: Callable[[], Any], *, threads: int, top: int) -> list[tuple[str, float, int]]:
    """The operators with the most self CPU time in one call of ``fn`` under the profiler.

    :returns: ``[(operator name, self CPU ms, calls)]``, at most ``top`` of them.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    finally:
        torch.set_num_threads(before)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in events if e.self_cpu_time_total > 0]
    return rows[:top]


def matmul_gflops(threads: list[int], repeats: int) -> list[list[Any]]:
    """GFLOP/s of fp32 ``torch.mm``, ``torch._int_mm`` and fbgemm ``quantized::linear_dynamic``
    at the Linear shapes of a BERT-small layer (hidden 384, FFN 1536), 128 and 1024 rows.

    :returns: table rows ``[threads, M x K @ K x N, fp32 mm, _int_mm, linear_dynamic, _int_mm / fp32]``.
    """
    import torch
    import torch.utils.benchmark as benchmark
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    rows = []
    torch.manual_seed(0)
    for th in threads:
        for m, k, n in [(128, 384, 1536), (128, 1536, 384), (1024, 384, 1536)]:
            a, b = torch.randn(m, k), torch.randn(k, n)
            a8 = torch.randint(-128, 128, (m, k), dtype=torch.int8)
            b8 = torch.randint(-128, 128, (k, n), dtype=torch.int8)
            qlinear = QLinear(k, n, dtype=torch.qint8)
            qlinear.set_weight_bias(
                torch.quantize_per_tensor(b.t().contiguous(), 0.05, 0, torch.qint8), torch.zeros(n)
            )
            results = {}
            for label, fn in [
                ("fp32", lambda: torch.mm(a, b)),
                ("int_mm", lambda: torch._int_mm(a8, b8)),
                ("qlinear", lambda: qlinear(a)),
            ]:
                timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=th)
                timer.timeit(1)
                estimate = timer.timeit(1).mean
                number = max(1, int(0.1 / estimate))
                samples = [timer.timeit(number).mean for _ in range(min(repeats, max(3, int(10 / (estimate * number)))))]
                results[label] = 2 * m * k * n / statistics.median(samples) / 1e9
            rows.append([th, f"{m}x{k} @ {k}x{n}", results["fp32"], results["int_mm"], results["qlinear"],
                         results["int_mm"] / results["fp32"]])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path.home() / ".cache/compressor/models/all-minilm-l6-v2",
                        help="BERT-style model folder (default: the packaged MiniLM-L6)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts")
    parser.add_argument("--repeats", type=int, default=15, help="timed samples per path and cell")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--sample-s", type=float, default=0.2, help="target length of one timed sample")
    parser.add_argument("--max-path-s", type=float, default=60.0,
                        help="time budget of one path in one cell; slower paths get fewer samples (>= 3)")
    parser.add_argument("--profile-threads", type=int,
                        help="threads of the profiled call (default: the smallest of --threads; on a shared "
                        "machine one thread is the least disturbed)")
    parser.add_argument("--compile", action="store_true", help="add torchao int8-int8 under torch.compile")
    parser.add_argument("--skip-microbench", action="store_true", help="skip the matmul GFLOP/s table")
    args = parser.parse_args(argv)

    import torch
    import transformers
    from tabulate import tabulate
    from transformers import AutoTokenizer

    try:
        import torchao

        torchao_version = torchao.__version__
    except ImportError:
        torchao_version = "not installed"

    name, flags = cpu_description()
    print("## Machine\n")
    print(f"- CPU: {name}; {len(os.sched_getaffinity(0))} cores available to this process")
    print("- instruction sets: " + ", ".join(f"{f} {'yes' if ok else 'no'}" for f, ok in flags.items()))
    print(f"- torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"quantized engine {torch.backends.quantized.engine}), torchao {torchao_version}, "
          f"transformers {transformers.__version__}")
    print(f"- load average (1 min) at start {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"- command: python benchmarks/torch_int8_paths.py {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    sys.stdout.flush()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    # batch 1 is always profiled and batch 8 always checks the logits, timed or not
    inputs = {b: build_inputs(tokenizer, batch=b, length=args.sequence_length)
              for b in sorted({1, 8, *args.batch_sizes})}
    models, skipped = build_paths(args.model, inputs=inputs, compile_=args.compile)

    # accuracy and size
    check = inputs[8]
    with torch.inference_mode():
        reference = models["fp32"](**check).logits.float()
        diffs = {n: float((m(**check).logits.float() - reference).abs().max()) for n, m in models.items()}
    sizes = {n: state_dict_bytes(getattr(m, "_orig_mod", m)) for n, m in models.items()}

    # latency, interleaved per (threads, batch) cell
    p50: dict[tuple[str, int, int], float] = {}
    samples: dict[tuple[str, int, int], int] = {}
    t_start = time.perf_counter()
    for threads in args.threads:
        for batch in args.batch_sizes:
            times = time_interleaved(
                {n: call_of(m, inputs[batch]) for n, m in models.items()}, threads=threads, repeats=args.repeats,
                sample_s=args.sample_s, max_path_s=args.max_path_s,
            )
            for n, ts in times.items():
                p50[(n, threads, batch)] = statistics.median(ts) * 1e3
                samples[(n, threads, batch)] = len(ts)
            print(f"timed threads={threads} batch={batch} ({time.perf_counter() - t_start:.0f} s so far)", file=sys.stderr)

    headers = ["path", "threads", "batch", "p50 (ms)", "n", "speedup vs fp32 (x)", "speedup vs torch.ao (x)",
               "max |logit diff|", "state_dict (MB)"]
    rows = []
    for threads in args.threads:
        for batch in args.batch_sizes:
            base = p50[("fp32", threads, batch)]
            old = p50.get(("torch.ao", threads, batch))
            for n in models:
                t = p50[(n, threads, batch)]
                rows.append([n, threads, batch, t, samples[(n, threads, batch)], base / t,
                             (old / t) if old else None, diffs[n], sizes[n] / 1e6])
    print("## Latency, accuracy, size\n")
    print(tabulate(rows, headers=headers, tablefmt="github",
                   floatfmt=("", "", "", ".2f", "", ".2f", ".3f", ".2e", ".1f")))
    print(f"\n{args.sequence_length} real tokens per row; max |fp32 logit| on the batch-8 input "
          f"{float(reference.abs().max()):.3f}; p50 = median of n samples of Timer.timeit; "
          f"load average (1 min) at the end {os.getloadavg()[0]:.2f}")
    for n, why in skipped.items():
        print(f"- not run: {n}: {why}")

    profile_threads = args.profile_threads or min(args.threads)
    print("\n## Kernels (one batch-1 call under torch.profiler, "
          f"{profile_threads} thread(s), top operators by self CPU time)\n")
    krows = []
    for n, m in models.items():
        for op, ms, count in kernels_of(call_of(m, inputs[1]), threads=profile_threads, top=5):
            krows.append([n, op, ms, count])
    print(tabulate(krows, headers=["path", "operator", "self CPU (ms)", "calls"], tablefmt="github",
                   floatfmt=("", "", ".2f", "")))

    if not args.skip_microbench:
        print("\n## Matmul kernels (GFLOP/s, median)\n")
        print(tabulate(matmul_gflops(args.threads, args.repeats),
                       headers=["threads", "shape", "fp32 torch.mm", "torch._int_mm (s8s8)",
                                "quantized::linear_dynamic (fbgemm)", "_int_mm / fp32 (x)"],
                       tablefmt="github", floatfmt=("", "", ".1f", ".2f", ".1f", ".3f")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
