import pytest
from pydantic import ValidationError

from compressor.evaluate import EvaluationSettings


def test_defaults():
    s = EvaluationSettings()
    assert s.batch_sizes == [1, 32]
    assert s.sequence_length == 128
    assert s.threads is None
    assert (s.warmup, s.min_runs, s.max_runs, s.min_time_s) == (10, 30, 200, 2.0)
    assert s.accuracy_split == "test" and s.accuracy_batch_size == 64
    assert s.max_eval_samples is None and s.latency is True and s.device == "auto"
    assert s.sequence_lengths is None and s.lengths == [128]
    assert (s.target_rel_ci, s.max_time_s, s.confidence) == (0.02, 30.0, 0.95)
    assert s.memory and s.flops and s.bootstrap_resamples == 2000


def test_sequence_lengths_matrix():
    assert EvaluationSettings(sequence_lengths=[32, 128]).lengths == [32, 128]
    assert EvaluationSettings(sequence_length=64).lengths == [64]
    # both given: they must agree
    assert EvaluationSettings(sequence_length=32, sequence_lengths=[32, 64]).lengths == [32, 64]
    with pytest.raises(ValidationError, match="disagree"):
        EvaluationSettings(sequence_length=16, sequence_lengths=[32, 64])


def test_every_field_is_described():
    for name, field in EvaluationSettings.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"unknown_key": 1},
        {"batch_sizes": []},
        {"batch_sizes": [0, 1]},
        {"batch_sizes": [1, 1]},
        {"sequence_length": 0},
        {"threads": 0},
        {"min_runs": 10, "max_runs": 5},
        {"min_time_s": -1.0},
        {"device": "tpu"},
        {"sequence_lengths": []},
        {"sequence_lengths": [16, 16]},
        {"sequence_lengths": [0]},
        {"target_rel_ci": -0.1},
        {"max_time_s": 0},
        {"confidence": 1.0},
        {"bootstrap_resamples": 10},
        {"max_eval_samples": 0},
    ],
)
def test_invalid(kwargs):
    with pytest.raises(ValidationError):
        EvaluationSettings(**kwargs)
