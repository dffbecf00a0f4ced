"""Format handlers and inference backends: the only code that knows how a model format is
loaded, saved and run.

Each artifact format has one :class:`Backend` class, its **format handler** (after Olive's
model handlers). Every strategy, the evaluator, the exporter and the model card go through
it; no other module branches on a format name. A handler class owns:

- :meth:`Backend.load_model`: the model as a ``torch.nn.Module`` for a strategy to transform
  or train (formats that are not one refuse with a :class:`~compressor.errors.CompressorError`);
- :meth:`Backend.save_model`: writing such a module back in the format;
- :meth:`Backend.load`: the model plus tokenizer for inference (what the evaluator times);
- :meth:`Backend.size_bytes`: bytes on disk of the weights;
- :meth:`Backend.loading_snippet` and :attr:`Backend.library_name`: the model card's "how to
  load".

The evaluator talks to a :class:`Backend` only: :meth:`Backend.load` it from an artifact,
:meth:`Backend.encode` texts into a backend-native batch, then :meth:`Backend.predict_logits`
(accuracy) or :meth:`Backend.run` (timing). Two backends ship:

- :class:`PyTorchBackend` for ``artifact.format == "pytorch"``
  (``AutoModelForSequenceClassification``, eval mode, ``torch.inference_mode``; CPU or CUDA);
- :class:`OnnxRuntimeBackend` for ``artifact.format == "onnx"``
  (``onnxruntime.InferenceSession`` on ``CPUExecutionProvider`` or
  ``CUDAExecutionProvider``).

Plugins add backends for formats of their own through the ``compressor_register_backends``
hook; :func:`backend_for` finds them.

Where each model is measured is decided by :func:`evaluation_devices`: on CPU always, and
also on CUDA where a CUDA device is usable by the model's runtime (``torch.cuda.is_available()``
for PyTorch, ``CUDAExecutionProvider`` among ``onnxruntime.get_available_providers()`` for
ONNX Runtime) and the backend supports it for that artifact. That decision is plain CPU code,
tested with CUDA availability faked.

Heavy libraries are imported inside methods so that importing this module stays cheap.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import CompressorError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..artifact import Artifact
    from ..tasks import Task

#: Longest input the accuracy pass feeds a model, in tokens (BERT-family limit).
MAX_ACCURACY_LENGTH = 512


class Backend(abc.ABC):
    """A loaded model plus its tokenizer, behind one small interface.

    Subclasses set :attr:`name`, :attr:`formats` and :attr:`devices`, and implement
    :meth:`load`, :meth:`encode`, :meth:`predict_logits`, :meth:`run` and
    :meth:`num_parameters`.

    :param model: the backend's model object.
    :param tokenizer: the artifact's own Hugging Face tokenizer.
    :param config: the model's ``transformers.PretrainedConfig``.
    :param device: ``"cpu"`` or ``"cuda"``: where the model runs.
    """

    #: Name recorded in results (``"pytorch"``, ``"onnxruntime"``).
    name: ClassVar[str]
    #: Artifact formats this backend loads.
    formats: ClassVar[tuple[str, ...]]
    #: ``return_tensors`` value passed to the tokenizer (``"pt"`` or ``"np"``).
    tensor_type: ClassVar[str]
    #: Devices the backend can run on (``"cpu"``, ``"cuda"``); see :meth:`devices_for`.
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: The runtime that executes the model: ``"torch"`` (the process's one OpenMP pool and,
    #: on CUDA, PyTorch's streams) or another name (``"onnxruntime"``). It decides how the
    #: evaluator times and measures the model: models of one shared-pool runtime are timed
    #: interleaved (a PyTorch variant such as dynamic int8 or bf16 interleaved with its fp32
    #: parent), CUDA timing uses CUDA events and CUDA memory is tracked only for ``"torch"``.
    runtime: ClassVar[str] = "torch"
    #: Whether models of this runtime share one thread pool (PyTorch: yes; each ONNX Runtime
    #: session has its own, so two sessions are timed apart like two runtimes).
    shared_thread_pool: ClassVar[bool] = True
    #: The library that loads the format outside compressor (the model card's
    #: ``library_name``).
    library_name: ClassVar[str] = "transformers"

    def __init__(self, model: Any, tokenizer: Any, config: Any, *, device: str = "cpu") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device

    @classmethod
    @abc.abstractmethod
    def load(
        cls, artifact: "Artifact", *, task_type: str, threads: int, device: str = "cpu",
        task: "Task | None" = None,
    ) -> "Backend":
        """Load the artifact's model and tokenizer for inference.

        :param artifact: the model directory to load.
        :param task_type: the task's name.
        :param threads: intra-op CPU threads the backend may use.
        :param device: ``"cpu"`` or ``"cuda"`` (one of :meth:`devices_for`).
        :param task: the task (:class:`compressor.tasks.Task`); its Auto class selects the
            head. ``None``: ``get_task(task_type)`` (the tasks in use, see
            :mod:`compressor.tasks`). The evaluator passes it (:func:`load_backend`); a
            backend whose ``load`` does not take it is called without it.
        :raises CompressorError: if the directory cannot be loaded, or the device is not
            usable.
        """

    @classmethod
    def load_model(cls, artifact: "Artifact", auto_class: Any, **kwargs: Any) -> Any:
        """The artifact's model as a ``torch.nn.Module`` that a strategy can transform.

        Default: refused; formats that hold a PyTorch model override it.

        :param artifact: the model to load.
        :param auto_class: a transformers auto class or model class (the task's head).
        :param kwargs: loader options (``dtype``, ``attn_implementation``, label overrides,
            ``output_loading_info``; see :func:`compressor.structure.load_pretrained`).
        :raises CompressorError: when the format holds no PyTorch model, or the folder cannot
            be loaded.
        """
        raise CompressorError(
            f"{artifact.name!r} is a {artifact.format!r} model; it cannot be loaded as a PyTorch module",
            expected="a PyTorch model (format 'pytorch')",
            hint="put this stage before the stage that converts the model to "
            f"{artifact.format!r}",
        )

    @classmethod
    def save_model(cls, model: Any, path: str | Path, tokenizer: Any = None) -> None:
        """Write ``model`` (a ``torch.nn.Module``) and its tokenizer to ``path`` in this
        format, so that :meth:`load_model` and :meth:`load` read it back.

        :raises CompressorError: for a format that cannot be written from a module.
        """
        raise CompressorError(f"the {cls.name} backend cannot write a PyTorch module")

    @classmethod
    def size_bytes(cls, artifact: "Artifact") -> int:
        """Bytes on disk of the model's weight files (default: :meth:`Artifact.size_bytes`)."""
        return artifact.size_bytes()

    @classmethod
    def devices_for(cls, artifact: "Artifact") -> tuple[str, ...]:
        """Devices this backend can run ``artifact`` on (default: :attr:`devices`).

        A backend whose support depends on the artifact (an fp16 model that only runs well on
        CUDA, say) overrides this; it must not import heavy libraries or touch a GPU.
        """
        return tuple(cls.devices)

    @classmethod
    def cuda_usable(cls) -> bool:
        """Whether this backend's runtime can use a CUDA device on this machine.

        Default: ``torch.cuda.is_available()``. Tests replace it to fake a GPU.
        """
        return torch_cuda_available()

    def to_device(self, batch: Any) -> Any:
        """Move an encoded batch to :attr:`device` (identity for host-memory runtimes)."""
        return batch

    @abc.abstractmethod
    def predict_logits(self, batch: Any) -> "np.ndarray":
        """Logits for one encoded batch.

        :param batch: output of :meth:`encode`.
        :returns: float32 array of shape ``(batch_size, num_labels)``.
        """

    def predict_outputs(self, batch: Any) -> dict[str, "np.ndarray"]:
        """Every named output of one forward call, as float32 numpy arrays.

        What tasks score (:meth:`compressor.tasks.Task.score`): ``logits`` for
        classification, regression and token classification, ``start_logits`` and
        ``end_logits`` for question answering, ``last_hidden_state`` for embeddings.
        Default: ``{"logits": predict_logits(batch)}``.
        """
        return {"logits": self.predict_logits(batch)}

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
        """Longest input in tokens the model accepts (from its config and tokenizer), if known
        (:func:`compressor.onnx_export.max_input_length`)."""
        from ..onnx_export import max_input_length

        return max_input_length(self.config, self.tokenizer)

    def accuracy_max_length(self) -> int:
        """Truncation length of the accuracy pass: the model's limit, at most 512 tokens."""
        limit = self.max_positions()
        return min(MAX_ACCURACY_LENGTH, limit) if limit else MAX_ACCURACY_LENGTH

    def version(self) -> str | None:
        """Version of the runtime library (for the results)."""
        return None

    def precision(self) -> str:
        """The numeric precision the model computes its matrix products in (``"int8"``,
        ``"fp16"``, ``"bf16"``, ``"fp32"``): the evaluator compares achieved GFLOP/s with the
        machine's peak in that precision. Default: from the PyTorch model's modules and
        weights (:func:`compressor.evaluate.compute.torch_precision`)."""
        from .compute import torch_precision

        return torch_precision(self.model)

    def flops_per_sequence(self, batch: Any, *, sequence_length: int) -> int:
        """FLOPs of one sequence of ``sequence_length`` tokens (matrix products, ``2*M*N*K``).

        :param batch: an encoded batch of one sequence, ``(1, sequence_length)``.
        Default: PyTorch's FLOP counter around one forward call
        (:func:`compressor.evaluate.compute.pytorch_flops`).
        """
        from .compute import pytorch_flops

        return pytorch_flops(self.model, batch)

    @classmethod
    def loading_snippet(cls, artifact: "Artifact", task: Any = None) -> list[str]:
        """Python lines that load this artifact outside compressor (the model card's "How to
        load"); the folder is written ``path/to/this/folder``.

        Each backend knows its format, so each says how to load it; the default loads a
        ``save_pretrained`` folder with transformers, through the task's
        (:class:`compressor.tasks.Task`) own snippet when one is given. A backend that
        does not accept ``task`` is called without it.
        """
        if task is not None:
            return task.loading_snippet()
        return [
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
            'model = AutoModelForSequenceClassification.from_pretrained("path/to/this/folder")',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        ]

    def close(self) -> None:
        """Release the model (drop references so memory can be freed)."""
        self.model = None


def load_tokenizer(path: Path) -> Any:
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
    """PyTorch eager inference of a ``save_pretrained`` directory (safetensors or bin).

    On ``"cuda"`` the model and each batch are moved to the current CUDA device; the latency
    timers synchronise the device around each timed call.
    """

    name = "pytorch"
    formats = ("pytorch",)
    tensor_type = "pt"
    devices = ("cpu", "cuda")

    @classmethod
    def load(
        cls, artifact: "Artifact", *, task_type: str, threads: int, device: str = "cpu",
        task: "Task | None" = None,
    ) -> "PyTorchBackend":
        if task is None:
            from ..tasks import get_task

            task = get_task(task_type)
        model = cls.load_model(artifact, task.auto_class())
        model.eval()
        return cls(model.to(device), load_tokenizer(Path(artifact.path)), model.config, device=device)

    @classmethod
    def load_model(cls, artifact: "Artifact", auto_class: Any, **kwargs: Any) -> Any:
        """``auto_class.from_pretrained(artifact.path)``, or, for a folder with a
        ``compressor_structure.json`` (shapes ``from_pretrained`` cannot rebuild from the
        config: per-layer head counts or FFN widths after pruning),
        :func:`compressor.structure.load_pretrained`, which rebuilds them first.

        :param kwargs: passed to the loader (e.g. ``dtype=torch.float32``).
        :raises CompressorError: if the directory cannot be loaded.
        """
        from ..structure import load_pretrained

        path = Path(artifact.path)
        try:
            return load_pretrained(auto_class, path, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise CompressorError(
                f"cannot load artifact {artifact.name!r} at {path} as "
                f"{getattr(auto_class, '__name__', auto_class)}: {type(exc).__name__}: {exc}",
                hint="the directory must be written by model.save_pretrained(dir)",
            ) from exc

    @classmethod
    def save_model(cls, model: Any, path: str | Path, tokenizer: Any = None) -> None:
        """:func:`compressor.structure.save_pretrained`: safetensors, plus a structure file
        when the module's shapes differ from what its config builds (pruned models)."""
        from ..structure import save_pretrained

        save_pretrained(model, path, tokenizer)

    @classmethod
    def loading_snippet(cls, artifact: "Artifact", task: Any = None) -> list[str]:
        from ..structure import has_structure

        if not has_structure(artifact.path):
            return super().loading_snippet(artifact, task)
        # pruned shapes that plain from_pretrained cannot rebuild from config.json
        auto = task.auto_model if task is not None else "AutoModelForSequenceClassification"
        return [
            f"from transformers import {auto}, AutoTokenizer",
            "from compressor.structure import load_pretrained", "",
            f'model = load_pretrained({auto}, "path/to/this/folder")',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        ]

    def to_device(self, batch: Any) -> Any:
        if self.device == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def predict_logits(self, batch: Any) -> "np.ndarray":
        import torch

        with torch.inference_mode():
            logits = self.model(**self.to_device(batch)).logits
        return logits.float().cpu().numpy()

    def predict_outputs(self, batch: Any) -> dict[str, "np.ndarray"]:
        import torch

        with torch.inference_mode():
            out = self.model(**self.to_device(batch))
        return {
            k: v.float().cpu().numpy() for k, v in out.items() if isinstance(v, torch.Tensor)
        }

    def run(self, batch: Any) -> None:
        import torch

        with torch.inference_mode():
            self.model(**self.to_device(batch))

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
    """ONNX Runtime inference through :class:`onnxruntime.InferenceSession`
    (:func:`compressor.onnx_export.session`).

    The artifact directory must hold exactly one ``*.onnx`` file (plus ``config.json`` and
    the tokenizer), as the ``export.onnx`` and ONNX Runtime quantisation strategies write
    it; the graph returns ``logits``. On ``"cuda"`` the session uses
    ``CUDAExecutionProvider`` without I/O binding, so each call copies its outputs back to
    the host and returns when the GPU work is done.
    """

    #: each session owns its thread pool: timed alone, not interleaved (see
    #: :func:`compressor.evaluate.latency.runtime_groups`)
    shared_thread_pool = False
    runtime = "onnxruntime"

    name = "onnxruntime"
    formats = ("onnx",)
    tensor_type = "np"
    devices = ("cpu", "cuda")
    library_name = "onnx"

    def __init__(
        self, model: Any, tokenizer: Any, config: Any, onnx_path: Path, *, device: str = "cpu"
    ) -> None:
        super().__init__(model, tokenizer, config, device=device)
        self.onnx_path = onnx_path
        self._inputs = [i.name for i in model.get_inputs()]

    @classmethod
    def cuda_usable(cls) -> bool:
        """``CUDAExecutionProvider`` is among ``onnxruntime.get_available_providers()``."""
        return ort_cuda_available()

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
    def load(
        cls, artifact: "Artifact", *, task_type: str, threads: int, device: str = "cpu",
        task: "Task | None" = None,
    ) -> "OnnxRuntimeBackend":
        from transformers import AutoConfig

        from ..onnx_export import session

        path = Path(artifact.path)
        onnx_file = cls.find_onnx_file(path)
        try:
            sess = session(onnx_file, threads=threads, device=device)
        except CompressorError as exc:
            raise CompressorError(
                f"cannot load ONNX model {artifact.name!r}: {exc.message}",
                hint=exc.hint or "export it with the export.onnx strategy",
            ) from exc
        return cls(sess, load_tokenizer(path), AutoConfig.from_pretrained(path), onnx_file, device=device)

    @classmethod
    def loading_snippet(cls, artifact: "Artifact", task: Any = None) -> list[str]:
        return [
            "import onnxruntime",
            "from transformers import AutoTokenizer", "",
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
            'session = onnxruntime.InferenceSession("path/to/this/folder/model.onnx")',
            "names = [i.name for i in session.get_inputs()]",
            'inputs = tokenizer(["some text"], return_tensors="np")',
            "outputs = session.run(None, {k: v for k, v in inputs.items() if k in names})",
            "# outputs[i] is session.get_outputs()[i].name (logits, start_logits, ...)",
        ]

    def precision(self) -> str:
        """From the graph's operators: integer or QDQ nodes are int8
        (:func:`compressor.evaluate.compute.onnx_precision`)."""
        from .compute import onnx_precision

        return onnx_precision(self.onnx_path)

    def flops_per_sequence(self, batch: Any, *, sequence_length: int) -> int:
        """The graph counted with its inputs fixed to ``(1, sequence_length)``
        (:func:`compressor.evaluate.compute.onnx_flops`); ``batch`` is not needed."""
        from .compute import onnx_flops

        return onnx_flops(self.onnx_path, batch_size=1, sequence_length=sequence_length)

    def predict_logits(self, batch: Any) -> "np.ndarray":
        from ..onnx_export import run_logits

        return run_logits(self.model, batch)

    def predict_outputs(self, batch: Any) -> dict[str, "np.ndarray"]:
        import numpy as np

        names = [o.name for o in self.model.get_outputs()]
        values = self.model.run(names, {k: batch[k] for k in self._inputs if k in batch})
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values)}

    def run(self, batch: Any) -> None:
        self.model.run(None, {k: batch[k] for k in self._inputs if k in batch})

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
"""The core's backend class for each artifact format it knows (``pytorch``, ``onnx``)."""


def torch_cuda_available() -> bool:
    """``torch.cuda.is_available()`` (``False`` when torch is not installed)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def ort_cuda_available() -> bool:
    """Whether ``CUDAExecutionProvider`` is among ONNX Runtime's available providers."""
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def backend_for(
    artifact: "Artifact", registry: Mapping[str, type[Backend]] | None = None
) -> type[Backend]:
    """The backend class that loads ``artifact``.

    :param artifact: the artifact; its ``format`` selects the backend.
    :param registry: format -> backend class, as the plugins registered them through the
        ``compressor_register_backends`` hook (``Plugins.backends``: the core's own backends
        come from its default plugin :mod:`compressor.evaluate.builtin`); the core's
        :data:`BACKENDS` are always known. The evaluator never reaches up to the plugin
        manager: its caller passes the registry.
    :raises CompressorError: for an artifact format no backend handles.
    """
    registry = {**BACKENDS, **(registry or {})}
    if artifact.format in registry:
        return registry[artifact.format]
    raise CompressorError(
        f"no evaluation backend for format {artifact.format!r} of artifact {artifact.name!r}",
        expected=" | ".join(sorted(registry)),
        hint="install the plugin that produced this artifact (it registers the backend "
        "through compressor_register_backends), and pass the plugins' backends "
        "(Plugins.backends) to the evaluator",
    )


def load_backend(
    backend_cls: type[Backend],
    artifact: "Artifact",
    *,
    task: "Task",
    threads: int,
    device: str = "cpu",
) -> Backend:
    """``backend_cls.load`` for ``task``: the task object is passed to a backend whose
    ``load`` takes ``task`` (the core's do), its name alone to one that does not (a plugin's
    written before ``task`` existed, which looks the task up by name).

    :param backend_cls: the artifact's backend (:func:`backend_for`).
    :param task: the run's task (:class:`compressor.tasks.Task`).
    :raises CompressorError: as :meth:`Backend.load`.
    """
    kwargs: dict[str, Any] = {"task_type": task.name, "threads": threads, "device": device}
    if _accepts(backend_cls.load, "task"):
        kwargs["task"] = task
    return backend_cls.load(artifact, **kwargs)


def _accepts(function: Any, name: str) -> bool:
    import inspect

    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def evaluation_devices(
    requested: str,
    backend_cls: type[Backend],
    artifact: "Artifact",
    *,
    cuda_available: bool | None = None,
) -> list[str]:
    """The devices on which one artifact is measured.

    - ``"auto"``: CPU, and also CUDA where the backend's runtime can use a CUDA device
      (:meth:`Backend.cuda_usable`) and the backend runs this artifact there
      (:meth:`Backend.devices_for`); an artifact that runs on CUDA only (an fp16 model)
      is measured on CUDA only;
    - ``"cpu"``: CPU only;
    - ``"cuda"``: CUDA only.

    :param requested: the ``evaluation.device`` setting: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    :param backend_cls: the artifact's backend (:func:`backend_for`).
    :param artifact: the artifact to measure.
    :param cuda_available: whether CUDA is usable; ``None`` asks ``backend_cls.cuda_usable()``.
    :returns: ``["cpu"]``, ``["cuda"]`` or ``["cpu", "cuda"]`` (CPU first).
    :raises CompressorError: for an unknown setting, ``"cuda"`` without a usable CUDA
        device, or an artifact that runs on none of the allowed devices.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise CompressorError(
            f"unknown evaluation device {requested!r}",
            key="evaluation.device",
            expected="auto | cpu | cuda",
        )
    supported = backend_cls.devices_for(artifact)
    wants_cuda = requested in ("auto", "cuda") and "cuda" in supported
    if wants_cuda and cuda_available is None:
        cuda_available = backend_cls.cuda_usable()
    devices = []
    if requested in ("auto", "cpu") and "cpu" in supported:
        devices.append("cpu")
    if wants_cuda and cuda_available:
        devices.append("cuda")
    if requested == "cuda" and "cuda" in supported and not cuda_available:
        raise CompressorError(
            f"evaluation.device is 'cuda' but {backend_cls.name} cannot use a CUDA device here",
            key="evaluation.device",
            hint="use device: auto (CPU, plus CUDA where present) or device: cpu",
        )
    if not devices:
        raise CompressorError(
            f"artifact {artifact.name!r} ({artifact.format}) runs on {list(supported)} with the "
            f"{backend_cls.name} backend, but evaluation.device is {requested!r}"
            + ("" if cuda_available or "cuda" not in supported else " and no CUDA device is usable"),
            key="evaluation.device",
        )
    return devices
