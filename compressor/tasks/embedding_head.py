"""A sentence-embedding model's own head: the modules after the transformer in its
sentence-transformers files, read and run with the sentence-transformers library.

A sentence-transformers folder is a Hugging Face model plus a ``modules.json`` listing the
pipeline: module 0 is the ``Transformer`` (token embeddings, the folder itself), then e.g.
``Pooling`` (``1_Pooling/config.json``: mean, CLS, max, mean-sqrt-len, weighted-mean or
last-token pooling), optionally ``Dense`` (``2_Dense/``) and ``Normalize`` (unit L2 norm; its
folder may be absent since it has no parameters). :class:`EmbeddingHead` is that pipeline
without the transformer, so that any backend that yields token embeddings (PyTorch, ONNX
Runtime) gets exactly the sentence embedding ``SentenceTransformer(folder).encode`` would
give (Reimers & Gurevych 2019, "Sentence-BERT"). A folder without ``modules.json`` (a plain
Hugging Face encoder) gets mean pooling over non-padding tokens without normalisation, which
is what sentence-transformers itself does for such a model.

Heavy module (torch, sentence-transformers): import it inside functions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CompressorError

MODULES_FILE = "modules.json"
ST_CONFIG_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
"""Top-level sentence-transformers files carried from a teacher to the models made from it."""

#: module type names (the last component of modules.json ``type``) run after the transformer
SUPPORTED_MODULES = ("Pooling", "Dense", "Normalize", "LayerNorm", "Dropout")


def modules_class(kind: str) -> Any:
    from sentence_transformers.sentence_transformer import modules

    return getattr(modules, kind)


def read_modules(folder: str | Path) -> list[dict[str, Any]] | None:
    """The entries of ``folder/modules.json``, or ``None`` when the folder has none.

    :raises CompressorError: for a file that is not a JSON list of ``{"path", "type"}``
        objects (the message names the file).
    """
    path = Path(folder) / MODULES_FILE
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompressorError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("type"), str) and isinstance(e.get("path", ""), str)
        for e in entries
    ):
        raise CompressorError(
            f"{path}: expected a JSON list of {{'idx', 'name', 'path', 'type'}} objects",
        )
    return entries


def max_seq_length(folder: str | Path) -> int | None:
    """``max_seq_length`` of ``folder/sentence_bert_config.json`` (tokens), if set."""
    path = Path(folder) / "sentence_bert_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


class EmbeddingHead(nn.Module):
    """The sentence-transformers modules that turn token embeddings into a sentence embedding.

    :param modules: sentence-transformers modules (``Pooling`` first), applied in order.
    :param description: a few words for reports (``"mean pooling, normalised"``).
    """

    def __init__(self, modules: list[nn.Module], description: str) -> None:
        super().__init__()
        self.steps = nn.ModuleList(modules)
        self.description = description

    def forward(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings of one batch.

        :param token_embeddings: ``(B, S, H)`` float, the transformer's last hidden states.
        :param attention_mask: ``(B, S)`` int or bool, 1 at real tokens.
        :returns: ``(B, D)`` float (``D = H`` unless a ``Dense`` module maps it).
        """
        features: dict[str, torch.Tensor] = {
            "token_embeddings": token_embeddings,
            "attention_mask": attention_mask.to(torch.long),
        }
        for step in self.steps:
            features = step(features)
        return features["sentence_embedding"]

    @property
    def normalised(self) -> bool:
        """Whether the last step scales embeddings to unit L2 norm."""
        return bool(self.steps) and type(self.steps[-1]).__name__ == "Normalize"

    def embed_numpy(self, token_embeddings: Any, attention_mask: Any) -> Any:
        """:meth:`forward` on numpy arrays (what evaluation backends return).

        :param token_embeddings: float array ``(B, S, H)``.
        :param attention_mask: int array ``(B, S)``.
        :returns: float32 array ``(B, D)``.
        """
        import numpy as np

        with torch.inference_mode():
            out = self(
                torch.from_numpy(np.ascontiguousarray(token_embeddings, dtype=np.float32)),
                torch.from_numpy(np.asarray(attention_mask)),
            )
        return out.float().numpy()


def mean_pooling_head(hidden_size: int) -> EmbeddingHead:
    """Mean pooling over non-padding tokens, no normalisation (a plain encoder's default)."""
    pooling = modules_class("Pooling")(hidden_size, pooling_mode="mean")
    return EmbeddingHead([pooling], "mean pooling (default: no sentence-transformers files)")


def load_head(folder: str | Path, hidden_size: int | None = None) -> EmbeddingHead:
    """The embedding head a model folder defines (see the module docstring).

    :param folder: a sentence-transformers (or plain Hugging Face) model folder.
    :param hidden_size: the transformer's width, for the default mean pooling of a folder
        without ``modules.json`` (read from ``config.json`` when ``None``).
    :returns: the head in eval mode, on CPU.
    :raises CompressorError: for a ``modules.json`` that does not start with the
        transformer, names a module this evaluator cannot run (an ``Asym`` router, a
        ``CLIPModel``...), or whose module folder cannot be loaded; the message names the file.
    """
    folder = Path(folder)
    entries = read_modules(folder)
    if entries is None:
        if hidden_size is None:
            try:
                cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CompressorError(f"{folder}: no modules.json and no readable config.json") from exc
            hidden_size = cfg.get("hidden_size") or cfg.get("dim") or cfg.get("d_model")
        if not isinstance(hidden_size, int):
            raise CompressorError(f"{folder}/config.json gives no hidden size for mean pooling")
        return mean_pooling_head(hidden_size).eval()
    where = folder / MODULES_FILE
    first = entries[0]["type"].rsplit(".", 1)[-1] if entries else ""
    if first != "Transformer":
        raise CompressorError(
            f"{where}: the first module is {first or 'missing'!r}, not the Transformer",
            hint="only transformer encoders followed by pooling, dense and normalisation modules are supported",
        )
    modules: list[nn.Module] = []
    words: list[str] = []
    for i, entry in enumerate(entries[1:], start=1):
        kind = entry["type"].rsplit(".", 1)[-1]
        if kind not in SUPPORTED_MODULES:
            raise CompressorError(
                f"{where}: module {i} is {entry['type']!r}, which the embedding evaluator does not run",
                expected=f"one of {', '.join(SUPPORTED_MODULES)} after the Transformer",
            )
        cls = modules_class(kind)
        sub = entry.get("path", "")
        try:
            if kind in ("Normalize", "Dropout") and not (folder / sub / "config.json").is_file():
                module = cls()
            else:
                module = cls.load(str(folder), subfolder=sub, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - the library raises many types for bad folders
            raise CompressorError(
                f"{where}: cannot load module {i} ({kind}) from {folder / sub}: {type(exc).__name__}: {exc}"
            ) from exc
        modules.append(module)
        if kind == "Pooling":
            mode = module.get_config_dict().get("pooling_mode", "mean")
            mode = "+".join(mode) if isinstance(mode, (list, tuple)) else str(mode)
            words.append(f"{mode} pooling")
        elif kind == "Normalize":
            words.append("normalised")
        else:
            words.append(kind.lower())
    if not modules or type(modules[0]).__name__ != "Pooling":
        raise CompressorError(f"{where}: no Pooling module right after the Transformer")
    return EmbeddingHead(modules, ", ".join(words)).eval()


def copy_sentence_transformers_files(source: str | Path, output: str | Path, *, overwrite: bool = False) -> list[str]:
    """Carry the sentence-transformers files from ``source`` to ``output``.

    Copies ``modules.json``, ``sentence_bert_config.json``, ``config_sentence_transformers.json``
    and every module folder ``modules.json`` names after the transformer (``1_Pooling``,
    ``2_Dense``, ``2_Normalize``...), so that ``SentenceTransformer(output)`` loads the new
    model with its teacher's pooling and normalisation. Existing files are kept unless
    ``overwrite``.

    :returns: the names copied (files and folders), empty when ``source`` has no
        ``modules.json``.
    """
    source, output = Path(source), Path(output)
    entries = read_modules(source)
    if entries is None:
        return []
    copied: list[str] = []
    for name in ST_CONFIG_FILES:
        src, dst = source / name, output / name
        if src.is_file() and (overwrite or not dst.exists()):
            shutil.copy2(src, dst)
            copied.append(name)
    for entry in entries[1:]:
        sub = entry.get("path", "")
        src, dst = source / sub, output / sub
        if sub and src.is_dir() and (overwrite or not dst.exists()):
            shutil.copytree(src, dst, dirs_exist_ok=True)
            copied.append(sub)
    return copied


def add_dense_module(folder: str | Path, linear: nn.Linear) -> str:
    """Insert a ``Dense`` module (identity activation) holding ``linear`` into the pipeline of
    ``folder``, right after ``Pooling``: a student narrower than its teacher then outputs
    embeddings of the teacher's width, in the teacher's space.

    :param folder: a folder with ``modules.json`` (already carried from the teacher).
    :param linear: the learned projection ``(D_student -> D_teacher)``.
    :returns: the new module's folder name (e.g. ``"2_Dense"``).
    :raises CompressorError: when ``folder`` has no ``modules.json`` or no ``Pooling``.
    """
    folder = Path(folder)
    entries = read_modules(folder)
    if entries is None:
        raise CompressorError(f"{folder}: no modules.json to add a Dense module to")
    kinds = [e["type"].rsplit(".", 1)[-1] for e in entries]
    if "Pooling" not in kinds:
        raise CompressorError(f"{folder / MODULES_FILE}: no Pooling module")
    at = kinds.index("Pooling") + 1
    dense = modules_class("Dense")(
        linear.in_features, linear.out_features, bias=linear.bias is not None,
        activation_function=nn.Identity(),
        init_weight=linear.weight.detach().float().cpu().clone(),
        init_bias=linear.bias.detach().float().cpu().clone() if linear.bias is not None else None,
    )
    sub = f"{at}_Dense"
    entries.insert(at, {"idx": at, "name": str(at), "path": sub,
                        "type": "sentence_transformers.sentence_transformer.modules.Dense"})
    renames = []
    for i, entry in enumerate(entries):
        old = entry.get("path", "")
        entry["idx"], entry["name"] = i, str(i)
        if i > at and old and old[0].isdigit() and "_" in old:
            new = f"{i}_{old.split('_', 1)[1]}"
            if new != old:
                renames.append((old, new))
                entry["path"] = new
    for old, new in reversed(renames):  # later modules first: no name is taken twice
        if (folder / old).exists():
            (folder / old).rename(folder / new)
    (folder / sub).mkdir(exist_ok=True)
    dense.save(str(folder / sub))
    (folder / MODULES_FILE).write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return sub
