"""Load a model with another head than it was saved with, pruned models included (heavy:
torch, transformers).

``from_pretrained`` loads a checkpoint into any head class of its family and lists the
weights it had to initialise (``missing_keys``): a classifier loaded as a masked LM gets a
new MLM head, a 2-label classifier loaded with ``num_labels=3`` a new classification layer.
:func:`compressor.structure.load_pretrained`, which rebuilds the shapes of a model whose
``compressor_structure.json`` says they differ from its config (a pruned model), loads
complete checkpoints only: a parameter without a saved tensor is an error. The teachers and
students of distillation need the ``from_pretrained`` behaviour for pruned models too
(general distillation of a pruned classifier's encoder; ``mlm-adapt`` of a pruned model;
a pruned teacher without a trained head when ``alpha_ce`` is 0), so :func:`load_with_new_weights`
gives it: the model as saved, its encoder moved into a model of the wanted class built with
the same shapes. (Were ``load_pretrained`` to report missing weights as ``from_pretrained``
does, instead of refusing them, this module would reduce to that call.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from compressor.errors import CompressorError, StageError
from compressor.structure import apply_structure, has_structure, linear_spec, load_pretrained, structure_diff

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn
    from transformers import PreTrainedModel

#: ``load_pretrained`` arguments it takes for a model with a structure file (besides the ones
#: it answers itself: ``output_loading_info``, ``ignore_mismatched_sizes``).
STRUCTURED_KWARGS = ("dtype", "torch_dtype", "attn_implementation", "num_labels", "id2label", "label2id")
LABEL_KWARGS = ("num_labels", "id2label", "label2id")


def load_with_new_weights(
    auto_class: Any, path: str | Path, *, what: str, key: str | None = None, **kwargs: Any
) -> tuple["PreTrainedModel", list[str]]:
    """Load ``path`` as ``auto_class``, initialising the weights the checkpoint lacks.

    Without a structure file this is ``auto_class.from_pretrained(path,
    output_loading_info=True, **kwargs)``. With one (a pruned model): the checkpoint is
    loaded through :func:`compressor.structure.load_pretrained`; when it cannot fill
    ``auto_class`` (another head class, another label count), it is loaded as the class it
    was saved as (``config.architectures[0]``), a model of ``auto_class`` is built from the
    config (with the label overrides), given the saved encoder's shapes (its
    :func:`compressor.structure.structure_diff`), and every saved tensor whose name (after
    the base-model prefix is added or removed) and shape match is copied into it, as
    ``from_pretrained(..., ignore_mismatched_sizes=True)`` does; the rest keeps its new
    initialisation (seed it before calling).

    :param auto_class: a transformers auto class or model class.
    :param path: the model folder.
    :param what: the model's name, for messages (``"teacher 'baseline'"``).
    :param key: the config key naming the model, for messages.
    :param kwargs: ``from_pretrained`` arguments (``attn_implementation``, ``num_labels``,
        ``id2label``, ``label2id``, ``problem_type``, ``ignore_mismatched_sizes``...). With a
        structure file, an argument ``load_pretrained`` does not take is dropped when the
        saved config already has that value.
    :returns: ``(model in eval mode, names of newly initialised parameters, sorted)``.
    :raises StageError: when the folder cannot be loaded (the loader's reason), or with a
        structure file, an argument other than the saved config's value that cannot be
        applied.
    """
    path = Path(path)
    kwargs.pop("output_loading_info", None)
    if not has_structure(path):
        try:
            model, info = load_pretrained(auto_class, path, output_loading_info=True, **kwargs)
        except (OSError, ValueError, KeyError, CompressorError) as exc:
            raise _cannot_load(what, path, auto_class, exc, key) from exc
        return model, sorted(info.get("missing_keys", []))

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    kwargs.pop("ignore_mismatched_sizes", None)
    for name in [k for k in kwargs if k not in STRUCTURED_KWARGS]:
        value = kwargs.pop(name)
        if getattr(config, name, None) != value:
            raise StageError(
                f"{what} at {path} has a structure file (a pruned model); it cannot be loaded "
                f"with {name}={value!r} (saved: {getattr(config, name, None)!r})",
                key=key,
            )
    try:
        model, _ = load_pretrained(auto_class, path, output_loading_info=True, **kwargs)
        return model, []
    except CompressorError as exc:  # a weight the checkpoint lacks, or another label count
        first = exc
    saved_class = _saved_class(config)
    if saved_class is None:
        raise _cannot_load(what, path, auto_class, first, key) from first
    build = {k: kwargs.pop(k) for k in ("attn_implementation",) if k in kwargs}
    dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
    try:
        saved = load_pretrained(saved_class, path, **build, **({"dtype": dtype} if dtype is not None else {}))
    except (OSError, ValueError, KeyError, CompressorError) as exc:
        raise _cannot_load(what, path, saved_class, exc, key) from exc
    for name in LABEL_KWARGS:
        if kwargs.get(name) is not None:
            setattr(config, name, kwargs[name])
    if hasattr(auto_class, "from_config"):
        model = auto_class.from_config(config, **build)
    else:  # a concrete model class
        model = auto_class._from_config(config, **build)
    if type(model) is type(saved) and not any(kwargs.get(k) is not None for k in LABEL_KWARGS):
        raise _cannot_load(what, path, auto_class, first, key) from first
    try:
        new = transplant(saved, model)
    except CompressorError as exc:
        raise _cannot_load(what, path, auto_class, exc, key) from exc
    model.to(dtype=next(saved.parameters()).dtype)  # the dtype asked for, or the saved one for "auto"
    model.eval()
    return model, new


def _saved_class(config: Any) -> Any:
    import transformers

    names = getattr(config, "architectures", None) or []
    return getattr(transformers, names[0], None) if names else None


def _cannot_load(what: str, path: Path, auto_class: Any, exc: BaseException, key: str | None) -> StageError:
    reason = exc.message if isinstance(exc, CompressorError) else f"{type(exc).__name__}: {exc}"
    return StageError(
        f"cannot load {what} at {path} as {getattr(auto_class, '__name__', auto_class)}: {reason}",
        key=key,
    )


def renamed_structure(model: "nn.Module", rename: Callable[[str], str | None]) -> dict[str, Any]:
    """``model``'s structure (what :func:`compressor.structure.structure_diff` finds different
    from its config) with every path passed through ``rename``.

    :param model: a model whose shapes may differ from its config's.
    :param rename: module or parameter path in ``model`` -> path in the model the structure
        is for, or ``None`` to leave the entry out.
    :returns: a structure as :func:`compressor.structure.read_structure` returns it
        (``{"version", "modules", "attributes"}``), for
        :func:`compressor.structure.apply_structure`.
    :raises CompressorError: when a module differs from the config's in a way a structure
        cannot describe (another module type).
    """
    from torch import nn

    modules, attributes = structure_diff(model)
    specs: dict[str, Any] = {}
    for name, module in modules.items():
        target = rename(name)
        if target is None:
            continue
        specs[target] = (
            linear_spec(module) if isinstance(module, nn.Linear)
            else {"type": "Parameter", "shape": [int(d) for d in module.shape]}  # DeBERTa v1's q_bias
        )
    attrs = {target: dict(values) for name, values in attributes.items() if (target := rename(name)) is not None}
    return {"version": 1, "modules": specs, "attributes": attrs}


def encoder_structure(model: "nn.Module") -> dict[str, Any]:
    """``model``'s encoder structure (inside ``model.base_model``; a head model's own head is
    left out) with paths relative to the base model (``encoder.layer.0.attention.self.query``),
    which :func:`compressor.structure.apply_structure` resolves in a base model and in any
    head model of the family (:func:`renamed_structure`)."""
    prefix = getattr(model, "base_model_prefix", "")
    if model.base_model is model or not prefix:
        return renamed_structure(model, lambda name: name)
    start = prefix + "."
    return renamed_structure(model, lambda name: name[len(start):] if name.startswith(start) else None)


def transplant(saved: "nn.Module", model: "nn.Module") -> list[str]:
    """Give ``model`` (built from the config) ``saved``'s encoder shapes and copy every
    tensor of ``saved`` whose name and shape match.

    Names are matched as they are, or with ``saved``'s base-model prefix
    (``bert.``) added or removed, so a head model's encoder goes into a base model and back.

    :param saved: the loaded checkpoint (its own class).
    :param model: a model of the wanted class, built from the same config; changed in place.
    :returns: names of ``model``'s parameters that got no tensor (newly initialised),
        sorted; a parameter tied to one that got a tensor is not listed.
    :raises CompressorError: when ``saved``'s encoder structure names a module ``model``
        lacks.
    """
    import torch

    apply_structure(model, encoder_structure(saved))
    source = saved.state_dict()
    prefix = getattr(saved, "base_model_prefix", "")
    target = model.state_dict(keep_vars=True)
    filled: set[int] = set()
    with torch.no_grad():
        for name, tensor in target.items():
            candidates = [name]
            if prefix:
                candidates += [f"{prefix}.{name}"]
                if name.startswith(prefix + "."):
                    candidates.append(name[len(prefix) + 1:])
            match = next(
                (source[c] for c in candidates if c in source and tuple(source[c].shape) == tuple(tensor.shape)),
                None,
            )
            if match is not None:
                tensor.copy_(match.to(dtype=tensor.dtype))
                filled.add(id(tensor))
    return sorted(name for name, p in model.named_parameters() if id(p) not in filled)
