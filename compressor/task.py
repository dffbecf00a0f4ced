"""The task a run is about: its labelled (or raw-text) data, already split.

:class:`TaskData` is what the orchestrator hands to strategies and to the evaluator. Every
split is a :class:`datasets.Dataset` with normalised column names:

- ``text`` (str) and, for text-pair tasks, ``text_pair`` (str);
- ``label`` (int64 class index in ``[0, num_labels)``) for classification tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import datasets

TaskType = str
"""A registered task's name (:mod:`compressor.tasks`): ``"text-classification"``,
``"masked-lm"``, ``"text-regression"``, ``"sentence-embedding"``, ``"token-classification"``,
``"question-answering"`` or a plugin's."""


@dataclass
class TaskData:
    """Resolved data for one run.

    :param type: the task's name (:data:`TaskType`).
    :param splits: ``{"train", "validation", "test"}`` -> :class:`datasets.Dataset` with the
        normalised columns described in the module docstring.
    :param label_names: class names, index = label id (empty for raw text).
    :param has_text_pair: whether a ``text_pair`` column is present.
    :param fingerprint: stable hash of the data content and split (for the manifest).
    :param name: the data set's name as given in the recipe.
    :param options: the task's validated ``task.options`` (its ``Options`` model), or ``None``.
    :param loader: ``loader(name, *, task_type, seed, **caps) -> TaskData``: loads another
        registered data set as this one was loaded
        (:func:`compressor.sources.datasets.load_named_data`); ``None`` when the data was
        built by hand.
    """

    type: TaskType
    splits: dict[str, "datasets.Dataset"]
    label_names: list[str] = field(default_factory=list)
    has_text_pair: bool = False
    fingerprint: str = ""
    name: str = ""
    options: Any = None
    loader: Any = field(default=None, repr=False, compare=False)

    @property
    def task(self) -> Any:
        """The registered :class:`compressor.tasks.Task` of :attr:`type`."""
        from .tasks import get_task

        return get_task(self.type)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> "datasets.Dataset":
        """Return one split.

        :raises KeyError: with the available split names when ``name`` is missing.
        """
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(f"no split {name!r}; available: {sorted(self.splits)}") from None
