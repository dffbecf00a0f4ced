"""Reload models whose module shapes differ from what their config builds.

Some compressed models cannot be rebuilt by ``from_pretrained`` from ``config.json`` alone:
an FFN pruned to a different width in each layer, attention heads removed from an
architecture whose transformers class has no ``prune_heads``. Such an artifact carries a
**structure file**, ``compressor_structure.json``, next to ``config.json``. It says, for
each module whose shape differs, what to build instead, and which plain attributes to set
(e.g. an attention module's head count)::

    {
      "version": 1,
      "modules": {
        "bert.encoder.layer.0.intermediate.dense":
            {"type": "Linear", "in_features": 384, "out_features": 1075, "bias": true},
        "bert.encoder.layer.0.output.dense":
            {"type": "Linear", "in_features": 1075, "out_features": 384, "bias": true}
      },
      "attributes": {
        "deberta.encoder.layer.0.attention.self": {"num_attention_heads": 8, "all_head_size": 512}
      }
    }

A parameter that is not a Linear's (DeBERTa v1's per-head ``q_bias`` after head pruning) is
described by its dotted path and shape: ``{"type": "Parameter", "shape": [24]}``.

:func:`load_pretrained` builds the model from its config, applies the structure file
(:func:`apply_structure`), then loads the saved weights into it, strictly: every saved
tensor must find a parameter of the same shape. Without a structure file it is exactly
``auto_class.from_pretrained(path)``, except for a head-pruned model saved under
transformers 4 (``config.pruned_heads``), whose shapes are rebuilt from that list. The evaluator's PyTorch backend and the training
strategies load models through it. The file describes shapes and attributes only: it knows
nothing of how the shapes came about, so any strategy (pruning, low-rank...) may write one.

Module paths are those of the saved model class (``model.named_modules()``), i.e. of the
class ``config.architectures[0]`` names; the loader maps them when a different head class
is loaded (``bert.`` prefixed paths work for ``BertModel`` too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CompressorError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

STRUCTURE_FILE = "compressor_structure.json"
"""Name of the structure file inside a model folder."""

STRUCTURE_VERSION = 1

_MODULE_TYPES = ("Linear", "Parameter")


def has_structure(path: str | Path) -> bool:
    """Whether the model folder ``path`` holds a structure file."""
    return (Path(path) / STRUCTURE_FILE).is_file()


def read_structure(path: str | Path) -> dict[str, Any]:
    """Read and check ``path/compressor_structure.json``.

    :returns: ``{"version", "modules", "attributes"}``.
    :raises CompressorError: for an unreadable file, another version, or an entry of an
        unknown module type or without its shape fields.
    """
    file = Path(path) / STRUCTURE_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CompressorError(f"cannot read the structure file {file}: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != STRUCTURE_VERSION:
        raise CompressorError(
            f"unsupported structure file {file}",
            expected=f"a JSON object with version {STRUCTURE_VERSION}",
        )
    modules = data.get("modules") or {}
    for name, spec in modules.items():
        if not isinstance(spec, dict) or spec.get("type") not in _MODULE_TYPES:
            raise CompressorError(
                f"structure file {file}: module {name!r} has an unknown type",
                expected=f"type in {list(_MODULE_TYPES)}",
            )
        if spec["type"] == "Parameter":
            shape = spec.get("shape")
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise CompressorError(f"structure file {file}: parameter {name!r} needs an integer list shape")
            continue
        if not all(isinstance(spec.get(k), int) and spec[k] >= 0 for k in ("in_features", "out_features")):
            raise CompressorError(
                f"structure file {file}: module {name!r} needs integer in_features and out_features"
            )
    return {"version": STRUCTURE_VERSION, "modules": modules, "attributes": data.get("attributes") or {}}


def linear_spec(module: "nn.Linear") -> dict[str, Any]:
    """The structure-file entry describing ``module``'s shape."""
    return {
        "type": "Linear",
        "in_features": int(module.in_features),
        "out_features": int(module.out_features),
        "bias": module.bias is not None,
    }


def write_structure(
    path: str | Path,
    modules: dict[str, "nn.Module"] | None = None,
    attributes: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write (or merge into) ``path/compressor_structure.json``.

    :param path: the model folder (written by ``save_pretrained``).
    :param modules: dotted module path -> module whose shape must be rebuilt
        (:class:`torch.nn.Linear`), or dotted parameter path -> :class:`torch.nn.Parameter`
        of another shape than the config builds (a parameter not of a Linear).
    :param attributes: dotted module path -> ``{attribute: JSON value}`` to set after
        building.
    :returns: the file's path.
    :raises CompressorError: for a module type the loader cannot rebuild.
    """
    from torch import nn

    from .artifact import write_json_atomic

    data = read_structure(path) if has_structure(path) else {"version": STRUCTURE_VERSION, "modules": {}, "attributes": {}}
    for name, module in (modules or {}).items():
        if isinstance(module, nn.Parameter):
            data["modules"][name] = {"type": "Parameter", "shape": list(module.shape)}
            continue
        if not isinstance(module, nn.Linear):
            raise CompressorError(
                f"structure files describe Linear modules only, not {type(module).__name__} ({name})"
            )
        data["modules"][name] = linear_spec(module)
    for name, attrs in (attributes or {}).items():
        data["attributes"].setdefault(name, {}).update(attrs)
    file = Path(path) / STRUCTURE_FILE
    write_json_atomic(file, data)
    return file


def _resolve(model: "nn.Module", name: str) -> str | None:
    """``name`` as a path in ``model``: as is, or without/with the base-model prefix."""
    names = dict(model.named_modules())
    if name in names:
        return name
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and name.startswith(prefix + ".") and name[len(prefix) + 1:] in names:
        return name[len(prefix) + 1:]
    if prefix and f"{prefix}.{name}" in names:
        return f"{prefix}.{name}"
    return None


def apply_structure(model: "nn.Module", structure: dict[str, Any]) -> "nn.Module":
    """Rebuild the modules and set the attributes a structure describes (in place).

    New modules keep the dtype and device of the modules they replace; their weights are
    uninitialised until the saved state dict is loaded.

    :param model: a model freshly built from its config.
    :param structure: as :func:`read_structure` returns it.
    :returns: ``model``.
    :raises CompressorError: when a named module does not exist in ``model``.
    """
    import torch
    from torch import nn

    from .architectures import get_module, set_module

    for name, spec in structure.get("modules", {}).items():
        if spec.get("type") == "Parameter":
            owner_name, _, attr = name.rpartition(".")
            owner_path = _resolve(model, owner_name) if owner_name else ""
            owner = get_module(model, owner_path) if owner_path is not None else None
            old_param = getattr(owner, attr, None) if owner is not None else None
            if not isinstance(old_param, nn.Parameter):
                raise CompressorError(
                    f"structure file names parameter {name!r}, which {type(model).__name__} does not have"
                )
            setattr(owner, attr, nn.Parameter(
                torch.empty(spec["shape"], dtype=old_param.dtype, device=old_param.device),
                requires_grad=old_param.requires_grad,
            ))
            continue
        path = _resolve(model, name)
        if path is None:
            raise CompressorError(
                f"structure file names module {name!r}, which {type(model).__name__} does not have"
            )
        old = get_module(model, path)
        ref = next(old.parameters(), None)
        new = nn.Linear(
            spec["in_features"],
            spec["out_features"],
            bias=bool(spec.get("bias", True)),
            device=ref.device if ref is not None else None,
            dtype=ref.dtype if ref is not None else torch.float32,
        )
        set_module(model, path, new)
    for name, attrs in structure.get("attributes", {}).items():
        path = _resolve(model, name)
        if path is None:
            raise CompressorError(
                f"structure file names module {name!r}, which {type(model).__name__} does not have"
            )
        module = get_module(model, path)
        for attr, value in attrs.items():
            setattr(module, attr, value)
    return model


def _state_dict_files(path: Path) -> list[Path]:
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [path / f for f in sorted(set(weight_map.values()))]
    raise CompressorError(
        f"no model.safetensors (or sharded index) in {path}",
        hint="save the model with save_pretrained(dir, safe_serialization=True)",
    )


def legacy_pruned_heads(path: str | Path) -> dict[int, list[int]]:
    """Heads removed by transformers 4's ``prune_heads``, as ``config.json`` lists them.

    transformers 5 dropped ``prune_heads`` and the ``pruned_heads`` config attribute, so a
    head-pruned model saved under transformers 4 (an artifact of compressor 0.1 on the 4.57
    stack) no longer reloads by ``from_pretrained``; :func:`load_pretrained` rebuilds its
    shapes from this list instead.

    :param path: a model folder.
    :returns: layer index -> original head indices removed; empty when none (or no
        readable ``config.json``).
    """
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    heads = config.get("pruned_heads") if isinstance(config, dict) else None
    if not isinstance(heads, dict):
        return {}
    return {int(layer): sorted(set(hs)) for layer, hs in heads.items() if hs}


def pruned_heads_structure(model: "nn.Module", heads: dict[int, list[int]]) -> dict[str, Any]:
    """The structure (as :func:`read_structure` returns it) of ``model`` with ``heads`` removed.

    Each listed layer's query/key/value (and other per-head) projections have
    ``(num_heads - removed) * head_size`` output features and its attention output
    projection as many input features, which is what transformers 4's ``prune_heads`` left.

    :param model: the model built from the config (all heads present).
    :param heads: layer index -> head indices removed (:func:`legacy_pruned_heads`).
    :raises CompressorError: when a layer index is out of range or every head is removed.
    """
    from .architectures import encoder_layout, get_module, layer_modules

    layout = encoder_layout(model)
    layers = layer_modules(model, layout)
    modules: dict[str, Any] = {}
    attributes: dict[str, dict[str, Any]] = {}
    names = {id(m): n for n, m in model.named_modules()}
    for layer, removed in heads.items():
        if not 0 <= layer < len(layers) or len(removed) >= layout.num_heads:
            raise CompressorError(
                f"config.pruned_heads lists heads {removed} of layer {layer}; the model has "
                f"{len(layers)} layers of {layout.num_heads} heads"
            )
        width = (layout.num_heads - len(removed)) * layout.head_size
        block = layers[layer]
        for rel in layout.head_projections:
            linear = get_module(block, rel)
            modules[names[id(linear)]] = {
                "type": "Linear", "in_features": linear.in_features, "out_features": width,
                "bias": linear.bias is not None,
            }
        out = get_module(block, layout.attn_output)
        modules[names[id(out)]] = {
            "type": "Linear", "in_features": width, "out_features": out.out_features,
            "bias": out.bias is not None,
        }
        attn = get_module(block, layout.attention_module)
        attrs = {
            attr: value
            for attr, value in (
                ("num_attention_heads", layout.num_heads - len(removed)),
                ("all_head_size", width),
            )
            if isinstance(getattr(attn, attr, None), int)
        }
        if attrs:
            attributes[names[id(attn)]] = attrs
    return {"version": STRUCTURE_VERSION, "modules": modules, "attributes": attributes}


def load_pretrained(auto_class: Any, path: str | Path, **kwargs: Any) -> Any:
    """Load a saved model, rebuilding shapes from its structure file when it has one.

    :param auto_class: a transformers auto class (``AutoModelForSequenceClassification``)
        or model class.
    :param path: the model folder.
    :param kwargs: passed to ``from_pretrained`` when there is no structure file. With one,
        only ``dtype`` (a ``torch.dtype`` or ``"auto"``: the saved one), ``attn_implementation``,
        label overrides
        (``num_labels`` must match the saved head; ``id2label``/``label2id`` replace the
        names) and ``output_loading_info`` (returns empty lists: every key was loaded) are
        accepted.
    :returns: the model in eval mode (and the loading info when asked for).
    :raises CompressorError: when a saved tensor has no parameter of the same shape, a
        parameter is left without a saved tensor (tied weights excepted), or the folder
        holds no safetensors weights.
    """
    path = Path(path)
    legacy_heads = legacy_pruned_heads(path)
    if not has_structure(path) and not legacy_heads:
        return auto_class.from_pretrained(path, **kwargs)
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    want_info = bool(kwargs.pop("output_loading_info", False))
    kwargs.pop("ignore_mismatched_sizes", None)
    dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
    build: dict[str, Any] = {}
    if "attn_implementation" in kwargs:
        build["attn_implementation"] = kwargs.pop("attn_implementation")
    config = AutoConfig.from_pretrained(path)
    for key in ("num_labels", "id2label", "label2id"):
        if key in kwargs:
            value = kwargs.pop(key)
            current = getattr(config, key)
            if key == "num_labels" and value != current:
                raise CompressorError(
                    f"model at {path} has a structure file and a {current}-label head; cannot "
                    f"resize it to {value} labels"
                )
            if key != "num_labels" and value is not None:
                setattr(config, key, value)
    if kwargs:
        raise CompressorError(
            f"load_pretrained with a structure file does not take {sorted(kwargs)}"
        )
    if hasattr(auto_class, "from_config"):
        model = auto_class.from_config(config, **build)
    else:  # a concrete model class
        model = auto_class._from_config(config, **build)
    structure = read_structure(path) if has_structure(path) else pruned_heads_structure(model, legacy_heads)
    apply_structure(model, structure)
    state: dict[str, torch.Tensor] = {}
    for file in _state_dict_files(path):
        state.update(load_file(str(file)))
    own = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and not any(k.startswith(prefix + ".") for k in own) and any(
        k.startswith(prefix + ".") for k in state
    ):  # a head model saved, a base model loaded
        state = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    bad = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad:
        raise CompressorError(
            f"saved weights of {path} do not match the shapes its structure file rebuilds: "
            f"{bad[:3]}{'...' if len(bad) > 3 else ''}"
        )
    result = model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    tied = _tied_keys(model)
    missing = [k for k in result.missing_keys if k not in tied]
    if missing:
        raise CompressorError(
            f"no saved weights in {path} for {missing[:5]}{'...' if len(missing) > 5 else ''}"
        )
    model.tie_weights()
    if dtype == "auto":
        dtype = getattr(config, "torch_dtype", None)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if isinstance(dtype, torch.dtype):
        model.to(dtype=dtype)
    model.eval()
    if want_info:
        return model, {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    return model


def _tied_keys(model: Any) -> set[str]:
    """State-dict keys that share storage with an earlier key (tied weights)."""
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    tied: set[str] = set()
    for key, value in model.state_dict(keep_vars=True).items():
        ident = (value.data_ptr(), tuple(value.shape))
        if value.data_ptr() and ident in seen:
            tied.add(key)
        else:
            seen.setdefault(ident, key)
    return tied


_DIFF_SKIP_ATTRS = {"training"}


def structure_diff(model: "nn.Module") -> tuple[dict[str, "nn.Module"], dict[str, dict[str, Any]]]:
    """What differs between ``model`` and a fresh model built from its config.

    The reference is ``type(model)(config)`` built on CPU without weight initialisation
    (transformers' ``no_init_weights``), so it has the shapes ``from_pretrained`` would
    build (heads listed in ``config.pruned_heads`` already removed).

    :returns: ``(modules, attributes)``: Linear modules whose shape differs, by dotted
        path (and parameters of other modules whose shape differs, by dotted parameter
        path), and per module the plain attributes (int, float, bool, str) whose values
        differ; both as :func:`write_structure` takes them.
    :raises CompressorError: when a module whose shape differs is not a Linear layer, or
        when the model's module tree differs from the reference's in another way.
    """
    import copy

    from torch import nn
    from transformers.initialization import no_init_weights

    with no_init_weights():
        ref = type(model)(copy.deepcopy(model.config))
    ref_modules = dict(ref.named_modules())
    modules: dict[str, nn.Module] = {}
    attributes: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        other = ref_modules.get(name)
        if other is None or type(other) is not type(module):
            raise CompressorError(
                f"module {name!r} of {type(model).__name__} is not what its config builds "
                f"({type(module).__name__} vs {type(other).__name__ if other is not None else 'nothing'})",
                hint="a structure file can only describe Linear shapes and plain attributes",
            )
        if isinstance(module, nn.Linear):
            if (module.in_features, module.out_features, module.bias is None) != (
                other.in_features, other.out_features, other.bias is None
            ):
                modules[name] = module
        else:
            ref_params = dict(other.named_parameters(recurse=False))
            for pname, param in module.named_parameters(recurse=False):
                ref_param = ref_params.get(pname)
                if ref_param is not None and tuple(ref_param.shape) != tuple(param.shape):
                    modules[f"{name}.{pname}" if name else pname] = param
        changed = {
            k: v
            for k, v in vars(module).items()
            if not k.startswith("_")
            and k not in _DIFF_SKIP_ATTRS
            and isinstance(v, (int, float, bool, str))
            and vars(other).get(k) != v
        }
        if isinstance(module, nn.Linear):
            changed.pop("in_features", None)
            changed.pop("out_features", None)
        if changed:
            attributes[name] = changed
    return modules, attributes


def save_pretrained(model: "nn.Module", path: str | Path, tokenizer: Any = None) -> Path | None:
    """``model.save_pretrained(path)`` (safetensors), plus a structure file when needed.

    A structure file is written only when :func:`structure_diff` finds shapes or
    attributes that ``from_pretrained`` would not rebuild from the config; a stale one in
    ``path`` is removed otherwise. With a structure file, the weights keep the model's own
    parameter names (``save_original_format=False``: no family's checkpoint renaming or
    re-fusing), which is how :func:`load_pretrained` reads them.

    :param model: a transformers model.
    :param path: the output folder.
    :param tokenizer: saved alongside when given.
    :returns: the structure file's path, or ``None`` when the model reloads without one.
    """
    path = Path(path)
    # a transformers-4 model's removed heads (config.pruned_heads) go into the structure file
    vars(model.config).pop("pruned_heads", None)
    modules, attributes = structure_diff(model)
    # With a structure file the weights are saved under the model's own parameter names:
    # :func:`load_pretrained` loads them into the rebuilt modules as they are. (transformers
    # otherwise reverts a family's weight conversion on save, e.g. GTE's q/k/v back into one
    # fused ``qkv_proj`` that it splits into equal thirds on load, which head-pruned grouped
    # key/value heads would not survive.)
    model.save_pretrained(path, safe_serialization=True, save_original_format=not (modules or attributes))
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    (path / STRUCTURE_FILE).unlink(missing_ok=True)
    if not modules and not attributes:
        return None
    return write_structure(path, modules, attributes)
