"""The core's task types, registered by a default plugin as the core's data sets are."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .base import Task


@hookimpl
def compressor_register_tasks(register: Callable[["Task"], None]) -> None:
    """Register the built-in tasks."""
    from .classification import TextClassification
    from .embedding import SentenceEmbedding
    from .masked_lm import MaskedLM
    from .question_answering import QuestionAnswering
    from .regression import TextRegression
    from .token_classification import TokenClassification

    register(TextClassification())
    register(MaskedLM())
    register(TokenClassification())
    register(QuestionAnswering())
    register(TextRegression())
    register(SentenceEmbedding())
