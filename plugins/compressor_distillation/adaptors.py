"""Output adaptors: any model's outputs mapped to fixed keys (TextBrewer style).

TextBrewer (Yang et al. 2020, ``textbrewer/distiller_utils.py``) has the user write an
*adaptor* that turns a model's outputs into a dict with fixed keys (``logits``, ``hidden``,
``attention``, ``inputs_mask``), so that no loss depends on one architecture's attribute
names. :func:`adapt_outputs` is that function for Hugging Face models: every
``transformers`` model returns a :class:`~transformers.utils.ModelOutput`, and the keys
looked up here are the ones the library uses across encoders (BERT, RoBERTa, XLM-R,
ELECTRA, MPNet, DeBERTa-v2, DistilBERT, ModernBERT). The losses only ever read
:class:`Adapted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from compressor.errors import StageError

LOGIT_KEYS = ("logits", "prediction_logits")
"""Output keys tried, in order, for the prediction scores."""


@dataclass(frozen=True)
class Adapted:
    """A model's outputs under fixed names.

    :param logits: ``(B, C)`` (classification) or ``(B, S, V)`` (masked LM) float scores,
        or ``None`` when the model has no head.
    :param hidden_states: ``L + 1`` tensors ``(B, S, H)``: the embedding output, then the
        output of each encoder layer (``hidden_states[-1]`` is the last layer); ``None`` when
        not requested.
    :param attentions: ``L`` tensors ``(B, heads, S, S)``, the attention probabilities of each
        layer (rows sum to 1 over keys); ``None`` when not requested.
    :param attention_mask: ``(B, S)``, 1 at real tokens, 0 at padding; ``None`` if unknown.
    """

    logits: torch.Tensor | None
    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: tuple[torch.Tensor, ...] | None
    attention_mask: torch.Tensor | None

    @property
    def last_hidden(self) -> torch.Tensor:
        """``(B, S, H)``: the last encoder layer's output.

        :raises StageError: when hidden states were not requested.
        """
        if not self.hidden_states:
            raise StageError("the model's hidden states were not returned")
        return self.hidden_states[-1]


def _get(outputs: Any, key: str) -> Any:
    if isinstance(outputs, Mapping):
        return outputs.get(key)
    return getattr(outputs, key, None)


def adapt_outputs(outputs: Any, inputs: Mapping[str, Any] | None = None) -> Adapted:
    """Map a model's outputs (a ``ModelOutput``, a dict or an object) to :class:`Adapted`.

    :param outputs: what ``model(**inputs, output_hidden_states=..., output_attentions=...)``
        returned.
    :param inputs: the inputs the model received (for ``attention_mask``); optional.
    :returns: the adapted outputs; absent fields are ``None``.
    """
    logits = None
    for key in LOGIT_KEYS:
        logits = _get(outputs, key)
        if logits is not None:
            break
    hidden = _get(outputs, "hidden_states")
    attentions = _get(outputs, "attentions")
    mask = inputs.get("attention_mask") if inputs is not None else None
    return Adapted(
        logits=logits,
        hidden_states=tuple(hidden) if hidden is not None else None,
        attentions=tuple(a for a in attentions) if attentions is not None else None,
        attention_mask=mask,
    )


def pooled(adapted: Adapted, pooling: str) -> torch.Tensor:
    """A sentence representation from the last hidden states.

    :param adapted: outputs with hidden states.
    :param pooling: ``"cls"`` (first token) or ``"mean"`` (mean over non-padding tokens).
    :returns: ``(B, H)`` float tensor.
    :raises ValueError: for an unknown pooling.
    """
    h = adapted.last_hidden
    if pooling == "cls":
        return h[:, 0]
    if pooling == "mean":
        mask = adapted.attention_mask
        if mask is None:
            return h.mean(dim=1)
        m = mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
    raise ValueError(f"unknown pooling {pooling!r}; expected 'cls' or 'mean'")
