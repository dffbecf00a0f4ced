"""Evaluator settings: the recipe's ``evaluation:`` section.

Every model of a run is evaluated with the same :class:`EvaluationSettings`, so accuracy,
size and latency are comparable across the models of one report.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class EvaluationSettings(BaseModel):
    """How every model of a run is evaluated (accuracy, size, latency).

    Latency is timed per batch size: ``warmup`` untimed calls, then timed calls until both
    ``min_runs`` calls and ``min_time_s`` seconds are reached, or ``max_runs`` calls.
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
        description="Tokens per latency input: every input is padded or truncated to exactly "
        "this length.",
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
    device: Literal["cpu"] = Field(
        "cpu", description="Device the models run on (only 'cpu' for now)."
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

    @model_validator(mode="after")
    def _runs_ok(self) -> "EvaluationSettings":
        if self.min_runs > self.max_runs:
            raise ValueError(
                f"min_runs ({self.min_runs}) must not exceed max_runs ({self.max_runs})"
            )
        return self
