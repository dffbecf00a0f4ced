"""What a model type is (encoder or not) and where its config keeps its sizes.

Two questions every architecture check asks before any adapter does, answered from what
transformers and optimum already know instead of tables of our own:

- **Is it an encoder?** :func:`model_kind` reads transformers' auto-class mappings
  (``transformers.models.auto.modeling_auto``): a model type with a sequence-to-sequence LM
  class is an encoder-decoder; one with a generative class (causal LM, image-text-to-text,
  multimodal LM) and no masked-LM class is a decoder (GPT-2, Llama, XLNet's permutation LM);
  every other one is an encoder. BERT, RoBERTa and ModernBERT have a causal-LM class too
  (``BertLMHeadModel``) but also a masked-LM one, so they stay encoders.
  :func:`model_refusal` turns that, a config's own ``is_decoder`` /
  ``is_encoder_decoder``, and the few encoders this tool cannot run at all
  (:data:`UNSUPPORTED_ENCODERS`), into the reason ``compressor validate`` refuses the
  recipe with, before any training.
- **Where are its sizes?** :func:`normalized_attr` asks optimum's
  ``optimum.utils.normalized_config.NormalizedConfigManager`` (per model type: the config
  attribute holding the layer count, heads, hidden size, key/value heads) where it covers
  the model type; the tables of :mod:`compressor.architectures.adapter`
  (``LAYER_COUNT_ATTRS`` ...) answer for the others, and for the FFN width, which optimum
  does not name.

optimum's ``TasksManager`` is not used for the first question: in the base package its
model type -> task table is filled by exporters (optimum-onnx, which this project does not
install), its task -> model type map is built from the same transformers auto classes read
here, and importing it needs ``requests``, which optimum does not declare
(docs/dependencies.md).

Importing this module is cheap: transformers loads inside :func:`model_kind`, optimum's
small ``normalized_config`` module inside :func:`normalized_attr`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

ENCODER, DECODER, ENCODER_DECODER = "encoder", "decoder", "encoder-decoder"
"""The kinds :func:`model_kind` tells apart."""

UNSUPPORTED_ENCODERS: dict[str, str] = {
    "reformer": "Reformer trains only on sequences padded to a multiple of its attention chunk "
    "length and, with axial position embeddings, to exactly prod(axial_pos_shape) tokens: the "
    "training batches of finetune and distillation are padded to their longest text",
    "layoutlmv2": "LayoutLMv2's visual backbone needs detectron2 and a page image with every "
    "text: it is a document-image model, not a text encoder",
}
"""Encoder model types transformers ships that no compression recipe can run, with the
reason (checked on tiny models by ``tests/core/test_architectures_matrix.py``)."""

NORMALIZED_FIELDS: dict[str, str] = {
    "layers": "NUM_LAYERS",
    "heads": "NUM_ATTENTION_HEADS",
    "hidden": "HIDDEN_SIZE",
    "kv_heads": "NUM_KEY_VALUE_HEADS",
}
"""What :func:`normalized_attr` can name -> optimum's ``NormalizedConfig`` field."""


@functools.lru_cache(maxsize=1)
def _auto_mappings() -> dict[str, frozenset[str]]:
    from transformers.models.auto import modeling_auto as auto

    def names(*attrs: str) -> frozenset[str]:
        return frozenset(t for a in attrs for t in getattr(auto, a, {}))

    return {
        "seq2seq": names("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
        "generative": names(
            "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
            "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
            "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES",
        ),
        "masked": names("MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
        "sequence_classification": names("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"),
    }


def model_kind(model_type: str) -> str | None:
    """Whether transformers' ``model_type`` is an encoder, a decoder or an encoder-decoder.

    :param model_type: a ``config.model_type``.
    :returns: :data:`ENCODER_DECODER` when transformers has a sequence-to-sequence LM class
        for it; :data:`DECODER` when it has a generative class (causal LM,
        image-text-to-text, multimodal LM) and no masked-LM class; :data:`ENCODER` for any
        other type transformers maps to a model class; ``None`` for a type transformers does
        not know (a remote-code or newer model: nothing is said about it).
    """
    maps = _auto_mappings()
    if model_type in maps["seq2seq"]:
        return ENCODER_DECODER
    if model_type in maps["generative"] and model_type not in maps["masked"]:
        return DECODER
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return ENCODER if model_type in CONFIG_MAPPING_NAMES else None


def sequence_classification_types() -> list[str]:
    """Every model type transformers maps to ``AutoModelForSequenceClassification``, sorted
    (what the architecture matrix covers)."""
    return sorted(_auto_mappings()["sequence_classification"])


def _get(config: Mapping[str, Any] | Any, key: str) -> Any:
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def model_refusal(config: Mapping[str, Any] | Any, *, known_encoder: bool = False) -> str | None:
    """Why no compression recipe can run on the model ``config`` describes, or ``None``.

    :param config: the model's ``config.json`` as a dict, or a config object.
    :param known_encoder: a registered adapter claims the model type (adapters claim
        encoders): only the config's own flags are read, transformers is not imported.
    :returns: ``"not an encoder: ..."`` for an encoder-decoder or a decoder (by the config's
        own ``is_encoder_decoder``/``is_decoder``, else by :func:`model_kind`), the reason of
        :data:`UNSUPPORTED_ENCODERS` for those types, else ``None``.
    """
    model_type = _get(config, "model_type")
    if _get(config, "is_encoder_decoder") is True:
        return (
            f"not an encoder: model_type {model_type!r} has is_encoder_decoder: true in its config "
            "(an encoder-decoder); this tool compresses encoders"
        )
    if _get(config, "is_decoder") is True:
        return (
            f"not an encoder: model_type {model_type!r} has is_decoder: true in its config (a "
            "causal decoder); this tool compresses encoders"
        )
    if known_encoder or not isinstance(model_type, str):
        return None
    kind = model_kind(model_type)
    if kind == ENCODER_DECODER:
        return (
            f"not an encoder: transformers has a sequence-to-sequence LM class for model_type "
            f"{model_type!r} (an encoder-decoder); this tool compresses encoders"
        )
    if kind == DECODER:
        return (
            f"not an encoder: transformers has a causal (generative) LM class for model_type "
            f"{model_type!r} and no masked-LM class (a decoder); this tool compresses encoders"
        )
    return UNSUPPORTED_ENCODERS.get(model_type)


@functools.cache
def _normalized_fields(model_type: str) -> Mapping[str, str] | None:
    try:
        from optimum.utils.normalized_config import NormalizedConfigManager
    except ImportError:  # optimum is a dependency; a broken install falls back to the tables
        return None
    try:
        cls = NormalizedConfigManager.get_normalized_config_class(model_type)
    except KeyError:
        return None
    # with_args() classes carry their renames as instance attributes: build one on an
    # empty config to read them
    probe = cls({})
    out = {}
    for field in NORMALIZED_FIELDS.values():
        try:
            out[field] = object.__getattribute__(probe, field)
        except AttributeError:
            continue
    return out


def normalized_attr(model_type: Any, what: str) -> str | None:
    """The config attribute optimum's ``NormalizedConfig`` names for ``what`` of
    ``model_type``.

    :param model_type: a ``config.model_type``.
    :param what: a key of :data:`NORMALIZED_FIELDS` (``"layers"``, ``"heads"``,
        ``"hidden"``, ``"kv_heads"``).
    :returns: the attribute name (``"n_heads"`` for DistilBERT's heads), or ``None`` where
        optimum has no entry for the model type or the field.
    """
    if not isinstance(model_type, str) or what not in NORMALIZED_FIELDS:
        return None
    fields = _normalized_fields(model_type)
    return None if fields is None else fields.get(NORMALIZED_FIELDS[what])


def config_size(config: Any, what: str, fallback: tuple[str, ...]) -> tuple[str, int] | None:
    """``(attribute, value)`` of a size in ``config``: the attribute optimum names for the
    model type (:func:`normalized_attr`, resolved through the config's ``attribute_map``)
    when it holds a positive int, else the first of ``fallback`` that does.

    :param config: a transformers config, or any object with its attributes.
    :param what: as :func:`normalized_attr`.
    :param fallback: attribute names to try in order where optimum does not answer.
    """
    names: list[str] = []
    attr = normalized_attr(getattr(config, "model_type", None), what)
    if attr:
        mapped = (getattr(config, "attribute_map", None) or {}).get(attr)
        names += [a for a in (mapped, attr) if a]
    names += [a for a in fallback if a not in names]
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return name, value
    return None
