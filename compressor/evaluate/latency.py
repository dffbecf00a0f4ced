"""Latency: identical fixed-length inputs for every model, per-call wall times, percentiles.

Every model of a run is timed on the same texts (the first texts of the evaluation split,
repeated to fill the largest batch size), each tokenised by the model's own tokenizer and
padded or truncated to exactly ``sequence_length`` tokens. Models with different tokenizers
therefore see the same text, not the same token ids.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
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
    dataset: "datasets.Dataset", n: int
) -> tuple[list[str], list[str] | None]:
    """The latency inputs: the first texts of ``dataset``, repeated cyclically to ``n``.

    Deterministic: the same split and ``n`` give the same list for every model.

    :param dataset: rows with ``text`` and optionally ``text_pair``.
    :param n: number of texts (the largest batch size).
    :returns: ``(texts, text_pairs)``; ``text_pairs`` is ``None`` without a ``text_pair``
        column.
    :raises CompressorError: if ``dataset`` is empty or has no ``text`` column.
    """
    if "text" not in dataset.column_names:
        raise CompressorError(f"latency inputs need a 'text' column; have {dataset.column_names}")
    if len(dataset) == 0:
        raise CompressorError("latency inputs need at least one text; the split is empty")
    head = dataset.select(range(min(n, len(dataset))))
    first = list(head["text"])
    texts = [first[i % len(first)] for i in range(n)]
    pairs = None
    if "text_pair" in dataset.column_names:
        first_pairs = list(head["text_pair"])
        pairs = [first_pairs[i % len(first_pairs)] for i in range(n)]
    return texts, pairs


def texts_fingerprint(texts: Sequence[str], text_pairs: Sequence[str] | None) -> str:
    """SHA-256 of the latency inputs (recorded so reports can show every model saw the same)."""
    payload = json.dumps([list(texts), list(text_pairs) if text_pairs is not None else None])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def summarize(
    samples_ns: Sequence[int], *, batch_size: int, sequence_length: int
) -> dict[str, Any]:
    """Percentiles of per-call wall times.

    :param samples_ns: one wall time per timed call, in nanoseconds.
    :param batch_size: sequences per call.
    :param sequence_length: tokens per sequence.
    :returns: ``{"batch_size", "sequence_length", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
        "throughput_seq_per_s", "runs"}``; percentiles use numpy's linear interpolation;
        throughput is ``batch_size / median seconds``.
    """
    import numpy as np

    if len(samples_ns) == 0:
        raise ValueError("no timing samples")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99], method="linear")
    return {
        "batch_size": batch_size,
        "sequence_length": sequence_length,
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "throughput_seq_per_s": float(batch_size / (p50 / 1e3)) if p50 > 0 else float("inf"),
        "runs": int(len(ms)),
    }


def time_calls(
    fn: Any,
    *,
    warmup: int,
    min_runs: int,
    max_runs: int,
    min_time_s: float,
    progress: bool = False,
    desc: str = "latency",
) -> list[int]:
    """Call ``fn()`` ``warmup`` times untimed, then time calls with ``perf_counter_ns``.

    Timing stops once both ``min_runs`` calls and ``min_time_s`` seconds of timed calls are
    reached, or at ``max_runs`` calls. The garbage collector is paused while timing.

    :returns: wall time of each timed call, in nanoseconds.
    """
    from tqdm.auto import tqdm

    for _ in range(warmup):
        fn()
    samples: list[int] = []
    min_time_ns = int(min_time_s * 1e9)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with tqdm(total=max_runs, desc=desc, unit="call", disable=not progress, leave=False) as bar:
            elapsed = 0
            while len(samples) < max_runs:
                t0 = time.perf_counter_ns()
                fn()
                t1 = time.perf_counter_ns()
                samples.append(t1 - t0)
                elapsed += t1 - t0
                bar.update(1)
                if len(samples) >= min_runs and elapsed >= min_time_ns:
                    break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def measure_latency(
    backend: "Backend",
    texts: list[str],
    text_pairs: list[str] | None,
    settings: "EvaluationSettings",
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Time forward calls of ``backend`` at each of ``settings.batch_sizes``.

    Batch ``b`` holds ``texts[:b]`` (and ``text_pairs[:b]``), tokenised with padding and
    truncation to exactly ``settings.sequence_length`` tokens; tokenisation is not timed.

    :param backend: the loaded model.
    :param texts: at least ``max(settings.batch_sizes)`` texts (see :func:`latency_texts`).
    :param text_pairs: second sequences, or ``None``.
    :param settings: batch sizes, sequence length, warm-up and run counts.
    :param progress: show a progress bar per batch size.
    :returns: one :func:`summarize` dict per batch size, in ``settings.batch_sizes`` order.
    :raises CompressorError: if ``sequence_length`` exceeds what the model accepts.
    """
    length = settings.sequence_length
    out = []
    for bs in settings.batch_sizes:
        batch = encode_latency_batch(backend, texts, text_pairs, bs, length)
        samples = time_calls(
            lambda: backend.run(batch),
            warmup=settings.warmup,
            min_runs=settings.min_runs,
            max_runs=settings.max_runs,
            min_time_s=settings.min_time_s,
            progress=progress,
            desc=f"latency bs{bs}",
        )
        out.append(summarize(samples, batch_size=bs, sequence_length=length))
    return out


def time_interleaved(
    fns: Sequence[Any],
    *,
    warmup: int,
    min_runs: int,
    max_runs: int,
    min_time_s: float,
    progress: bool = False,
    desc: str = "latency",
) -> list[list[int]]:
    """Time several callables in interleaved rounds; one timed call of each per round.

    Comparing models timed one after another mixes their speed with whatever else the
    machine did meanwhile; interleaving spreads that load evenly over every model, so their
    ratios stay meaningful on a busy machine. The order alternates every round (forward,
    then reversed) so no model always runs right after the same neighbour.

    Each callable gets ``warmup`` untimed calls first. Rounds continue until every callable
    has ``min_runs`` timed calls and ``min_time_s`` seconds of timed calls of its own, or
    ``max_runs`` rounds. The garbage collector is paused while timing.

    :param fns: zero-argument callables (one forward pass of one model each).
    :returns: per callable, the wall time of each timed call in nanoseconds.
    """
    from tqdm.auto import tqdm

    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[int]] = [[] for _ in fns]
    elapsed = [0] * len(fns)
    min_time_ns = int(min_time_s * 1e9)
    order = list(range(len(fns)))
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with tqdm(total=max_runs, desc=desc, unit="round", disable=not progress, leave=False) as bar:
            for round_index in range(max_runs):
                for i in order if round_index % 2 == 0 else reversed(order):
                    t0 = time.perf_counter_ns()
                    fns[i]()
                    t1 = time.perf_counter_ns()
                    samples[i].append(t1 - t0)
                    elapsed[i] += t1 - t0
                bar.update(1)
                if round_index + 1 >= min_runs and min(elapsed) >= min_time_ns:
                    break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def encode_latency_batch(backend: "Backend", texts: list[str], text_pairs: list[str] | None, batch_size: int, length: int) -> Any:
    """Tokenise the first ``batch_size`` latency texts to exactly ``length`` tokens.

    :raises CompressorError: if ``length`` exceeds the model's limit, or the tokenizer
        does not pad to ``length``.
    """
    limit = backend.max_positions()
    if limit is not None and length > limit:
        raise CompressorError(
            f"latency sequence_length {length} exceeds the model's maximum of {limit} tokens",
            key="evaluation.sequence_length",
            hint=f"set evaluation.sequence_length to at most {limit}",
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
    return batch


def measure_latency_interleaved(
    backends: Sequence["Backend"],
    texts: list[str],
    text_pairs: list[str] | None,
    settings: "EvaluationSettings",
    *,
    progress: bool = True,
) -> list[list[dict[str, Any]]]:
    """Like :func:`measure_latency` for several models at once, timed in interleaved rounds.

    :returns: per backend, one :func:`summarize` dict per batch size.
    """
    length = settings.sequence_length
    out: list[list[dict[str, Any]]] = [[] for _ in backends]
    for bs in settings.batch_sizes:
        batches = [encode_latency_batch(b, texts, text_pairs, bs, length) for b in backends]
        fns = [(lambda b=b, x=x: b.run(x)) for b, x in zip(backends, batches)]
        per_model = time_interleaved(
            fns,
            warmup=settings.warmup,
            min_runs=settings.min_runs,
            max_runs=settings.max_runs,
            min_time_s=settings.min_time_s,
            progress=progress,
            desc=f"latency bs{bs} ({len(backends)} models interleaved)",
        )
        for i, samples in enumerate(per_model):
            out[i].append(summarize(samples, batch_size=bs, sequence_length=length))
    return out
