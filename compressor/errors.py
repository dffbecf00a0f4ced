"""Typed errors. Every user-facing error carries where it happened and what to do.

The CLI turns :class:`CompressorError` (and subclasses) into one message and exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CompressorError(Exception):
    """Base class for errors caused by user input (recipe, data, model, environment).

    :param message: what went wrong, in plain words.
    :param where: location such as ``recipe.yaml:12`` (file and line), if known.
    :param key: dotted key path inside the recipe, e.g. ``stages[1].config.temperature``.
    :param expected: what would have been valid.
    :param hint: what the user can do about it (e.g. ``did you mean 'temperature'?``).
    """

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        key: str | None = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.where = where
        self.key = key
        self.expected = expected
        self.hint = hint
        super().__init__(self.format())

    def format(self) -> str:
        head = ""
        if self.where:
            head += f"{self.where}: "
        if self.key:
            head += f"{self.key}: "
        lines = [head + self.message]
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class RecipeError(CompressorError):
    """The recipe file is unreadable, malformed, or fails validation."""


class PluginError(CompressorError):
    """A plugin failed to load, or registered something invalid (e.g. a duplicate name)."""


class SourceError(CompressorError):
    """A model or data set cannot be resolved (unknown name, missing file, missing column)."""


class StageError(CompressorError):
    """A stage's strategy could not run on its input (wrong format, missing capability)."""


class HardwareUnsupported(StageError):
    """This strategy cannot run on this machine's hardware (a missing CPU instruction set
    such as AMX-BF16, or no GPU), although the recipe and the input are valid.

    Raise it only for what the hardware lacks, after checking the input, so that a user sees
    input errors first. The conformance kit (:mod:`compressor.testing`) records a test that
    meets it as skipped, with the message as the reason, instead of failed.
    """
