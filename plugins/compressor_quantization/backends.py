"""Evaluation backends for the PyTorch formats this plugin writes.

Registered through the ``compressor_register_backends`` hook, so the shared evaluator
measures these artifacts like any other. Cheap to import: torch loads inside ``load``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import CompressorError
from compressor.evaluate.backends import PyTorchBackend, load_tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact

FORMAT_DYNAMIC_INT8 = "pytorch-dynamic-int8"
"""A PyTorch model quantised with ``quantize_dynamic``: config, state dict, quantization.json."""

FORMAT_HALF = "pytorch-half"
"""A ``save_pretrained`` folder whose weights are float16 or bfloat16."""

STATE_DICT_FILE = "quantized_model.pt"
QUANTIZATION_FILE = "quantization.json"


class DynamicInt8Backend(PyTorchBackend):
    """Loads a ``pytorch-dynamic-int8`` artifact: the fp32 architecture built from
    ``config.json`` (random weights), ``quantize_dynamic`` applied with the settings in
    ``quantization.json``, then the saved quantised state dict loaded
    (``torch.load(weights_only=True)``, strict). CPU only: PyTorch has no CUDA kernels for
    dynamically quantised Linear layers."""

    name = "pytorch-dynamic-int8"
    formats = (FORMAT_DYNAMIC_INT8,)
    devices = ("cpu",)
    library_name = "pytorch"

    @classmethod
    def load_model(cls, artifact: "Artifact", auto_class: Any, **kwargs: Any) -> Any:
        """Refused: a dynamically quantised model cannot be trained or transformed further."""
        return super(PyTorchBackend, cls).load_model(artifact, auto_class, **kwargs)

    @classmethod
    def save_model(cls, model: Any, path: Any, tokenizer: Any = None) -> None:
        """Refused: the quantisation stage writes this format (:func:`.torch_int8.run_dynamic_int8`)."""
        return super(PyTorchBackend, cls).save_model(model, path, tokenizer)

    @classmethod
    def load(
        cls, artifact: "Artifact", *, task_type: str, threads: int, device: str = "cpu"
    ) -> "DynamicInt8Backend":
        from .torch_int8 import load_quantized

        if device != "cpu":
            raise CompressorError(f"{FORMAT_DYNAMIC_INT8} models run on CPU only, not {device!r}")
        model = load_quantized(Path(artifact.path), task_type=task_type)
        return cls(model, load_tokenizer(Path(artifact.path)), model.config, device="cpu")

    @classmethod
    def loading_snippet(cls, artifact: "Artifact", task: Any = None) -> list[str]:
        """Rebuild the quantised model as this backend does (``from_pretrained`` cannot)."""
        auto = task.auto_model if task is not None else "AutoModelForSequenceClassification"
        return [
            "import json, torch",
            f"from transformers import AutoConfig, {auto}, AutoTokenizer", "",
            'folder = "path/to/this/folder"',
            f'settings = json.load(open(f"{{folder}}/{QUANTIZATION_FILE}"))',
            f"model = {auto}.from_config(AutoConfig.from_pretrained(folder)).eval()",
            "qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if settings['per_channel']",
            "           else torch.ao.quantization.default_dynamic_qconfig)",
            "model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)",
            f'model.load_state_dict(torch.load(f"{{folder}}/{STATE_DICT_FILE}", weights_only=True))',
            "tokenizer = AutoTokenizer.from_pretrained(folder)",
        ]

    def num_parameters(self) -> int:
        """Float parameters plus the elements of the packed int8 weights and their biases."""
        from .torch_int8 import count_parameters

        return count_parameters(self.model)


class HalfBackend(PyTorchBackend):
    """Loads a ``pytorch-half`` artifact in its saved dtype (``from_pretrained(dtype="auto")``)
    and runs it in that dtype: bfloat16 on CPU or CUDA, float16 on CUDA only."""

    name = "pytorch-half"
    formats = (FORMAT_HALF,)
    devices = ("cpu", "cuda")

    @staticmethod
    def saved_dtype(path: Path) -> str:
        """The ``torch_dtype`` (or ``dtype``) recorded in the artifact's ``config.json``.

        :raises CompressorError: if it is missing or not a half-precision dtype.
        """
        try:
            cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CompressorError(f"cannot read {path}/config.json: {exc}") from exc
        dtype = cfg.get("torch_dtype") or cfg.get("dtype")
        if dtype not in ("float16", "bfloat16"):
            raise CompressorError(
                f"{FORMAT_HALF} artifact at {path} records dtype {dtype!r}",
                expected="float16 | bfloat16",
            )
        return dtype

    @classmethod
    def devices_for(cls, artifact: "Artifact") -> tuple[str, ...]:
        return ("cuda",) if cls.saved_dtype(Path(artifact.path)) == "float16" else ("cpu", "cuda")

    @classmethod
    def load(
        cls, artifact: "Artifact", *, task_type: str, threads: int, device: str = "cpu"
    ) -> "HalfBackend":
        import torch

        from compressor.tasks import get_task

        dtype = getattr(torch, cls.saved_dtype(Path(artifact.path)))
        model = cls.load_model(artifact, get_task(task_type).auto_class(), dtype=dtype).eval()
        if next(model.parameters()).dtype != dtype:
            raise CompressorError(f"{artifact.name!r} loaded as {next(model.parameters()).dtype}, not {dtype}")
        return cls(model.to(device), load_tokenizer(Path(artifact.path)), model.config, device=device)
