"""Typed errors. Every user-facing error carries where it happened and what to do.

The CLI turns :class:`CompressorError` (and subclasses) into one message and exit status 2,
except :class:`StageFailed` (a stage crashed: exit status 1, with the saved traceback's
path); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path


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


class StageFailed(CompressorError):
    """A stage's strategy crashed: it raised an exception that is not a
    :class:`CompressorError` (a bug, an out-of-memory error, a failed download, ...).

    Raised by the orchestrator ``from`` the original exception, which stays reachable as
    ``__cause__`` (and :attr:`error`) with its own type. The run's manifest records the
    failure and the earlier stages' artifacts are kept for ``--resume``. A
    :class:`CompressorError` raised by a strategy (bad input, :class:`HardwareUnsupported`)
    is not wrapped: it ends the run as itself.

    :param stage: the stage's name.
    :param index: the stage's 1-based position among the recipe's stages.
    :param strategy: the stage's strategy name.
    :param run_dir: the run directory (:class:`pathlib.Path`).
    :param traceback_path: the file holding the original exception's full traceback.
    :param error: the original exception.
    """

    def __init__(
        self,
        stage: str,
        index: int,
        *,
        strategy: str,
        run_dir: Path,
        traceback_path: Path,
        error: BaseException,
    ) -> None:
        self.stage = stage
        self.index = index
        self.strategy = strategy
        self.run_dir = run_dir
        self.traceback_path = traceback_path
        self.error = error
        super().__init__(
            f"stage {stage!r} failed: {type(error).__name__}: {error}",
            hint=f"earlier stages are kept in {run_dir}; fix the cause and rerun with --resume",
        )

    def format(self) -> str:
        """The message, then the traceback file and the hint, one per line."""
        lines = [self.message]
        if getattr(self, "traceback_path", None) is not None:
            lines.append(f"  traceback: {self.traceback_path}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def __reduce__(self) -> tuple:
        # keyword-only arguments: rebuild from the attributes (pickling, multiprocessing)
        return (_stage_failed, (self.stage, self.index, self.strategy, self.run_dir, self.traceback_path, self.error))


def _stage_failed(
    stage: str, index: int, strategy: str, run_dir: Path, traceback_path: Path, error: BaseException
) -> StageFailed:
    exc = StageFailed(stage, index, strategy=strategy, run_dir=run_dir, traceback_path=traceback_path, error=error)
    exc.__cause__ = error
    return exc
