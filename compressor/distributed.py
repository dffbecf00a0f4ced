"""Rank bookkeeping for a run started by a launcher (``accelerate launch``, ``torchrun``,
a multi-node launch): which process this is, waiting for each other, and errors carried
across processes.

A launcher starts N copies of ``compressor run`` with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` in their environment. Training is data-parallel through transformers'
Trainer, hence Accelerate (DDP, or FSDP / DeepSpeed from the user's ``accelerate config``):
no distributed code here beyond this bookkeeping. The orchestrator
(:class:`compressor.pipeline.Run`) uses :class:`Ranks` to let rank 0 alone resolve assets
and write the run directory while the other processes wait, and to end every process with
the failing one's message.

The bookkeeping goes through its own gloo process group with a long timeout
(:data:`WAIT_ENV`, default 24 h): the other processes may wait at a barrier for as long as
rank 0 evaluates, whatever the timeout of the training backend (NCCL's is minutes).

Light module: torch is imported only when the run has more than one process.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import CompressorError, StageFailed

#: Environment variable: seconds the other processes wait at a barrier (default one day).
WAIT_ENV = "COMPRESSOR_DISTRIBUTED_TIMEOUT_S"
DEFAULT_WAIT_S = 24 * 3600

EXIT_USER_ERROR = 2
EXIT_STAGE_FAILED = 1
EXIT_INTERRUPTED = 130


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise CompressorError(
            f"environment variable {name}={raw!r} is not an integer >= {minimum}",
            hint="launch with accelerate launch or torchrun, which set it",
        )
    return value


def world_size() -> int:
    """Processes in the run: ``WORLD_SIZE`` set by the launcher, 1 without one.

    :raises CompressorError: when ``WORLD_SIZE`` is not an integer >= 1.
    """
    return _env_int("WORLD_SIZE", 1, 1)


def rank() -> int:
    """This process's global rank (``RANK``; 0 without a launcher).

    :raises CompressorError: when ``RANK`` is not an integer >= 0.
    """
    return _env_int("RANK", 0, 0)


def launched() -> bool:
    """Whether a launcher started more than one process."""
    return world_size() > 1


def exit_status(exc: BaseException) -> int:
    """The ``compressor`` exit status an exception stands for: 2 for input errors
    (:class:`~compressor.errors.CompressorError`), 1 for crashes, 130 for an interrupt; a
    :class:`RankFailed` takes the failing process's."""
    if isinstance(exc, RankFailed):
        return exc.exit_status
    if isinstance(exc, StageFailed):
        return EXIT_STAGE_FAILED
    if isinstance(getattr(exc, "exit_status", None), int):  # e.g. tune's NothingPasses (3)
        return exc.exit_status
    if isinstance(exc, CompressorError):
        return EXIT_USER_ERROR
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_STAGE_FAILED


def describe(exc: BaseException) -> str:
    """One-line message of an exception: a :class:`CompressorError`'s own format, else
    ``Type: message``."""
    if isinstance(exc, CompressorError):
        return exc.format()
    return f"{type(exc).__name__}: {exc}"


class RankFailed(CompressorError):
    """Another process of the run failed (or ended) during a step; carries its message.

    :ivar failed_rank: the rank that failed, or ``None`` when the process group itself broke
        (a process was killed).
    :ivar step: what the processes were doing (``"resolve"``, ``"stage 'teacher'"``...).
    :ivar exit_status: the failing process's exit status (2 input error, 1 crash).
    """

    def __init__(self, failed_rank: int | None, step: str, message: str, exit_status: int) -> None:
        who = f"rank {failed_rank}" if failed_rank is not None else "another process"
        super().__init__(f"{who} failed during {step}: {message}")
        self.failed_rank = failed_rank
        self.step = step
        self.exit_status = exit_status


class Ranks:
    """The processes of one run.

    With one process (no launcher) every method is immediate and nothing is imported.

    :param size: number of processes.
    :param index: this process's global rank.
    :param group: the bookkeeping process group (gloo), ``None`` with one process.
    """

    def __init__(self, size: int = 1, index: int = 0, group: Any = None) -> None:
        self.size = size
        self.rank = index
        self.group = group

    @classmethod
    def from_environment(cls) -> "Ranks":
        """The processes the launcher started (one when there is no launcher).

        Initialises torch.distributed through Accelerate's :class:`~accelerate.PartialState`
        (NCCL on CUDA, gloo on CPU: the process group the Trainer will use) and a gloo group
        for the bookkeeping.

        :raises CompressorError: when the launcher's environment is inconsistent or the
            process group cannot be set up.
        """
        size = world_size()
        if size == 1:
            return cls()
        index = rank()
        if index >= size:
            raise CompressorError(f"RANK={index} is not below WORLD_SIZE={size}")
        import datetime

        import torch
        import torch.distributed as dist
        from accelerate import PartialState

        try:
            state = PartialState(cpu=not torch.cuda.is_available())
            timeout = datetime.timedelta(seconds=_env_int(WAIT_ENV, DEFAULT_WAIT_S, 1))
            group = dist.new_group(backend="gloo", timeout=timeout)
        except (RuntimeError, ValueError) as exc:
            raise CompressorError(
                f"cannot join the launcher's {size} processes: {exc}",
                hint="launch with 'accelerate launch -m compressor run ...' or "
                "'torchrun --nproc_per_node N -m compressor run ...'",
            ) from exc
        if state.num_processes != size or state.process_index != index:
            raise CompressorError(
                f"Accelerate sees process {state.process_index} of {state.num_processes}, the "
                f"launcher set RANK={index} WORLD_SIZE={size}"
            )
        return cls(size, index, group)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes the run directory."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here.

        :raises RankFailed: when another process ended meanwhile (the group broke).
        """
        if self.size > 1:
            self._collective("a barrier", lambda dist: dist.barrier(group=self.group))

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` (JSON-able or picklable), on every process.

        :raises RankFailed: when another process ended meanwhile.
        """
        if self.size == 1:
            return value
        box = [value if self.is_main else None]
        self._collective(
            "a broadcast", lambda dist: dist.broadcast_object_list(box, src=0, group=self.group)
        )
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, by rank.

        :raises RankFailed: when another process ended meanwhile.
        """
        if self.size == 1:
            return [value]
        out: list[Any] = [None] * self.size
        self._collective("a gather", lambda dist: dist.all_gather_object(out, value, group=self.group))
        return out

    @contextmanager
    def together(self, step: str) -> Iterator[None]:
        """Run a step on every process and end them all if it fails on one.

        Every process must enter the same ``together`` blocks in the same order (code
        that only rank 0 runs goes inside, under ``if ranks.is_main``). On leaving the
        block, the processes exchange how the step went: the process that raised re-raises
        its own exception, the others raise :class:`RankFailed` with its message and exit
        status.

        :param step: what the processes do, for messages (``"resolve"``).
        :raises RankFailed: when the step failed on another process.
        """
        if self.size == 1:
            yield
            return
        try:
            yield
        except BaseException as exc:
            try:
                self.gather((describe(exc), exit_status(exc)))
            except RankFailed:
                pass  # the others are gone already; this process's own error is the one to show
            raise
        reports = self.gather(None)
        for index, report in enumerate(reports):
            if report is not None:
                message, status = report
                raise RankFailed(index, step, message, status)

    def close(self) -> None:
        """Destroy the process groups (at the end of a run; the launcher then exits)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - a broken group at exit needs no second error
                pass

    def _collective(self, what: str, call: Any) -> None:
        import torch.distributed as dist

        try:
            call(dist)
        except (RuntimeError, ValueError, ConnectionError) as exc:  # gloo: peer closed, timeout
            raise RankFailed(None, what, f"the process group broke ({exc})", EXIT_STAGE_FAILED) from exc


def record_for_launcher(message: str, exc: BaseException) -> None:
    """Write this process's error where torchrun's elastic agent (also behind
    ``accelerate launch``) reads it, so its failure summary shows our message.

    The file is the one named by ``TORCHELASTIC_ERROR_FILE``, in the format of
    :meth:`torch.distributed.elastic.multiprocessing.errors.ErrorHandler.record_exception`;
    nothing happens without the variable.
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    data = {
        "message": {
            "message": message,
            "extraInfo": {
                "py_callstack": "".join(traceback.format_exception(exc)),
                "timestamp": str(int(time.time())),
            },
        }
    }
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
    except OSError:
        pass
