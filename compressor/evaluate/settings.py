"""Evaluator settings: the recipe's ``evaluation:`` section.

Every model of a run is evaluated with the same :class:`EvaluationSettings`, so accuracy,
size and latency are comparable across the models of one report.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class EvaluationSettings(BaseModel):
    """How every model of a run is evaluated (accuracy, size, latency).

    Latency is timed for every cell of the matrix ``batch_sizes`` x :attr:`lengths`:
    ``warmup`` untimed calls per model, then timed calls (interleaved across models) until
    every model has ``min_runs`` calls and ``min_time_s`` seconds of them *and* the 95%
    confidence interval of its p50 is within ``target_rel_ci`` of the p50; or until
    ``max_runs`` calls or ``max_time_s`` seconds, whichever comes first (the result records
    which rule stopped it). This adaptive rule follows ``torch.utils.benchmark``'s
    ``adaptive_autorange`` (stop when the spread is small relative to the median), with a
    distribution-free confidence interval of the median instead of the IQR.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 32],
        min_length=1,
        description="Batch sizes (sequences per forward call) at which latency is timed.",
    )
    sequence_length: int = Field(
        128,
        ge=1,
        le=8192,
        description="Tokens per latency input: every input is truncated or padded to exactly "
        "this length.",
    )
    latency_inputs: Literal["packed", "padded"] = Field(
        "packed",
        description="How latency inputs are made from the evaluation split: 'packed' joins "
        "consecutive texts until every position up to the sequence length is a real token "
        "(what a 128-token figure means); 'padded' takes one text per input and pads it, "
        "timing mostly padding on short-sentence tasks.",
    )
    sequence_lengths: list[int] | None = Field(
        None,
        min_length=1,
        description="Several latency input lengths (tokens): latency is timed for every batch "
        "size x length. Replaces sequence_length when set; unset means [sequence_length].",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads for inference; unset means the number of physical cores "
        "available to this process. The value used is recorded in the results.",
    )
    warmup: int = Field(10, ge=0, le=10_000, description="Untimed calls per batch size.")
    min_runs: int = Field(30, ge=1, le=100_000, description="Fewest timed calls per batch size.")
    max_runs: int = Field(
        200, ge=1, le=100_000, description="Most timed calls per batch size (a hard cap)."
    )
    min_time_s: float = Field(
        2.0,
        ge=0.0,
        le=3600.0,
        description="Seconds of timed calls per batch size to reach before stopping "
        "(unless max_runs comes first).",
    )
    max_time_s: float = Field(
        30.0,
        gt=0.0,
        le=36_000.0,
        description="Seconds of timed calls per model and latency cell after which timing "
        "stops even if the p50 is not yet stable.",
    )
    latency_passes: int = Field(
        3,
        ge=1,
        le=100,
        description="Passes over the runtimes: models of one runtime are timed interleaved, "
        "runtimes one after another; with several passes the runtimes take turns (PyTorch, "
        "ONNX Runtime, PyTorch, ...), each pass with its own warm-up and 1/passes of the run "
        "and time limits, and every model's samples are pooled. Drift of the machine's speed "
        "then falls on every runtime alike, which steadies cross-runtime speedups.",
    )
    target_rel_ci: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="Stop timing once the 95% confidence interval of every model's p50 is "
        "within this fraction of its p50 (0.02: +-2%); 0 disables the rule (min/max rules "
        "only).",
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description="Confidence level of every interval reported (latency and accuracy).",
    )
    bootstrap_resamples: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Bootstrap resamples for the accuracy intervals and the paired "
        "differences from each model's reference.",
    )
    bootstrap_seed: int = Field(0, ge=0, description="Seed of the bootstrap resampling.")
    memory: bool = Field(
        True,
        description="Measure memory: resident memory added by loading each model and the "
        "peak during one call at the largest batch and length (CPU); peak allocated GPU "
        "memory (CUDA, PyTorch).",
    )
    flops: bool = Field(
        True,
        description="Count FLOPs per sequence for each model and report achieved GFLOP/s "
        "beside the machine's measured matrix-multiply peak for the model's precision.",
    )
    calibration_s: float = Field(
        0.5,
        ge=0.0,
        le=60.0,
        description="Seconds spent measuring the matrix-multiply peak per precision (once "
        "per run, cached in the run directory); 0 skips the calibration.",
    )
    accuracy_split: str = Field(
        "test",
        min_length=1,
        description="Split on which accuracy is measured; its first texts are also the "
        "latency inputs.",
    )
    accuracy_batch_size: int = Field(
        64, ge=1, le=65_536, description="Sequences per batch in the accuracy pass."
    )
    max_eval_samples: int | None = Field(
        None,
        ge=1,
        description="Evaluate accuracy on the first this-many examples only; unset means all.",
    )
    latency: bool = Field(True, description="Time inference (turn off for a quick accuracy run).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where models are measured: 'auto' (CPU, and also CUDA where the model's "
        "runtime can use a GPU), 'cpu', or 'cuda' (an error without a usable GPU). Each "
        "device gets its own result rows, tables and Pareto plot.",
    )

    @field_validator("batch_sizes")
    @classmethod
    def _batch_sizes_ok(cls, v: list[int]) -> list[int]:
        bad = [b for b in v if b < 1 or b > 65_536]
        if bad:
            raise ValueError(f"batch sizes must be between 1 and 65536, got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"batch sizes must be unique, got {v}")
        return v

    @field_validator("sequence_lengths")
    @classmethod
    def _lengths_ok(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        bad = [n for n in v if n < 1 or n > 8192]
        if bad:
            raise ValueError(f"sequence lengths must be between 1 and 8192, got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"sequence lengths must be unique, got {v}")
        return v

    @model_validator(mode="after")
    def _runs_ok(self) -> "EvaluationSettings":
        if self.min_runs > self.max_runs:
            raise ValueError(
                f"min_runs ({self.min_runs}) must not exceed max_runs ({self.max_runs})"
            )
        if (
            self.sequence_lengths is not None
            and "sequence_length" in self.model_fields_set
            and self.sequence_length not in self.sequence_lengths
        ):
            raise ValueError(
                f"sequence_length ({self.sequence_length}) and sequence_lengths "
                f"({self.sequence_lengths}) disagree: set one of them"
            )
        return self

    @property
    def lengths(self) -> list[int]:
        """The latency input lengths in tokens: ``sequence_lengths``, else ``[sequence_length]``."""
        return list(self.sequence_lengths) if self.sequence_lengths else [self.sequence_length]

