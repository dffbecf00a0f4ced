"""The recipe's ``search:`` block (read by ``compressor tune``, :mod:`compressor.tune`): what ``compressor tune`` optimises, under which
constraint, over which space, for how long.

A search block::

    search:
      objective: [{name: latency, batch_size: 1, sequence_length: 128}]
      constraint: {max_loss: 1.0, confidence: 0.95, reference: teacher}
      space:
        student.student_layers: {choices: [2, 3, 4]}
        heads.amount: {low: 0.0, high: 0.5, step: 0.1}
        heads: {optional: true}
        student-int8.per_channel: {choices: [true, false]}
      budget: {trials: 30, time_s: 5400}
      sampler: tpe
      seed: 0

Space keys are ``<stage>.<field>`` (a field of that stage's strategy config, any value its
``Config`` model accepts) or ``<stage>`` with ``{optional: true}`` (the stage may be left
out; the stage after it then starts from the left-out stage's input). The checks that need
the strategies (every stage and field exists, every value validates, the reference does not
change between trials) are :func:`compressor.tune.space.check_search`'s, run by
``compressor validate``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Objectives and whether lower is better.
OBJECTIVES: dict[str, bool] = {"latency": True, "throughput": False, "size": True, "parameters": True}


class Objective(_Strict):
    """One objective of the search.

    ``latency`` (lower) is the candidate's p50 latency *relative to the reference*, both timed
    in interleaved rounds in the same trial (a ratio survives a machine whose speed drifts
    between trials; the report also gives milliseconds); ``throughput`` (higher) is sequences
    per second at that cell, also as a ratio to the reference's; ``size`` (lower) is the
    weight files' bytes; ``parameters`` (lower) the unique parameter elements.
    """

    name: Literal["latency", "throughput", "size", "parameters"] = Field(
        description="latency (p50, lower is better), throughput (higher), size (disk bytes, "
        "lower) or parameters (lower)."
    )
    batch_size: int | None = Field(
        None, ge=1, le=65_536,
        description="Latency/throughput: sequences per call. Unset: the evaluation block's first batch size.",
    )
    sequence_length: int | None = Field(
        None, ge=1, le=8192,
        description="Latency/throughput: tokens per sequence. Unset: the evaluation block's first length.",
    )

    @property
    def lower_is_better(self) -> bool:
        return OBJECTIVES[self.name]


class Constraint(_Strict):
    """What a candidate must keep to pass.

    A candidate passes when the lower bound of the paired bootstrap interval (at
    ``confidence``) of (candidate - reference) on the task's headline metric, in points
    (100 x the metric's fraction), is at or above ``-max_loss``. ``confidence: null``
    compares point values instead (as Olive, Neural Compressor and NNCF do): the report
    labels such a result as uncertified.
    """

    max_loss: float = Field(
        ge=0.0, le=100.0,
        description="Most points of the headline metric (accuracy, entity F1, exact match, "
        "Spearman x100) the candidate may lose against the reference.",
    )
    confidence: float | None = Field(
        0.95, gt=0.5, lt=1.0,
        description="Coverage of the paired interval whose lower bound must be >= -max_loss; "
        "null compares point values (no confidence bound).",
    )
    reference: str = Field(
        "baseline",
        description="The model candidates are compared with: 'baseline' or a stage's name. "
        "Neither it nor any stage it depends on may be in the space.",
    )


class Param(_Strict):
    """One dimension of the space: ``choices``, a range (``low``/``high`` with ``step`` or
    ``log``), or ``optional: true`` for a whole stage."""

    choices: list[Any] | None = Field(None, min_length=1, description="Values to choose from.")
    low: float | None = Field(None, description="Smallest value of a range.")
    high: float | None = Field(None, description="Largest value of a range.")
    step: float | None = Field(None, gt=0, description="Spacing of a range's values (grid sampler: required).")
    log: bool = Field(False, description="Sample a range on a log scale (low > 0; not with step).")
    optional: bool | None = Field(None, description="On a stage (key '<stage>'): the stage may be left out.")

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        kinds = [self.choices is not None, self.low is not None or self.high is not None, self.optional is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of: choices, low and high, or optional: true")
        if kinds[1]:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) is above high ({self.high})")
            if self.log and (self.step is not None or self.low <= 0):
                raise ValueError("log: true needs low > 0 and no step")
        elif self.step is not None or self.log:
            raise ValueError("step and log apply to a range (low and high) only")
        if self.optional is False:
            raise ValueError("optional: false is the default; leave the key out instead")
        return self

    @property
    def is_int(self) -> bool:
        """A range of integers: low, high and step (if any) are whole numbers."""
        parts = [self.low, self.high] + ([self.step] if self.step is not None else [])
        return self.low is not None and all(float(p).is_integer() for p in parts) and not self.log

    def grid(self) -> list[Any]:
        """Every value of the dimension (for the grid sampler).

        :raises ValueError: for a range without ``step``.
        """
        if self.choices is not None:
            return list(self.choices)
        if self.optional:
            return [True, False]
        if self.step is None:
            raise ValueError("the grid sampler needs step on every range")
        count = round((self.high - self.low) / self.step) + 1
        values = [self.low + i * self.step for i in range(count) if self.low + i * self.step <= self.high + 1e-9]
        return [round(v) for v in values] if self.is_int else [round(v, 10) for v in values]


class Budget(_Strict):
    """When the search stops: after ``trials`` finished trials or ``time_s`` seconds of
    search (summed over ``--resume`` sessions), whichever comes first."""

    trials: int | None = Field(20, ge=1, le=100_000, description="Trials to finish (failed and pruned ones count).")
    time_s: float | None = Field(None, gt=0, description="Seconds of search; unset: no time limit.")


class Fidelity(_Strict):
    """Multi-fidelity selection: each candidate is first scored on the first ``subset``
    rows of the selection split; only a candidate whose upper interval bound there can
    still pass is scored on the whole split (and timed)."""

    subset: int | None = Field(
        None, ge=10,
        description="Rows of the selection split in the first, cheap scoring; unset: score "
        "every candidate on the whole split at once.",
    )


class SearchConfig(_Strict):
    """The ``search:`` block read by ``compressor tune`` (``compressor run`` ignores it and
    runs the stages as written)."""

    objective: list[Objective] = Field(
        default_factory=lambda: [Objective(name="latency")],
        min_length=1,
        description="What to optimise: one objective, or several for a Pareto front (the "
        "first one picks the recommended model).",
    )
    constraint: Constraint
    space: dict[str, Param] = Field(min_length=1, description="'<stage>.<field>' or '<stage>' -> dimension.")
    budget: Budget = Field(default_factory=Budget)
    sampler: Literal["tpe", "nsga2", "random", "grid"] = Field(
        "tpe", description="Optuna sampler: tpe, nsga2 (several objectives), random or grid."
    )
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of the sampler.")
    selection_split: str = Field(
        "validation",
        description="Split every candidate is scored on to choose; the evaluation block's "
        "accuracy_split (test) scores only what was chosen. They must differ.",
    )
    fidelity: Fidelity = Field(default_factory=Fidelity)
    candidate: str | None = Field(
        None, description="The stage whose artifact is the candidate; unset: the last stage of each trial."
    )
    enqueue: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Points tried first, before the sampler proposes any (a hand-written "
        "recipe's choices, to compare with): space key -> value; keys left out are sampled.",
    )

    @field_validator("objective", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        """``objective: latency`` or ``[latency, size]`` mean ``[{name: latency}, ...]``."""
        if isinstance(v, (str, dict)):
            v = [v]
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _distinct_objectives(self) -> SearchConfig:
        names = [(o.name, o.batch_size, o.sequence_length) for o in self.objective]
        if len(set(names)) != len(names):
            raise ValueError("an objective is listed twice")
        for i, point in enumerate(self.enqueue):
            unknown = sorted(set(point) - set(self.space))
            if unknown:
                raise ValueError(f"enqueue[{i}] names {unknown}, which are not keys of the space")
        if self.sampler == "grid":
            for key, param in self.space.items():
                if param.low is not None and param.step is None:
                    raise ValueError(f"the grid sampler needs step on every range ({key!r} has none)")
        return self

    @property
    def directions(self) -> list[str]:
        """Optuna's study directions, one per objective."""
        return ["minimize" if o.lower_is_better else "maximize" for o in self.objective]
