"""compressor.distributed: rank bookkeeping between real processes (2, gloo) and alone."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
from pathlib import Path

import pytest

from compressor.distributed import RankFailed, Ranks, exit_status, rank, world_size
from compressor.errors import CompressorError, StageError, StageFailed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(index: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(index), WORLD_SIZE="2", LOCAL_RANK=str(index), LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    seen: dict = {}
    ranks = Ranks.from_environment()
    seen["rank"], seen["size"], seen["main"] = ranks.rank, ranks.size, ranks.is_main
    seen["shared"] = ranks.share({"from": ranks.rank})
    seen["gathered"] = ranks.gather(ranks.rank * 10)
    with ranks.together("a step that works"):
        pass
    try:
        with ranks.together("checking the data"):
            if ranks.rank == 1:
                raise StageError("rank one's data is bad", hint="fix it")
    except BaseException as exc:  # noqa: BLE001 - recorded for the test
        seen["user_error"] = [type(exc).__name__, str(exc), exit_status(exc)]
    try:
        with ranks.together("stage 'int8' (on rank 0)"):
            if ranks.is_main:
                raise RuntimeError("rank zero crashed")
    except BaseException as exc:  # noqa: BLE001
        seen["crash"] = [type(exc).__name__, str(exc), exit_status(exc)]
    ranks.barrier()
    ranks.close()
    Path(out, f"{index}.json").write_text(json.dumps(seen))


def test_two_processes_share_values_and_end_together_with_the_failing_rank_message(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(i, port, str(tmp_path))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    zero, one = (json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2))

    assert (zero["rank"], zero["size"], zero["main"]) == (0, 2, True)
    assert (one["rank"], one["size"], one["main"]) == (1, 2, False)
    assert zero["shared"] == one["shared"] == {"from": 0}
    assert zero["gathered"] == one["gathered"] == [0, 10]

    # rank 1 raised an input error: it keeps its own, rank 0 gets its message and status 2
    assert one["user_error"][0] == "StageError" and one["user_error"][2] == 2
    name, message, status = zero["user_error"]
    assert name == "RankFailed" and status == 2
    assert "rank 1 failed during checking the data" in message
    assert "rank one's data is bad" in message and "fix it" in message

    # rank 0 crashed in a stage the others waited for: they end with its message, status 1
    assert zero["crash"][0] == "RuntimeError"
    name, message, status = one["crash"]
    assert name == "RankFailed" and status == 1
    assert "rank 0 failed during stage 'int8' (on rank 0): RuntimeError: rank zero crashed" in message


def test_one_process_needs_no_launcher(monkeypatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert (world_size(), rank()) == (1, 0)
    ranks = Ranks.from_environment()
    assert (ranks.size, ranks.rank, ranks.is_main) == (1, 0, True)
    assert ranks.share(5) == 5 and ranks.gather("x") == ["x"]
    with pytest.raises(ValueError, match="own"):
        with ranks.together("alone"):
            raise ValueError("my own error")  # no exchange: the error is raised as is


@pytest.mark.parametrize(
    ("env", "match"),
    [({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"), ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
     ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK='-1'"), ({"WORLD_SIZE": "2", "RANK": "2"}, "not below")],
)
def test_a_broken_launcher_environment_is_a_clear_error(monkeypatch, env, match):
    monkeypatch.delenv("RANK", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(CompressorError, match=match):
        Ranks.from_environment()


def test_exit_status_follows_the_failing_process():
    assert exit_status(StageError("x")) == 2
    failed = StageFailed(
        "s", 1, strategy="finetune", run_dir=Path("r"), traceback_path=Path("t"), error=RuntimeError("x")
    )
    assert exit_status(failed) == 1
    assert exit_status(RuntimeError("x")) == 1
    assert exit_status(KeyboardInterrupt()) == 130
    assert exit_status(RankFailed(1, "resolve", "bad recipe", 2)) == 2
