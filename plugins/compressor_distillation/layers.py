"""Which teacher layers initialise the student (pure Python, no torch).

Sanh et al. 2019 (DistilBERT) initialise the student "by taking one layer out of two" of the
teacher; the reference script (``scripts/extract_distilbert.py`` of Hugging Face's
distillation example) copied BERT-base layers ``[0, 2, 4, 7, 9, 11]`` into the 6-layer
student. The modes here:

- ``every-other``: layers ``0, 2, 4, ...`` (one out of two from the bottom), the first ``k``
  of them: 12 -> 6 gives ``[0, 2, 4, 6, 8, 10]`` and 6 -> 3 gives ``[0, 2, 4]``. Needs
  ``2k - 1 <= L``.
- ``uniform``: ``round(linspace(0, L - 1, k))`` (halves round up), spread over the whole
  depth, first and last layers included: 12 -> 6 gives ``[0, 2, 4, 7, 9, 11]``, the
  reference script's choice.
- ``first-k``: ``[0, 1, ..., k - 1]``.
- ``explicit``: the ``layers`` list as given (``[0, 2, 4, 7, 9, 11]`` reproduces the
  reference script for any 12-layer teacher).
"""

from __future__ import annotations

import math
from typing import Literal

from compressor.errors import StageError

LayerSelection = Literal["every-other", "first-k", "uniform", "explicit"]

REFERENCE_BERT_BASE_LAYERS = (0, 2, 4, 7, 9, 11)
"""Teacher layers the DistilBERT reference script copied from BERT-base (12 -> 6)."""


def default_student_layers(teacher_layers: int) -> int:
    """Half the teacher's layers, rounded up (12 -> 6, 6 -> 3, 5 -> 3)."""
    return max(1, math.ceil(teacher_layers / 2))


def check_explicit_layers(layers: list[int], student_layers: int | None = None) -> None:
    """Check an explicit layer list without knowing the teacher's depth.

    :param layers: teacher layer indices, one per student layer.
    :param student_layers: the student's depth if the config fixes it.
    :raises ValueError: for an empty list, negative or non-increasing indices, or a length
        other than ``student_layers``.
    """
    if not layers:
        raise ValueError("layers must name at least one teacher layer")
    if any(i < 0 for i in layers):
        raise ValueError(f"layers must be non-negative teacher layer indices, got {layers}")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ValueError(f"layers must be strictly increasing, got {layers}")
    if student_layers is not None and len(layers) != student_layers:
        raise ValueError(
            f"layers has {len(layers)} entries but student_layers is {student_layers}"
        )


def select_layers(
    teacher_layers: int,
    student_layers: int,
    mode: LayerSelection = "every-other",
    layers: list[int] | None = None,
) -> list[int]:
    """Teacher layer indices that initialise student layers ``0 .. student_layers - 1``.

    :param teacher_layers: ``L``, the teacher's number of encoder layers.
    :param student_layers: ``k``, the student's number of encoder layers, ``1 <= k <= L``.
    :param mode: ``"every-other"``, ``"uniform"``, ``"first-k"`` or ``"explicit"`` (see the
        module docstring).
    :param layers: the indices for ``"explicit"``; must be ``None`` otherwise.
    :returns: ``k`` strictly increasing indices in ``[0, L)``; student layer ``i`` is copied
        from teacher layer ``result[i]``.
    :raises StageError: when ``k`` is out of range, ``every-other`` cannot supply ``k``
        layers, or explicit ``layers`` are invalid for this teacher.
    """
    if teacher_layers < 1:
        raise StageError(f"the teacher has {teacher_layers} layers; nothing to copy")
    if not 1 <= student_layers <= teacher_layers:
        raise StageError(
            f"student_layers={student_layers} but the teacher has {teacher_layers} layers",
            key="student_layers",
            expected=f"an integer in [1, {teacher_layers}]",
        )
    k, n = student_layers, teacher_layers
    if mode == "explicit":
        if layers is None:
            raise StageError("layer_selection 'explicit' needs 'layers'", key="layers")
        try:
            check_explicit_layers(list(layers), k)
        except ValueError as exc:
            raise StageError(str(exc), key="layers") from None
        if layers[-1] >= n:
            raise StageError(
                f"layers {list(layers)} name layer {layers[-1]} but the teacher has {n} "
                f"layers (0 .. {n - 1})",
                key="layers",
            )
        return list(layers)
    if layers is not None:
        raise StageError(
            f"'layers' is only used with layer_selection 'explicit', not {mode!r}", key="layers"
        )
    if mode == "every-other":
        if 2 * k - 1 > n:
            raise StageError(
                f"every-other selection cannot take {k} layers from a {n}-layer teacher "
                f"(it needs at least {2 * k - 1})",
                key="layer_selection",
                hint="use 'uniform' or 'first-k', or fewer student_layers",
            )
        return [2 * i for i in range(k)]
    if mode == "first-k":
        return list(range(k))
    if mode == "uniform":
        if k == 1:
            return [0]
        step = (n - 1) / (k - 1)
        return [int(math.floor(i * step + 0.5)) for i in range(k)]
    raise StageError(
        f"unknown layer_selection {mode!r}",
        key="layer_selection",
        expected="'every-other', 'uniform', 'first-k' or 'explicit'",
    )
