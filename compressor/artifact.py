"""An artifact: a model directory on disk plus its lineage.

The directory is in Hugging Face layout (``config.json``, ``model.safetensors`` and the
tokenizer files, or ``model.onnx`` for ONNX artifacts), so
``AutoModelForSequenceClassification.from_pretrained(path)`` or
``onnxruntime.InferenceSession(path / "model.onnx")`` loads it as is. The lineage lives
beside the model in ``lineage.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LINEAGE_FILE = "lineage.json"

#: The format of a model folder that is not a compressor artifact (``save_pretrained``), and
#: of an artifact whose ``lineage.json`` names none.
DEFAULT_FORMAT = "pytorch"

ModelFormat = str
"""An artifact's format: an open string naming how the model is stored and loaded.

The core knows ``"pytorch"`` (``save_pretrained``: safetensors) and ``"onnx"`` (one ``.onnx``
file beside ``config.json`` and the tokenizer, see :mod:`compressor.onnx_export`). A plugin may define its own format (e.g. ``"pytorch-dynamic-int8"``)
and register an evaluation backend that loads it through the ``compressor_register_backends``
hook; strategies name the formats they take in ``Strategy.input_formats``.
"""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary file then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Lineage:
    """Where an artifact came from.

    :param stage: name of the stage that produced it (``"baseline"`` for the input model).
    :param strategy: strategy name, e.g. ``"distill.distilbert"``; ``None`` for the baseline.
    :param parent: name of the artifact it was made from; ``None`` for the baseline.
    :param config: the strategy's validated config, as plain data.
    :param recipe_hash: SHA-256 of the resolved recipe that produced it.
    :param reference: name of the artifact this one should be compared against in reports
        (the teacher for a distilled student, the parent otherwise).
    :param extra: strategy-specific facts (e.g. copied teacher layers), JSON-serialisable.
    """

    stage: str
    strategy: str | None = None
    parent: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    recipe_hash: str | None = None
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summaries(self) -> dict[str, str]:
        """The one-line ``summary`` of each ``extra`` entry that has one (what the stage chose
        and why: int8 settings, saturation check, accuracy control...), by key."""
        return {
            k: v["summary"] for k, v in (self.extra or {}).items()
            if isinstance(v, dict) and isinstance(v.get("summary"), str)
        }


@dataclass
class Artifact:
    """A model on disk plus its lineage.

    :param name: unique name within a run; equals the stage name that produced it.
    :param path: directory holding the model in Hugging Face layout.
    :param format: ``"pytorch"`` (safetensors), ``"onnx"``, or a plugin-defined format
        (see :data:`ModelFormat`).
    :param lineage: provenance, written to ``path / "lineage.json"`` by :meth:`save`.
    """

    name: str
    path: Path
    format: ModelFormat = DEFAULT_FORMAT
    lineage: Lineage = field(default_factory=lambda: Lineage(stage="baseline"))

    def save(self) -> None:
        """Write ``lineage.json`` into the artifact's directory (atomically)."""
        data = {"name": self.name, "format": self.format, "lineage": asdict(self.lineage)}
        write_json_atomic(Path(self.path) / LINEAGE_FILE, data)

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        """Read an artifact directory written by :meth:`save`.

        :raises FileNotFoundError: if ``lineage.json`` is missing.
        """
        path = Path(path)
        data = json.loads((path / LINEAGE_FILE).read_text(encoding="utf-8"))
        return cls(
            name=data["name"],
            path=path,
            format=data.get("format", DEFAULT_FORMAT),
            lineage=Lineage(**data["lineage"]),
        )

    def size_bytes(self) -> int:
        """Bytes on disk of the model weight files (safetensors, bin, onnx, onnx_data)."""
        suffixes = {".safetensors", ".bin", ".onnx", ".onnx_data", ".pt", ".data"}
        return sum(
            p.stat().st_size
            for p in Path(self.path).rglob("*")
            if p.is_file() and (p.suffix in suffixes or p.name.endswith(".onnx_data"))
        )
