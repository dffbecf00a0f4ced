"""The global batch, the throughput options and the training-stage contract, without a launcher
(processes are faked through compressor.distributed.world_size, CPUs through
COMPRESSOR_CPUINFO, CUDA through torch.cuda's probes)."""

from __future__ import annotations

import pytest

from compressor import Strategy, StrategyConfig
from compressor.errors import StageError
from compressor.pipeline import batch_facts, stage_trains
from compressor.strategy import StageContext
from compressor.training import TrainingConfig
from compressor.training import trainer as training

AMX = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16\n"
AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n"


def context(tmp_path, device="cpu") -> StageContext:
    return StageContext(stage_name="s", output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                        data=None, seed=0, progress=False, device=device)


@pytest.mark.parametrize(("batch", "processes", "per_device"), [(32, 1, 32), (32, 2, 16), (32, 4, 8), (6, 3, 2)])
def test_the_recipe_batch_is_split_over_the_processes(batch, processes, per_device):
    assert training.per_device_batch(batch, processes) == per_device


def test_a_batch_the_processes_do_not_divide_is_refused_with_the_nearest_batches():
    with pytest.raises(StageError, match="batch_size 30 does not split evenly over 4 processes") as info:
        training.per_device_batch(30, 4)
    assert "28 or 32" in info.value.format()


def test_training_arguments_take_the_per_process_share(tmp_path, monkeypatch):
    import compressor.distributed as distributed

    config = TrainingConfig(batch_size=32, gradient_accumulation_steps=2)
    args = training.training_arguments(config, context(tmp_path), has_validation=False, seed=0)
    assert args.per_device_train_batch_size == 32
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    args = training.training_arguments(config, context(tmp_path), has_validation=False, seed=0)
    assert args.per_device_train_batch_size == 8 and args.gradient_accumulation_steps == 2
    assert args.average_tokens_across_devices is False
    assert batch_facts(config, 4) == {
        "global_batch": 64, "per_device_batch": 8, "processes": 4, "gradient_accumulation_steps": 2,
    }
    assert batch_facts(StrategyConfig(), 4) is None


def test_throughput_options_reach_the_trainer(tmp_path):
    plain = training.training_arguments(TrainingConfig(), context(tmp_path), has_validation=False, seed=0)
    assert plain.train_sampling_strategy == "random" and plain.dataloader_num_workers == 0
    fast = TrainingConfig(group_by_length=True, dataloader_workers=2)
    args = training.training_arguments(fast, context(tmp_path), has_validation=False, seed=0)
    assert args.train_sampling_strategy == "group_by_length"
    assert args.dataloader_num_workers == 2 and args.dataloader_persistent_workers is True


@pytest.mark.parametrize(("cpuinfo", "expected"), [(AMX, True), (AVX2, False)])
def test_bf16_auto_follows_the_cpu(tmp_path, monkeypatch, cpuinfo, expected):
    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    monkeypatch.setenv("COMPRESSOR_CPUINFO", str(fake))
    config = TrainingConfig(bf16="auto")
    assert training.use_bf16(config, "cpu") is expected
    training.check_device_and_precision(config, "cpu")  # "auto" never refuses
    args = training.training_arguments(config, context(tmp_path), has_validation=False, seed=0)
    assert args.bf16 is expected


def test_bf16_auto_on_a_faked_cuda_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert training.use_bf16(TrainingConfig(bf16="auto"), "cuda") is True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert training.use_bf16(TrainingConfig(bf16="auto"), "cuda") is False
    assert training.use_bf16(TrainingConfig(bf16=False), "cuda") is False


def test_bf16_and_fp16_stay_exclusive_and_bad_values_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exclusive"):
        TrainingConfig(fp16=True, bf16="auto")
    with pytest.raises(ValidationError):
        TrainingConfig(bf16="sometimes")
    with pytest.raises(ValidationError):
        TrainingConfig(dataloader_workers=-1)


def test_stages_that_train_run_on_every_process():
    class Trains(Strategy):
        name = "t.train"
        Config = TrainingConfig

    class Copies(Strategy):
        name = "t.copy"

    class SaysSo(Strategy):
        name = "t.own-loop"
        trains = True

    class SaysNot(Strategy):
        name = "t.no"
        Config = TrainingConfig
        trains = False

    assert [stage_trains(c) for c in (Trains, Copies, SaysSo, SaysNot)] == [True, False, True, False]


def test_built_in_training_strategies_declare_it():
    from compressor.plugins import Plugins

    strategies = Plugins().load(entry_points_enabled=True).strategies
    training_names = {n for n, c in strategies.items() if stage_trains(c)}
    assert {"finetune", "distill.distilbert", "mlm-adapt"} <= training_names
    assert not training_names & {"quantize.dynamic-int8", "quantize.ort-dynamic", "export.onnx"}
