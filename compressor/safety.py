"""Refuse model folders that would run code, fetch hub kernels or unpickle when loaded.

Defence in depth around ``from_pretrained``. transformers 4.56.0 to 5.2.x ran code from a
crafted ``config.json`` even with ``trust_remote_code=False`` (CVE-2026-4372; fixed in 5.3,
which ``pyproject.toml`` requires). Whatever the installed version does, a model folder is
refused before anything loads it when one of its files asks for:

- **remote code**: an ``auto_map`` (at any depth) in ``config.json``,
  ``tokenizer_config.json``, ``processor_config.json`` or ``preprocessor_config.json``;
- **internal attention/experts state**: ``_attn_implementation_internal`` or
  ``_experts_implementation_internal``. transformers 5.24 and 5.25 skip these keys when they
  read a config (``PreTrainedConfig.__init__``) and no ``save_pretrained`` writes them, so
  only a crafted file carries them;
- **hub kernels** (transformers 5's ``kernels`` integration,
  ``transformers/integrations/hub_kernels.py``): an ``attn_implementation`` or
  ``_attn_implementation`` (a string, or a dict per sub-config) other than the built-in
  ``eager``, ``sdpa``, ``flex_attention`` and ``paged|eager``. A value of the form
  ``org/repo[@revision][:function]`` (``hub_kernels.is_kernel``) makes the model's
  ``__init__`` download and import that repository's code (``get_kernel``); ``config.json``'s
  ``attn_implementation`` is read into ``config._attn_implementation`` and checked at
  ``__init__`` (``_check_and_adjust_attn_implementation``), so a folder's config alone
  triggers it. The private spelling ``_attn_implementation`` (and
  ``_experts_implementation``) did the same up to transformers 5.24; 5.25 drops it from
  config files like the internal keys (``ignored_keys`` in ``PreTrainedConfig.__init__``),
  but it stays refused, since ``pyproject.toml`` admits every transformers 5 from 5.3
  (:data:`PRIVATE_IMPLEMENTATION_KEYS`). ``flash_attention_2/3/4`` silently become
  ``kernels-community/flash-attn*`` hub kernels when the ``flash_attn`` package is missing
  and ``kernels`` is installed (a dependency of transformers since 5.25). The same applies to an
  ``experts_implementation`` other than ``eager``, ``grouped_mm`` and ``batched_mm``
  (``deepgemm`` and ``sonicmoe`` load ``kernels-community`` code), to the kernel switches
  ``use_kernels``, ``kernel_config`` and ``allow_all_kernels`` (``from_pretrained``
  arguments, never config keys: a folder carrying them asks for kernels), and to a
  ``quantization_config`` (pre-quantised checkpoints: transformers' mxfp4, fp8, nvfp4,
  eetq, metal and gguf integrations fetch hub kernels; compressor starts from float models);
- **pickle-only weights**: ``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ``*.pickle`` or
  ``*.ckpt`` files beside no ``*.safetensors`` file. transformers 5 loads
  ``pytorch_model.bin`` with ``torch.load(weights_only=True)`` (after
  ``check_torch_load_is_safe``: torch >= 2.6), which unpickles only tensors and plain
  containers, but that is still the pickle format.

A recipe that trusts the folder sets ``model.trust_remote_code: true``; the findings are
then logged as a warning and the folder is loaded. :func:`check_model_folder` runs in
:func:`compressor.sources.models.resolve_model` for every model source (built-in or
plugin), after the source returns the folder and before anything loads it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import SourceError

log = logging.getLogger(__name__)

CONFIG_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
)
"""The JSON files of a model folder that ``from_pretrained`` and the auto classes read."""

REMOTE_CODE_KEY = "auto_map"

INTERNAL_KEYS = ("_attn_implementation_internal", "_experts_implementation_internal")

ATTENTION_KEYS = ("attn_implementation", "_attn_implementation")
BUILTIN_ATTENTION = frozenset({"eager", "sdpa", "flex_attention", "paged|eager"})
"""Attention implementations that run torch code shipped with transformers, and nothing else."""

EXPERTS_KEYS = ("experts_implementation", "_experts_implementation")
BUILTIN_EXPERTS = frozenset({"eager", "grouped_mm", "batched_mm"})

PRIVATE_IMPLEMENTATION_KEYS = ("_attn_implementation", "_experts_implementation")
"""Private spellings of the attention and experts keys: transformers 5.3 to 5.24 read them from
a config file as the public keys, 5.25 ignores them; refused for the versions that read them."""

KERNEL_SWITCH_KEYS = ("use_kernels", "kernel_config", "allow_all_kernels")

QUANTIZATION_KEY = "quantization_config"

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Weight-file suffixes of formats that are loaded by unpickling."""

TRUST_KEY = "model.trust_remote_code"
"""The recipe key that opts in to loading a folder this module would refuse."""


@dataclass(frozen=True)
class Finding:
    """One reason to refuse a model folder.

    :param file: the file (or, for weights, the folder) at fault.
    :param key: dotted key path inside the JSON file (``""`` for weight files).
    :param found: what was found, shortened for messages.
    :param why: what loading it would do.
    """

    file: Path
    key: str
    found: str
    why: str

    def describe(self) -> str:
        """One line for messages: file, key, value and consequence."""
        where = f"{self.file}: {self.key} = {self.found}" if self.key else f"{self.file}: {self.found}"
        return f"{where}: {self.why}"


def _short(value: Any, limit: int = 120) -> str:
    """``value`` as JSON, cut to ``limit`` characters."""
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (ValueError, RecursionError):  # too deeply nested to print
        return f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _walk(data: Any) -> Iterator[tuple[str, str, Any]]:
    """``(dotted path, key, value)`` of every key of every object in ``data``, depth first in
    file order (iterative: a deeply nested file cannot exhaust the stack)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        prefix, node = stack.pop()
        children: list[tuple[str, Any]] = []
        if isinstance(node, dict):
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                yield path, str(key), value
                children.append((path, value))
        elif isinstance(node, list):
            children = [(f"{prefix}[{i}]", value) for i, value in enumerate(node)]
        stack.extend(reversed(children))


def _implementation_values(value: Any) -> list[Any]:
    """The implementation names an ``attn_implementation`` value selects (a dict maps
    sub-config names to names)."""
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def _attention_reason(name: Any) -> str | None:
    """Why the attention implementation ``name`` is refused, or ``None`` for a built-in one."""
    if name is None:
        return None
    if not isinstance(name, str):
        return "is not an attention implementation name"
    if name in BUILTIN_ATTENTION:
        return None
    if "/" in name:
        repo = name.split("|")[-1]
        return (
            f"names the hub kernel repository {repo!r}: from_pretrained would download and "
            "import its code (transformers' hub kernels)"
        )
    if name.split("|")[-1].startswith("flash_attention_"):
        return (
            "without the flash_attn package, transformers 5 replaces it with a "
            "kernels-community/flash-attn* hub kernel (downloaded code) when kernels is installed"
        )
    return (
        f"is not a built-in attention ({', '.join(sorted(BUILTIN_ATTENTION))}); "
        "transformers may resolve it through hub kernels"
    )


def _experts_reason(name: Any) -> str | None:
    if name is None or (isinstance(name, str) and name in BUILTIN_EXPERTS):
        return None
    return (
        f"is not a built-in experts implementation ({', '.join(sorted(BUILTIN_EXPERTS))}); "
        "deepgemm, sonicmoe and hub repositories load hub kernels (downloaded code)"
    )


def scan_config(file: Path, data: Any) -> list[Finding]:
    """What in one parsed config file would run code or fetch hub kernels.

    :param file: the file's path, for the findings.
    :param data: its parsed JSON.
    :returns: the findings, in file order.
    """
    found: list[Finding] = []
    for path, key, value in _walk(data):
        shown: Any = value
        why: str | None = None
        if key == REMOTE_CODE_KEY:
            why = "asks for the folder's own Python code (remote code)"
        elif key in INTERNAL_KEYS:
            why = (
                "internal loader state: no save_pretrained writes it, so only a crafted file "
                "carries it (cf. CVE-2026-4372, fixed in transformers 5.3)"
            )
        elif key in ATTENTION_KEYS or key in EXPERTS_KEYS:
            check = _attention_reason if key in ATTENTION_KEYS else _experts_reason
            reasons = [r for r in map(check, _implementation_values(value)) if r]
            why = "; ".join(dict.fromkeys(reasons)) or None
            if why and key in PRIVATE_IMPLEMENTATION_KEYS:
                why += " (transformers 5.3 to 5.24 read this private key; 5.25 ignores it)"
        elif key in KERNEL_SWITCH_KEYS and value not in (None, False, {}):
            why = "asks for transformers' hub kernels (downloaded code)"
        elif key == QUANTIZATION_KEY and value:
            if isinstance(value, dict) and value.get("quant_method"):
                shown = value["quant_method"]
            why = (
                "a pre-quantised checkpoint: transformers' quantizer integrations may fetch hub "
                "kernels (downloaded code); compressor starts from float weights"
            )
        if why:
            key_path = path if len(path) <= 200 else "..." + path[-197:]
            found.append(Finding(file, key_path, _short(shown), why))
    return found


def pickle_weights(folder: Path) -> list[str]:
    """Names of the pickle-format files in ``folder`` (not recursive), sorted."""
    return sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(PICKLE_SUFFIXES)
    )


def scan_model_folder(folder: str | Path) -> list[Finding]:
    """Everything in a model folder that would run code, fetch hub kernels or unpickle.

    Config files that are missing or not valid JSON are skipped: transformers parses them
    with the same ``json`` module, so it fails on them before acting on any key.

    :param folder: a model folder in Hugging Face layout.
    :returns: the findings (empty when the folder is safe to load, or is not a folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found: list[Finding] = []
    for name in CONFIG_FILES:
        file = folder / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            log.debug("not scanning %s: %s", file, exc)
            continue
        found.extend(scan_config(file, data))
    pickles = pickle_weights(folder)
    if pickles and not any(p.is_file() for p in folder.glob("*.safetensors")):
        shown = ", ".join(pickles[:5]) + (f", ... ({len(pickles)} in all)" if len(pickles) > 5 else "")
        found.append(
            Finding(
                folder, "", f"{shown} and no *.safetensors",
                "pickle-only weights: loading them unpickles (transformers 5 uses "
                "torch.load(weights_only=True), which admits only tensors and plain containers, "
                "but it is still the pickle format)",
            )
        )
    return found


def check_model_folder(folder: str | Path, *, trust_remote_code: bool = False) -> list[Finding]:
    """Refuse a model folder that would run code, fetch hub kernels or unpickle when loaded.

    :param folder: the model folder a source resolved.
    :param trust_remote_code: the recipe's ``model.trust_remote_code``; when true the
        findings are logged as a warning instead of refused.
    :returns: the findings (only ever non-empty when ``trust_remote_code`` is true).
    :raises SourceError: (``key="model.trust_remote_code"``, ``where`` = the first file at
        fault) listing each file, key and value found, what loading it would do, and the fix.
    """
    found = scan_model_folder(folder)
    if not found:
        return found
    lines = "\n".join(f"  - {f.describe()}" for f in found)
    if trust_remote_code:
        log.warning(
            "model folder %s is loaded as the recipe trusts it (%s: true):\n%s",
            folder, TRUST_KEY, lines,
        )
        return found
    raise SourceError(
        f"model folder {folder} would run code or unpickle when loaded, and the recipe does not "
        f"trust it:\n{lines}",
        where=str(found[0].file),
        key=TRUST_KEY,
        expected="config files without auto_map, internal or hub-kernel keys, and safetensors weights",
        hint=f"if you trust this folder, set `{TRUST_KEY}: true` in the recipe; otherwise remove "
        "those keys, or convert the weights to safetensors (from_pretrained then save_pretrained, "
        "where you trust the files)",
    )
