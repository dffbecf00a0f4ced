"""The built-in training strategies register through the plugin manager like third-party ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import compressor_distillation.plugin as distillation_plugin
import compressor_finetune.plugin as finetune_plugin
from compressor.plugins import Plugins
from compressor_distillation import DistilBERTDistillation
from compressor_finetune import FineTune

ROOT = Path(__file__).resolve().parents[2]


def test_plugin_manager_registers_both_strategies() -> None:
    plugins = Plugins().load(
        entry_points_enabled=False,
        extra=[("finetune", finetune_plugin), ("distillation", distillation_plugin)],
    )
    assert plugins.strategy("finetune") is FineTune
    assert plugins.strategy("distill.distilbert") is DistilBERTDistillation
    assert plugins.infos["finetune"].strategies == ["finetune"]
    assert plugins.infos["distillation"].strategies == ["distill.distilbert", "mlm-adapt", "distill.embedding"]  # (#14)


def test_capability_flags() -> None:
    assert FineTune.needs_training_data and not FineTune.needs_teacher
    assert DistilBERTDistillation.needs_training_data and DistilBERTDistillation.needs_teacher
    for cls in (FineTune, DistilBERTDistillation):
        assert cls.input_formats == ("pytorch",) and cls.produces == "pytorch"
        assert cls.supports_task("text-classification") and cls.description
        assert cls.supports_task("token-classification") and cls.supports_task("question-answering")
    # distillation also covers general (masked-LM) distillation; fine-tuning needs labels
    assert DistilBERTDistillation.supports_task("masked-lm") and not FineTune.supports_task("masked-lm")
    assert "distill.embedding" in DistilBERTDistillation.task_refusal("sentence-embedding")


def test_plugin_modules_import_without_torch() -> None:
    code = (
        "import sys; import compressor_finetune.plugin, compressor_distillation.plugin; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
