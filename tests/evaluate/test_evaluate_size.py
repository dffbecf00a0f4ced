import pytest

from compressor.evaluate import evaluate_artifact


def test_params_and_disk_bytes(make_artifact, task_data, fast_settings):
    from transformers import AutoModelForSequenceClassification

    art = make_artifact(hidden=48, layers=3)
    res = evaluate_artifact(art, task_data, fast_settings.model_copy(update={"latency": False}),
                            progress=False)
    model = AutoModelForSequenceClassification.from_pretrained(art.path)
    safetensors = art.path / "model.safetensors"
    assert res["size"]["params"] == sum(p.numel() for p in model.parameters())
    assert res["size"]["disk_bytes"] == safetensors.stat().st_size
    assert res["size"]["disk_mb"] == pytest.approx(safetensors.stat().st_size / 1e6)


def test_tied_parameters_counted_once():
    import torch

    from compressor.evaluate.backends import PyTorchBackend

    lin = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(lin, torch.nn.Linear(4, 4))
    model[1].weight = lin.weight  # same Parameter object twice
    backend = PyTorchBackend(model, tokenizer=None, config=None)
    assert backend.num_parameters() == 16 + 4 + 4
