"""Inference backends: the only code that knows how a model format is loaded and run.

The evaluator talks to a :class:`Backend` only: :meth:`Backend.load` it from an artifact,
:meth:`Backend.encode` texts into a backend-native batch, then :meth:`Backend.predict_logits`
(accuracy) or :meth:`Backend.run` (timing). Two backends ship:

- :class:`PyTorchBackend` for ``artifact.format == "pytorch"``
  (``AutoModelForSequenceClassification``, eval mode, ``torch.inference_mode``);
- :class:`OnnxRuntimeBackend` for ``artifact.format == "onnx"``
  (optimum's ``ORTModelForSequenceClassification`` on ``CPUExecutionProvider``).

Heavy libraries are imported inside methods so that importing this module stays cheap.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import CompressorError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..artifact import Artifact

#: Longest input the accuracy pass feeds a model, in tokens (BERT-family limit).
MAX_ACCURACY_LENGTH = 512

# Model types whose position ids start after the padding index, so that
# ``max_position_embeddings`` is 2 more than the usable length (RoBERTa family, MPNet).
_POSITION_OFFSET_TYPES = {
    "roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text"
}


class Backend(abc.ABC):
    """A loaded model plus its tokenizer, behind one small interface.

    Subclasses set :attr:`name` and :attr:`formats` and implement :meth:`load`,
    :meth:`encode`, :meth:`predict_logits`, :meth:`run` and :meth:`num_parameters`.

    :param model: the backend's model object.
    :param tokenizer: the artifact's own Hugging Face tokenizer.
    :param config: the model's ``transformers.PretrainedConfig``.
    """

    #: Name recorded in results (``"pytorch"``, ``"onnxruntime"``).
    name: ClassVar[str]
    #: Artifact formats this backend loads.
    formats: ClassVar[tuple[str, ...]]
    #: ``return_tensors`` value passed to the tokenizer (``"pt"`` or ``"np"``).
    tensor_type: ClassVar[str]

    def __init__(self, model: Any, tokenizer: Any, config: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    @classmethod
    @abc.abstractmethod
    def load(cls, artifact: "Artifact", *, task_type: str, threads: int) -> "Backend":
        """Load the artifact's model and tokenizer for inference on CPU.

        :param artifact: the model directory to load.
        :param task_type: ``"text-classification"`` or ``"masked-lm"`` (selects the head).
        :param threads: intra-op CPU threads the backend may use.
        :raises CompressorError: if the directory cannot be loaded.
        """

    @abc.abstractmethod
    def predict_logits(self, batch: Any) -> "np.ndarray":
        """Logits for one encoded batch.

        :param batch: output of :meth:`encode`.
        :returns: float32 array of shape ``(batch_size, num_labels)``.
        """

    @abc.abstractmethod
    def run(self, batch: Any) -> None:
        """One forward call on an encoded batch, result discarded (what latency times)."""

    @abc.abstractmethod
    def num_parameters(self) -> int:
        """Number of parameter elements of the model (each shared tensor counted once)."""

    def encode(
        self,
        texts: list[str],
        text_pairs: list[str] | None = None,
        *,
        padding: bool | str,
        max_length: int,
    ) -> Any:
        """Tokenise texts with the artifact's tokenizer into a backend-native batch.

        :param texts: first sequences.
        :param text_pairs: second sequences for text-pair tasks, same length as ``texts``.
        :param padding: ``True`` (pad to the longest in the batch) or ``"max_length"``.
        :param max_length: truncation (and, with ``"max_length"``, padding) length in tokens.
        :returns: a mapping of input names to arrays/tensors of shape ``(batch, tokens)``.
        """
        return self.tokenizer(
            texts,
            text_pairs,
            padding=padding,
            truncation=True,
            max_length=max_length,
            return_tensors=self.tensor_type,
        )

    def max_positions(self) -> int | None:
        """Longest input in tokens the model accepts (from its config and tokenizer), if known."""
        limits: list[int] = []
        mpe = getattr(self.config, "max_position_embeddings", None)
        if isinstance(mpe, int) and mpe > 0:
            offset = 2 if getattr(self.config, "model_type", "") in _POSITION_OFFSET_TYPES else 0
            limits.append(mpe - offset)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            limits.append(tok_max)
        return min(limits) if limits else None

    def accuracy_max_length(self) -> int:
        """Truncation length of the accuracy pass: the model's limit, at most 512 tokens."""
        limit = self.max_positions()
        return min(MAX_ACCURACY_LENGTH, limit) if limit else MAX_ACCURACY_LENGTH

    def version(self) -> str | None:
        """Version of the runtime library (for the results)."""
        return None

    def close(self) -> None:
        """Release the model (drop references so memory can be freed)."""
        self.model = None


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise CompressorError(
            f"cannot load a tokenizer from {path}: {exc}",
            hint="an artifact directory must hold its tokenizer files "
            "(tokenizer.save_pretrained(dir))",
        ) from exc


class PyTorchBackend(Backend):
    """PyTorch eager inference of a ``save_pretrained`` directory (safetensors or bin)."""

    name = "pytorch"
    formats = ("pytorch",)
    tensor_type = "pt"

    @classmethod
    def load(cls, artifact: "Artifact", *, task_type: str, threads: int) -> "PyTorchBackend":
        from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

        masked = task_type == "masked-lm"
        auto = AutoModelForMaskedLM if masked else AutoModelForSequenceClassification
        path = Path(artifact.path)
        try:
            model = auto.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise CompressorError(
                f"cannot load PyTorch model {artifact.name!r} from {path}: {exc}",
                hint="the directory must be written by model.save_pretrained(dir)",
            ) from exc
        model.eval()
        return cls(model, _load_tokenizer(path), model.config)

    def predict_logits(self, batch: Any) -> "np.ndarray":
        import torch

        with torch.inference_mode():
            logits = self.model(**batch).logits
        return logits.float().cpu().numpy()

    def run(self, batch: Any) -> None:
        import torch

        with torch.inference_mode():
            self.model(**batch)

    def num_parameters(self) -> int:
        seen: set[tuple[int, int, tuple[int, ...]]] = set()
        total = 0
        for p in self.model.parameters():  # already skips repeated Parameter objects
            key = (p.data_ptr(), p.storage_offset(), tuple(p.shape))
            if p.data_ptr() != 0 and key in seen:  # tied weights held by two Parameters
                continue
            seen.add(key)
            total += p.numel()
        return total

    def version(self) -> str | None:
        import torch

        return torch.__version__


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime inference (CPU) through optimum's ``ORTModelFor*`` classes.

    The artifact directory must hold exactly one ``*.onnx`` file (plus ``config.json`` and
    the tokenizer), as ``ORTModel*.save_pretrained`` or ``ORTQuantizer.quantize`` write it.
    """

    name = "onnxruntime"
    formats = ("onnx",)
    tensor_type = "np"

    def __init__(self, model: Any, tokenizer: Any, config: Any, onnx_path: Path) -> None:
        super().__init__(model, tokenizer, config)
        self.onnx_path = onnx_path

    @staticmethod
    def find_onnx_file(path: Path) -> Path:
        """The single ``*.onnx`` file of an artifact directory.

        :raises CompressorError: if there is none or more than one.
        """
        files = sorted(Path(path).glob("*.onnx"))
        if len(files) != 1:
            found = ", ".join(f.name for f in files) or "none"
            raise CompressorError(
                f"an ONNX artifact needs exactly one .onnx file in {path}; found {found}",
                hint="keep one model file per artifact directory",
            )
        return files[0]

    @classmethod
    def load(cls, artifact: "Artifact", *, task_type: str, threads: int) -> "OnnxRuntimeBackend":
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForMaskedLM, ORTModelForSequenceClassification

        path = Path(artifact.path)
        onnx_file = cls.find_onnx_file(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        masked = task_type == "masked-lm"
        auto = ORTModelForMaskedLM if masked else ORTModelForSequenceClassification
        try:
            model = auto.from_pretrained(
                path,
                file_name=onnx_file.name,
                provider="CPUExecutionProvider",
                session_options=options,
                use_io_binding=False,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise CompressorError(
                f"cannot load ONNX model {artifact.name!r} from {onnx_file}: {exc}",
                hint="export with optimum (ORTModelForSequenceClassification.from_pretrained("
                "dir, export=True).save_pretrained(out))",
            ) from exc
        return cls(model, _load_tokenizer(path), model.config, onnx_file)

    def _feed(self, batch: Any) -> dict[str, Any]:
        names = set(self.model.input_names)
        return {k: v for k, v in batch.items() if k in names}

    def predict_logits(self, batch: Any) -> "np.ndarray":
        import numpy as np

        logits = self.model(**self._feed(batch)).logits
        return np.asarray(logits, dtype=np.float32)

    def run(self, batch: Any) -> None:
        self.model(**self._feed(batch))

    def num_parameters(self) -> int:
        import onnx

        proto = onnx.load(str(self.onnx_path), load_external_data=False)
        return sum(math.prod(init.dims) for init in proto.graph.initializer)

    def version(self) -> str | None:
        import onnxruntime

        return onnxruntime.__version__


BACKENDS: dict[str, type[Backend]] = {
    fmt: backend for backend in (PyTorchBackend, OnnxRuntimeBackend) for fmt in backend.formats
}
"""Backend class for each artifact format."""


def backend_for(artifact: "Artifact") -> type[Backend]:
    """The backend class that loads ``artifact``.

    :raises CompressorError: for an artifact format no backend handles.
    """
    try:
        return BACKENDS[artifact.format]
    except KeyError:
        raise CompressorError(
            f"no evaluation backend for format {artifact.format!r} of artifact {artifact.name!r}",
            expected=" | ".join(sorted(BACKENDS)),
        ) from None
