"""Latency: identical fixed-length inputs for every model, per-call times, percentiles.

Every model of a run is timed on the same texts, each tokenised by the model's own tokenizer
and truncated (or padded) to exactly the cell's sequence length. Models with different
tokenizers therefore see the same text, not the same token ids. The texts come from the
evaluation split in one of two ways (``EvaluationSettings.latency_inputs``):

- ``"packed"`` (default): consecutive texts of the split are joined until each input has at
  least as many words as the longest sequence length, so every position of a 128-token input
  is a real token. A word is at least one token for WordPiece, BPE and SentencePiece
  vocabularies, so no padding is needed; the fraction of real tokens is still measured and
  recorded (``real_token_fraction``).
- ``"padded"``: one text per input, padded to the sequence length. Short-sentence tasks then
  time mostly padding, which some runtimes (ONNX Runtime's int8 kernels among them) run
  measurably slower than real tokens (``benchmarks/ort_padding.py``).

Methodology (per cell of the batch size x sequence length matrix):

1. ``warmup`` untimed calls of every model (on CUDA followed by a device synchronisation,
   so lazy kernel compilation and cuDNN/cuBLAS autotuning fall outside the timed calls);
2. timed calls in interleaved rounds (one call of each model per round, the order reversed
   every other round), each timed on its own: ``time.perf_counter_ns`` around the call on
   CPU; on CUDA with PyTorch, CUDA events recorded on the current stream around the call,
   then ``Event.synchronize()``; per-call samples are kept for p90/p99;
3. stop when every model has ``min_runs`` calls and ``min_time_s`` seconds of them and the
   order-statistic 95% interval of its p50 is within ``target_rel_ci`` of the p50, or at
   ``max_runs`` rounds / ``max_time_s`` seconds (the rule that stopped is recorded).

The garbage collector is paused during timed rounds; the thread count is fixed by
:func:`torch_threads` (and the ONNX Runtime session options) and recorded.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CompressorError

if TYPE_CHECKING:  # pragma: no cover
    import datasets

    from .backends import Backend
    from .settings import EvaluationSettings


def default_threads() -> int:
    """Physical CPU cores available to this process.

    The smaller of the CPUs in this process's affinity mask and the physical core count
    (``psutil.cpu_count(logical=False)``); at least 1.
    """
    if hasattr(os, "sched_getaffinity"):
        available = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, Windows
        available = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover
        physical = None
    return max(1, min(available, physical or available))


def resolve_threads(threads: int | None) -> int:
    """``threads`` if set, else :func:`default_threads`."""
    return threads if threads is not None else default_threads()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; restore the previous count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latency_texts(
    dataset: "datasets.Dataset", n: int, *, min_words: int | None = None
) -> tuple[list[str], list[str] | None]:
    """The latency inputs, built deterministically from the first texts of ``dataset``.

    Without ``min_words``: the first ``n`` texts, repeated cyclically if the split is shorter.
    With ``min_words``: ``n`` packed inputs, each the space-joined run of consecutive texts
    (cycling through the split) that first reaches ``min_words`` whitespace-separated words;
    pairs are packed side by side in the same way.

    The same split, ``n`` and ``min_words`` give the same list for every model.

    :param dataset: rows with ``text`` and optionally ``text_pair``.
    :param n: number of inputs (the largest batch size).
    :param min_words: pack each input to at least this many words (``None``: no packing).
    :returns: ``(texts, text_pairs)``; ``text_pairs`` is ``None`` without a ``text_pair``
        column.
    :raises CompressorError: if ``dataset`` is empty, has no ``text`` column, or its texts
        have no words to pack.
    """
    if "text" not in dataset.column_names:
        raise CompressorError(f"latency inputs need a 'text' column; have {dataset.column_names}")
    if len(dataset) == 0:
        raise CompressorError("latency inputs need at least one text; the split is empty")
    has_pairs = "text_pair" in dataset.column_names
    if min_words is None:
        head = dataset.select(range(min(n, len(dataset))))
        first = list(head["text"])
        texts = [first[i % len(first)] for i in range(n)]
        pairs = None
        if has_pairs:
            first_pairs = list(head["text_pair"])
            pairs = [first_pairs[i % len(first_pairs)] for i in range(n)]
        return texts, pairs

    columns = ["text", "text_pair"] if has_pairs else ["text"]
    words = [sum(len(str(t).split()) for t in dataset[c]) for c in columns]
    if min(words) == 0:
        raise CompressorError("latency inputs cannot be packed: the split's texts have no words")
    # Enough rows of the split to fill n inputs of min_words words, plus one input of slack.
    avg = min(words) / len(dataset)
    need = min(len(dataset), int((n + 1) * min_words / avg) + n + 1)
    head = {c: [str(t) for t in dataset.select(range(need))[c]] for c in columns}
    packed: dict[str, list[str]] = {c: [] for c in columns}
    for c in columns:
        pos = 0
        for _ in range(n):
            parts: list[str] = []
            count = 0
            while count < min_words:
                text = head[c][pos % len(head[c])]
                pos += 1
                parts.append(text)
                count += len(text.split())
            packed[c].append(" ".join(parts))
    return packed["text"], packed.get("text_pair")


def texts_fingerprint(texts: Sequence[str], text_pairs: Sequence[str] | None) -> str:
    """SHA-256 of the latency inputs (recorded so reports can show every model saw the same)."""
    payload = json.dumps([list(texts), list(text_pairs) if text_pairs is not None else None])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def summarize(
    samples_ns: Sequence[int],
    *,
    batch_size: int,
    sequence_length: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Percentiles, intervals and throughput of per-call times.

    :param samples_ns: one time per timed call, in nanoseconds.
    :param batch_size: sequences per call.
    :param sequence_length: tokens per sequence.
    :param confidence: coverage of the intervals.
    :returns: ``{"batch_size", "sequence_length", "p50_ms", "p50_ci_ms": [low, high],
        "p90_ms", "p99_ms", "mean_ms", "mean_ci_ms": [low, high], "std_ms", "min_ms",
        "throughput_seq_per_s", "throughput_ci": [low, high], "runs", "timed_s"}``;
        percentiles use numpy's linear interpolation; the p50 interval is the
        distribution-free order-statistic interval (:func:`~compressor.evaluate.stats.median_ci`),
        the mean's a Student-t interval; throughput is ``batch_size / p50`` in sequences per
        second, its interval ``batch_size / p50_ci`` (bounds swapped).
    :raises ValueError: for no samples.
    """
    import numpy as np

    from .stats import mean_ci, median_ci, percentiles

    if len(samples_ns) == 0:
        raise ValueError("no timing samples")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = percentiles(ms, [50, 90, 99])
    lo, hi = median_ci(ms, confidence)
    mlo, mhi = mean_ci(ms, confidence)

    def tput(t_ms: float) -> float:
        return float(batch_size / (t_ms / 1e3)) if t_ms > 0 else float("inf")

    return {
        "batch_size": batch_size,
        "sequence_length": sequence_length,
        "p50_ms": p50,
        "p50_ci_ms": [lo, hi],
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": float(ms.mean()),
        "mean_ci_ms": [mlo, mhi],
        "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "min_ms": float(ms.min()),
        "throughput_seq_per_s": tput(p50),
        "throughput_ci": [tput(hi), tput(lo)],
        "runs": int(len(ms)),
        "timed_s": float(ms.sum() / 1e3),
    }


def p50_rel_halfwidth(samples_ns: Sequence[int], confidence: float = 0.95) -> float:
    """Half-width of the order-statistic interval of the median, relative to the median.

    ``(X_(k) - X_(j)) / 2 / median``; ``inf`` for fewer than 6 samples (no 95% interval).
    """
    n = len(samples_ns)
    if n < 6:
        return float("inf")
    from .stats import median_ci_ranks

    j, k, _ = median_ci_ranks(n, confidence)
    x = sorted(samples_ns)
    median = (x[(n - 1) // 2] + x[n // 2]) / 2
    return (x[k - 1] - x[j - 1]) / 2 / median if median > 0 else float("inf")


class WallTimer:
    """Times a call with ``time.perf_counter_ns`` (CPU, or GPU calls that block until done).

    :param synchronize: called after each call and after warm-up (e.g.
        ``torch.cuda.synchronize`` for a GPU runtime whose calls may return early).
    """

    name = "perf_counter_ns"

    def __init__(self, synchronize: Any = None) -> None:
        self._sync = synchronize

    def time(self, fn: Any) -> int:
        """Run ``fn()`` once; returns its wall time in nanoseconds."""
        t0 = time.perf_counter_ns()
        fn()
        if self._sync is not None:
            self._sync()
        return time.perf_counter_ns() - t0

    def synchronize(self) -> None:
        """Wait until queued device work is done (no-op on CPU)."""
        if self._sync is not None:
            self._sync()


class CudaEventTimer:
    """Times a call's GPU work with CUDA events (``torch.cuda.Event(enable_timing=True)``).

    A start event is recorded on the current stream before the call and an end event after
    it; ``end.synchronize()`` waits for the GPU, and ``start.elapsed_time(end)`` (ms, about
    0.5 us resolution) is the time between them on the device. This follows the PyTorch CUDA
    semantics notes ("Asynchronous execution"): host timers around an asynchronous launch
    measure the launch, not the work.

    :param cuda: the ``torch.cuda`` module, or a stand-in with ``Event`` and
        ``synchronize`` (tests fake CUDA on machines without a GPU).
    """

    name = "cuda_event"

    def __init__(self, cuda: Any = None) -> None:
        if cuda is None:
            import torch

            cuda = torch.cuda
        self.cuda = cuda

    def time(self, fn: Any) -> int:
        start = self.cuda.Event(enable_timing=True)
        end = self.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return int(round(start.elapsed_time(end) * 1e6))

    def synchronize(self) -> None:
        self.cuda.synchronize()


def timer_for(runtime: str, device: str, cuda: Any = None) -> "WallTimer | CudaEventTimer":
    """The timer for a backend's runtime on a device.

    CPU: :class:`WallTimer`. CUDA with PyTorch (any ``runtime == "torch"`` backend, its int8
    and half-precision variants included): :class:`CudaEventTimer` (kernels are queued
    asynchronously on the current stream). CUDA with another runtime (ONNX Runtime copies its
    outputs back to the host, so a call returns when the GPU is done, on streams PyTorch does
    not see): :class:`WallTimer` followed by ``torch.cuda.synchronize``.

    :param runtime: the backend's :attr:`~compressor.evaluate.backends.Backend.runtime`
        (``"torch"``, ``"onnxruntime"``, ...).
    :param device: ``"cpu"`` or ``"cuda"``.
    :param cuda: the ``torch.cuda`` module or a stand-in (tests).
    """
    if device != "cuda":
        return WallTimer()
    if cuda is None:
        import torch

        cuda = torch.cuda
    if runtime == "torch":
        return CudaEventTimer(cuda)
    return WallTimer(synchronize=cuda.synchronize)


@dataclass
class Timing:
    """Per-call samples of each callable of one interleaved timing, and why it stopped.

    :ivar samples: per callable, the time of each timed call in nanoseconds.
    :ivar stop_reason: ``"stable"`` (every p50 interval within the target), ``"min_runs"``
        (no stability target, minimums reached), ``"max_runs"`` or ``"max_time"``.
    :ivar rounds: timed rounds run.
    """

    samples: list[list[int]]
    stop_reason: str
    rounds: int


def run_interleaved(
    fns: Sequence[Any],
    *,
    warmup: int,
    min_runs: int,
    max_runs: int,
    min_time_s: float,
    max_time_s: float | None = None,
    target_rel_ci: float = 0.0,
    confidence: float = 0.95,
    timers: Sequence[Any] | None = None,
    progress: bool = False,
    desc: str = "latency",
) -> Timing:
    """Time several callables in interleaved rounds until their p50s are stable.

    Each callable first gets ``warmup`` untimed calls (then its timer synchronises). A round
    times one call of each callable; the order alternates every round (forward, then
    reversed) so no callable always follows the same neighbour. Rounds continue until every
    callable has ``min_runs`` timed calls and ``min_time_s`` seconds of them and, when
    ``target_rel_ci > 0``, the ``confidence`` interval of its median is within
    ``target_rel_ci`` of the median (:func:`p50_rel_halfwidth`); or until ``max_runs`` rounds
    or (any callable's) ``max_time_s`` seconds of timed calls. The garbage collector is
    paused during the rounds.

    :param fns: zero-argument callables (one forward pass of one model each).
    :param timers: one timer per callable (:class:`WallTimer` by default).
    :param progress: show a progress bar (rounds, with an ETA against ``max_runs``).
    :returns: a :class:`Timing`.
    """
    from tqdm.auto import tqdm

    timers = list(timers) if timers is not None else [WallTimer() for _ in fns]
    if len(timers) != len(fns):
        raise ValueError("one timer per callable")
    for fn, timer in zip(fns, timers):
        for _ in range(warmup):
            fn()
        timer.synchronize()
    samples: list[list[int]] = [[] for _ in fns]
    elapsed = [0] * len(fns)
    min_time_ns = int(min_time_s * 1e9)
    max_time_ns = int(max_time_s * 1e9) if max_time_s is not None else None
    order = list(range(len(fns)))
    reason = "max_runs"
    rounds = 0
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with tqdm(total=max_runs, desc=desc, unit="round", disable=not progress, leave=False) as bar:
            for round_index in range(max_runs):
                for i in order if round_index % 2 == 0 else reversed(order):
                    ns = timers[i].time(fns[i])
                    samples[i].append(ns)
                    elapsed[i] += ns
                rounds = round_index + 1
                bar.update(1)
                if max_time_ns is not None and max(elapsed) >= max_time_ns:
                    reason = "max_time"
                    break
                if rounds >= min_runs and min(elapsed) >= min_time_ns:
                    if target_rel_ci <= 0:
                        reason = "min_runs"
                        break
                    if all(p50_rel_halfwidth(s, confidence) <= target_rel_ci for s in samples):
                        reason = "stable"
                        break
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(samples=samples, stop_reason=reason, rounds=rounds)


def time_interleaved(
    fns: Sequence[Any],
    *,
    warmup: int,
    min_runs: int,
    max_runs: int,
    min_time_s: float,
    progress: bool = False,
    desc: str = "latency",
    **kwargs: Any,
) -> list[list[int]]:
    """:func:`run_interleaved` returning only the samples.

    Comparing models timed one after another mixes their speed with whatever else the
    machine did meanwhile; interleaving spreads that load evenly over every model, so their
    ratios stay meaningful on a busy machine.

    :returns: per callable, the time of each timed call in nanoseconds.
    """
    return run_interleaved(
        fns, warmup=warmup, min_runs=min_runs, max_runs=max_runs, min_time_s=min_time_s,
        progress=progress, desc=desc, **kwargs,
    ).samples


def time_calls(
    fn: Any,
    *,
    warmup: int,
    min_runs: int,
    max_runs: int,
    min_time_s: float,
    progress: bool = False,
    desc: str = "latency",
    **kwargs: Any,
) -> list[int]:
    """Time one callable (:func:`run_interleaved` with a single callable).

    :returns: the time of each timed call, in nanoseconds.
    """
    return time_interleaved(
        [fn], warmup=warmup, min_runs=min_runs, max_runs=max_runs, min_time_s=min_time_s,
        progress=progress, desc=desc, **kwargs,
    )[0]


def encode_latency_batch(
    backend: "Backend", texts: list[str], text_pairs: list[str] | None, batch_size: int, length: int
) -> Any:
    """Tokenise the first ``batch_size`` latency texts to exactly ``length`` tokens.

    Longer texts are truncated and shorter ones padded (see :func:`latency_texts`).

    :returns: the backend-native batch, moved to the backend's device when it has one
        (``backend.to_device(batch)``).
    :raises CompressorError: if ``length`` exceeds the model's limit, or the tokenizer
        does not pad to ``length``.
    """
    limit = backend.max_positions()
    if limit is not None and length > limit:
        raise CompressorError(
            f"latency sequence length {length} exceeds the model's maximum of {limit} tokens",
            key="evaluation.sequence_length",
            hint=f"set evaluation.sequence_length (or sequence_lengths) to at most {limit}",
        )
    if len(texts) < batch_size:
        raise ValueError(f"need {batch_size} texts, got {len(texts)}")
    batch = backend.encode(
        texts[:batch_size],
        text_pairs[:batch_size] if text_pairs is not None else None,
        padding="max_length",
        max_length=length,
    )
    shape = tuple(batch["input_ids"].shape)
    if shape != (batch_size, length):  # a tokenizer that ignores max_length padding
        raise CompressorError(f"latency batch has shape {shape}, expected {(batch_size, length)}")
    to_device = getattr(backend, "to_device", None)
    return to_device(batch) if callable(to_device) else batch


def real_token_fraction(batch: Any) -> float | None:
    """Fraction of positions in ``batch`` that are real tokens (attention mask of one).

    :param batch: a mapping with ``attention_mask`` of shape ``(batch, length)`` (torch
        tensor or numpy array).
    :returns: a float in ``[0, 1]``, or ``None`` without an attention mask.
    """
    mask = batch.get("attention_mask") if hasattr(batch, "get") else None
    if mask is None:
        return None
    total = 1
    for dim in mask.shape:
        total *= int(dim)
    return float(mask.sum()) / total if total else None


def latency_cells(settings: "EvaluationSettings") -> list[tuple[int, int]]:
    """The (batch size, sequence length) cells timed, batch sizes outermost, in order."""
    return [(bs, length) for bs in settings.batch_sizes for length in settings.lengths]


def measure_latency_interleaved(
    backends: Sequence["Backend"],
    texts: list[str],
    text_pairs: list[str] | None,
    settings: "EvaluationSettings",
    *,
    device: str = "cpu",
    timers: Sequence[Any] | None = None,
    progress: bool = True,
) -> list[list[dict[str, Any]]]:
    """Time several models at every (batch size, sequence length) cell, interleaved.

    Models of the same runtime are timed in interleaved rounds; each runtime's group is
    timed after the other (see :func:`runtime_groups` for why). With
    ``settings.latency_passes`` > 1 and several groups, the groups take turns that many
    times, each pass with its own warm-up and ``1/passes`` of ``min_runs``, ``max_runs``,
    ``min_time_s`` and ``max_time_s``; each model's samples from all passes are pooled.

    :param backends: the loaded models.
    :param texts: at least ``max(settings.batch_sizes)`` texts (see :func:`latency_texts`).
    :param text_pairs: second sequences, or ``None``.
    :param settings: the matrix, warm-up, run counts and stopping rule.
    :param device: ``"cpu"`` or ``"cuda"`` (selects the timers, see :func:`timer_for`).
    :param timers: one timer per backend (overrides ``device``; tests use fakes).
    :param progress: show a progress bar per cell.
    :returns: per backend, one :func:`summarize` dict per cell (:func:`latency_cells` order),
        each with ``"stop_reason"`` (the passes' reasons joined by ``+`` when they differ),
        ``"timer"``, ``"warmup"`` and ``"passes"`` added.
    :raises CompressorError: if a sequence length exceeds what a model accepts.
    """
    timers = list(timers) if timers is not None else [timer_for(_runtime(b), device) for b in backends]
    cells = latency_cells(settings)
    passes = settings.latency_passes
    groups = runtime_groups(backends)
    if len(groups) == 1:
        passes = 1  # one interleaved group already shares every drift
    samples: dict[tuple[int, int], list[int]] = {}
    stops: dict[tuple[int, int], list[str]] = {}
    for k in range(passes):
        for group in groups:
            names = ", ".join(sorted({backends[i].name for i in group}))
            for n, (bs, length) in enumerate(cells, start=1):
                batches = {i: encode_latency_batch(backends[i], texts, text_pairs, bs, length) for i in group}
                fns = [(lambda b=backends[i], x=batches[i]: b.run(x)) for i in group]
                timing = run_interleaved(
                    fns,
                    warmup=settings.warmup,
                    min_runs=max(1, -(-settings.min_runs // passes)),
                    max_runs=max(1, -(-settings.max_runs // passes)),
                    min_time_s=settings.min_time_s / passes,
                    max_time_s=settings.max_time_s / passes,
                    target_rel_ci=settings.target_rel_ci,
                    confidence=settings.confidence,
                    timers=[timers[i] for i in group],
                    progress=progress,
                    desc=f"latency {n}/{len(cells)} bs{bs} x {length} tok ({len(group)} {names} models)"
                    + (f", pass {k + 1}/{passes}" if passes > 1 else ""),
                )
                for i, got in zip(group, timing.samples):
                    samples.setdefault((i, n - 1), []).extend(got)
                    stops.setdefault((i, n - 1), []).append(timing.stop_reason)
    out: list[list[dict[str, Any]]] = [[None] * len(cells) for _ in backends]  # type: ignore[list-item]
    for (i, c), got in samples.items():
        bs, length = cells[c]
        entry = summarize(got, batch_size=bs, sequence_length=length, confidence=settings.confidence)
        reasons = sorted(set(stops[(i, c)]))
        entry.update(stop_reason=reasons[0] if len(reasons) == 1 else "+".join(reasons),
                     timer=timers[i].name, warmup=settings.warmup, passes=passes)
        out[i][c] = entry
    return out


def _runtime(backend: Any) -> str:
    return str(getattr(backend, "runtime", "torch"))


def runtime_groups(backends: Sequence["Backend"]) -> list[list[int]]:
    """Indices of ``backends`` grouped by runtime (``backend.runtime``), in first-seen order;
    a backend whose ``shared_thread_pool`` is false (one pool per loaded model, as ONNX
    Runtime sessions have) is a group of its own. PyTorch variants (dynamic int8, bf16: other
    backend names, runtime ``"torch"``) run on the same OpenMP pool as their fp32 parent and
    are interleaved with it.

    Models of one runtime are timed interleaved; different runtimes are timed one group
    after another. Interleaving across runtimes measures their thread pools fighting, not
    the models: after a call, ONNX Runtime's workers spin for several milliseconds and
    libgomp's (PyTorch) for a shorter while, and the other runtime's next call runs on the
    cores they hold. Measured on this project's 2-core machine: a PyTorch call right after an
    ONNX Runtime call took 7.0 ms instead of 3.6 ms, even after a 10 ms pause, and turning
    ONNX Runtime's spinning off made its own calls 25% slower (3.3 -> 4.1 ms).
    """
    groups: dict[Any, list[int]] = {}
    for i, backend in enumerate(backends):
        # PyTorch models share the process's one OpenMP pool and interleave well; each ONNX
        # Runtime session has a pool of its own, so two sessions fight like two runtimes.
        key = _runtime(backend) if getattr(backend, "shared_thread_pool", True) else ("own", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def measure_latency(
    backend: "Backend",
    texts: list[str],
    text_pairs: list[str] | None,
    settings: "EvaluationSettings",
    *,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """:func:`measure_latency_interleaved` for one model.

    :returns: one :func:`summarize` dict per (batch size, sequence length) cell.
    """
    return measure_latency_interleaved(
        [backend], texts, text_pairs, settings, device=device, progress=progress
    )[0]
