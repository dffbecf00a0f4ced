"""``token-classification``: one IOB2 tag per word (named-entity recognition).

Data: ``text`` is a sentence as a list of words, ``label`` its tags, one per word: strings
in the source (``B-person``, ``I-person``, ``O``...), or class ids with a ``Sequence(ClassLabel)``
feature (the Hugging Face Hub's ``wnut_17``, ``conll2003``); normalised to int ids indexing
``label_names`` (``O`` first, then ``B-``/``I-`` pairs by entity type). A CoNLL file reads
into this layout (:mod:`compressor.sources.formats`).

Alignment (the reference is ``transformers``' ``examples/pytorch/token-classification/run_ner.py``):
words are tokenised with ``is_split_into_words=True`` by the model's fast tokenizer, and
``word_ids()`` maps sub-tokens back to words; the first sub-token of each word carries its
label, the other sub-tokens and the special tokens carry -100 (ignored by the loss, by the
soft targets and by the metrics). This holds for WordPiece, byte-level BPE and SentencePiece
tokenizers alike.

Metrics: entity-level micro precision, recall and F1 as seqeval computes them in strict IOB2
mode (``seqeval.metrics.f1_score(mode="strict", scheme=IOB2)``; Ramshaw & Marcus chunks,
CoNLL-2003 scoring): an entity counts as found only when its type, first and last word
match. Per sentence the task keeps the counts of true-positive, predicted and gold
entities, so any resample of sentences gives its micro-averaged metrics as three matrix
products (the bootstrap intervals are over sentences).
"""

from __future__ import annotations

import re

from typing import TYPE_CHECKING, Any

from ..errors import CompressorError, SourceError, StageError
from .base import Metric, Scored, SoftTarget, Task, class_label_kwargs, predict_batches, tokenize_texts

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from ..evaluate.backends import Backend
    from ..task import TaskData

#: label of sub-tokens and special tokens that nothing is computed on
IGNORE = -100


def order_tags(tags: set[str]) -> list[str]:
    """Tag names in a stable order: ``O`` first (always: words a model cannot reach are
    predicted ``O``), then ``B-T``, ``I-T`` for each type ``T`` in alphabetical order (other
    tags last, sorted).

    :param tags: the distinct tags of a data set.
    :returns: the ordered list (index = label id).
    """
    types = sorted({t[2:] for t in tags if t[:2] in ("B-", "I-")})
    out = ["O"]
    for kind in types:
        out += [f"B-{kind}", f"I-{kind}"]
    return out + sorted(set(tags) - set(out))


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Word labels spread over sub-tokens: the first sub-token of a word gets its label,
    its other sub-tokens and special tokens (``word_id is None``) get -100.

    :param word_ids: ``BatchEncoding.word_ids(i)``: the word index of each token, or
        ``None`` for special tokens; a word split into ``k`` sub-tokens appears ``k`` times
        in a row.
    :param word_labels: the label id of each word.
    :returns: one label per token (same length as ``word_ids``).
    """
    out, previous = [], None
    for wid in word_ids:
        out.append(IGNORE if wid is None or wid == previous else int(word_labels[wid]))
        previous = wid
    return out


def first_subtokens(word_ids: list[int | None]) -> dict[int, int]:
    """Word index -> position of its first sub-token (words truncated away are absent)."""
    out: dict[int, int] = {}
    for pos, wid in enumerate(word_ids):
        if wid is not None and wid not in out:
            out[wid] = pos
    return out


def sentence_entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """Entities of one tag sequence in seqeval's strict IOB2 mode.

    :param tags: IOB2 tags of one sentence (predicted ones may be invalid: an ``I-T``
        without its ``B-T`` starts no entity in strict mode).
    :returns: ``{(type, first word, last word + 1)}``.
    """
    from seqeval.scheme import IOB2, Entities

    return {(e.tag, e.start, e.end) for e in Entities([list(tags)], IOB2, suffix=False).entities[0]}


def entity_counts(gold: list[list[str]], pred: list[list[str]]) -> "np.ndarray":
    """Per-sentence ``[true positives, predicted, gold]`` entity counts (strict IOB2).

    :param gold: gold tag sequences; ``pred``: predicted ones, same lengths.
    :returns: int64 array ``(n_sentences, 3)``.
    """
    import numpy as np

    out = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        ge, pe = sentence_entities(g), sentence_entities(p)
        out[i] = (len(ge & pe), len(pe), len(ge))
    return out


def entity_prf(tp: "np.ndarray", predicted: "np.ndarray", gold: "np.ndarray") -> dict[str, "np.ndarray"]:
    """Micro precision, recall and F1 from summed counts (seqeval's definitions; 0 where a
    denominator is 0, as seqeval with ``zero_division=0``).

    :param tp: true-positive entity counts ``(B,)``; ``predicted``, ``gold``: same shape.
    :returns: ``{"entity_precision", "entity_recall", "entity_f1"}``, fractions ``(B,)``.
    """
    import numpy as np

    def ratio(a: "np.ndarray", b: "np.ndarray") -> "np.ndarray":
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)

    p, r = ratio(tp, predicted), ratio(tp, gold)
    return {"entity_f1": ratio(2.0 * tp, predicted + gold), "entity_precision": p, "entity_recall": r}


_TAG = re.compile(r"^(O|[BI]-\S+)$")
"""An IOB2 tag: ``O``, ``B-<type>`` or ``I-<type>``."""


def iob2_problem(previous: str, tag: str) -> str | None:
    """Why ``tag`` cannot follow ``previous`` in IOB2, or ``None`` when it can.

    :param previous: the tag before (``"O"`` at the start of a sentence).
    :param tag: the tag to check.
    :returns: a message, or ``None``.
    """
    if not isinstance(tag, str) or not _TAG.match(tag):
        return f"tag {tag!r} is not IOB2"
    if tag.startswith("I-"):
        kind = tag[2:]
        if previous[2:] != kind or previous == "O":
            return (f"tag {tag!r} follows {previous!r}: an entity must start with B-{kind} "
                    "(IOB1 or IOE tags are not IOB2)")
    return None


class TokenClassification(Task):
    """Word tagging with an ``AutoModelForTokenClassification`` head (NER)."""

    name = "token-classification"
    description = "one IOB2 tag per word (NER); entity-level precision/recall/F1 (seqeval strict)"
    labelled = True
    has_classes = False  # labels are sequences, not one class per row: no stratified split
    auto_model = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    supervised = True
    token_level = True
    onnx_outputs = {"logits": ("batch", "sequence")}

    # --- data -----------------------------------------------------------------------------

    def columns(self, cfg: Any) -> dict[str, str]:
        """``text`` = the words column (``text_column``, default ``tokens``), ``label`` = the
        tags column (``label_column``, default ``tags``), as a CoNLL file reads."""
        given = getattr(cfg, "model_fields_set", set())
        return {
            "text": cfg.text_column if "text_column" in given else "tokens",
            "label": cfg.label_column if "label_column" in given else "tags",
        }

    def normalise(self, splits: Any, where: Any, spec: Any) -> Any:
        """Check words and tags row by row and make tags int ids shared by all splits.

        :raises SourceError: naming the split's file (or data set) and the row for words
            that are not a list of strings, a tag count that differs from the word count, or
            tags that are not IOB2 (``O``, ``B-T``, ``I-T`` after ``B-T``/``I-T``).
        """
        from datasets import ClassLabel, Sequence, Value

        as_strings: dict[str, list[list[str]]] = {}
        for split, ds in splits.items():
            feature = ds.features["label"]
            inner = getattr(feature, "feature", None)
            names = list(inner.names) if isinstance(inner, ClassLabel) else (
                list(spec.label_names) if spec is not None and spec.label_names else None)
            rows = []
            for i, (words, tags) in enumerate(zip(_column(ds, "text"), _column(ds, "label"))):
                rows.append(self._check_row(words, tags, names, where[split], i, iob2_problem))
            as_strings[split] = rows
        label_names = order_tags({t for rows in as_strings.values() for row in rows for t in row})
        if spec is not None and spec.label_names and set(label_names) <= set(spec.label_names):
            label_names = list(spec.label_names)
        ids = {t: i for i, t in enumerate(label_names)}
        out = {}
        for split, ds in splits.items():
            labels = [[ids[t] for t in row] for row in as_strings[split]]
            ds = ds.remove_columns("label").add_column("label", labels)
            ds = ds.cast_column("label", Sequence(ClassLabel(names=label_names)))
            if ds.features["text"] != Sequence(Value("string")):
                ds = ds.cast_column("text", Sequence(Value("string")))
            out[split] = ds
        return out, label_names

    @staticmethod
    def _check_row(words: Any, tags: Any, names: list[str] | None, where: str, row: int,
                   iob2_problem: Any) -> list[str]:
        place = f"{where}: row {row + 1}"
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise SourceError(f"{place}: the words are {type(words).__name__}, not a list of strings",
                              key="task.data.text_column", where=place,
                              expected="a list of words per sentence (a CoNLL file, or a JSON list)")
        if not isinstance(tags, list):
            raise SourceError(f"{place}: the tags are {type(tags).__name__}, not a list",
                              key="task.data.label_column", where=place,
                              expected="one IOB2 tag per word")
        if len(tags) != len(words):
            raise SourceError(f"{place}: {len(words)} words but {len(tags)} tags",
                              key="task.data.label_column", where=place, expected="one tag per word")
        strings = []
        previous = "O"
        for t in tags:
            if isinstance(t, int) and not isinstance(t, bool):
                if names is None or not 0 <= t < len(names):
                    raise SourceError(f"{place}: tag id {t} has no name", key="task.data.label_column",
                                      where=place, expected="tag strings, or ids of a ClassLabel feature")
                t = names[t]
            problem = iob2_problem(previous, t)
            if problem:
                raise SourceError(f"{place}: {problem}", key="task.data.label_column", where=place,
                                  expected="IOB2 tags: O, B-TYPE, I-TYPE after B-TYPE/I-TYPE")
            strings.append(t)
            previous = t
        return strings

    def stratify(self) -> bool:
        return False

    # --- model ----------------------------------------------------------------------------

    def plain_text(self, split: "datasets.Dataset") -> "datasets.Dataset":
        """The words of each sentence joined by single spaces, as one ``text`` string (what
        latency timing, ONNX parity inputs and static-int8 calibration feed the tokenizer)."""
        return split.map(lambda row: {"text": " ".join(row["text"])}, remove_columns=split.column_names)

    def model_kwargs(self, data: "TaskData | None") -> dict[str, Any]:
        return class_label_kwargs(data)

    def check_head(self, model: Any, data: "TaskData", what: str) -> None:
        if data.num_labels and model.config.num_labels != data.num_labels:
            raise StageError(
                f"{what!r} predicts {model.config.num_labels} tags per token but the task has "
                f"{data.num_labels} ({', '.join(data.label_names)})",
                hint="fine-tune the model on the task first (a 'finetune' stage)",
            )

    # --- training -------------------------------------------------------------------------

    def tokenize(self, split: "datasets.Dataset", tokenizer: Any, max_length: int, data: "TaskData",
                 *, progress: bool = False) -> "datasets.Dataset":
        """Encode words with ``is_split_into_words=True``; ``labels`` aligned by
        :func:`align_labels` (a list of int per row, -100 on ignored positions)."""
        _need_fast(tokenizer)

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            enc = tokenizer(batch["text"], is_split_into_words=True, truncation=True,
                            max_length=max_length)
            enc["labels"] = [align_labels(enc.word_ids(i), tags) for i, tags in enumerate(batch["label"])]
            return dict(enc)

        return tokenize_texts(split, encode, progress=progress)

    def collator(self, tokenizer: Any) -> Any:
        """``DataCollatorForTokenClassification``: pads ``labels`` with -100."""
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def training_metric(self) -> tuple[str, bool]:
        return "entity_f1", True

    def compute_metrics(self, data: "TaskData") -> Any:
        """Entity F1 (strict IOB2) on the validation split, from the first sub-tokens."""
        import numpy as np

        names = list(data.label_names)

        def entity_f1(eval_pred: Any) -> dict[str, float]:
            logits, labels = eval_pred
            if isinstance(logits, tuple):
                logits = logits[0]
            preds = np.asarray(logits).argmax(axis=-1)
            labels = np.asarray(labels)
            gold_tags, pred_tags = [], []
            for p_row, l_row in zip(preds, labels):
                keep = l_row != IGNORE
                gold_tags.append([names[i] for i in l_row[keep]])
                pred_tags.append([names[i] for i in p_row[keep]])
            counts = entity_counts(gold_tags, pred_tags).sum(axis=0).astype(np.float64)
            return {"entity_f1": float(entity_prf(counts[0:1], counts[1:2], counts[2:3])["entity_f1"][0])}

        return entity_f1

    # --- distillation ---------------------------------------------------------------------

    def soft_targets(self, outputs: Any, batch: dict[str, Any]) -> list[SoftTarget]:
        """One distribution over tags per scored token: ``logits[labels != -100]``, float
        ``(n_tokens, num_labels)``; student and teacher share the batch, so rows align."""
        mask = batch["labels"] != IGNORE
        return [SoftTarget("logits", outputs.logits[mask], "distribution")]

    # --- evaluation -----------------------------------------------------------------------

    def metrics(self, data: "TaskData") -> list[Metric]:
        return [Metric("entity_f1", "entity F1"), Metric("entity_precision", "entity precision"),
                Metric("entity_recall", "entity recall")]

    def score(self, backend: "Backend", split: "datasets.Dataset", data: "TaskData", *,
              batch_size: int, progress: bool = False) -> Scored:
        """Tag every sentence: the prediction of a word is the arg-max of its first
        sub-token's logits (a word with no sub-token, or cut off by the length limit, is
        predicted ``O`` and counted in ``extra["words_unscored"]``).

        :returns: arrays ``tp``, ``predicted``, ``gold`` (int64 ``(n_sentences,)``, entity
            counts); extra: per-type counts over the split; predictions: the predicted tag id
            of every word (``prediction``, flat; -1 for an ``O`` the label names lack) and
            each sentence's ``offsets`` into it.
        :raises CompressorError: a slow (non-fast) tokenizer, a split without labels, or a
            model whose logits are not ``(batch, tokens, num_labels)``.
        """
        import numpy as np

        if "label" not in split.column_names:
            raise CompressorError(f"the evaluation split lacks a 'label' column; has {split.column_names}")
        _need_fast(backend.tokenizer)
        names = list(data.label_names) or [
            backend.config.id2label[i] for i in range(int(backend.config.num_labels))]
        max_length = backend.accuracy_max_length()

        def encode(rows: dict[str, list[Any]]) -> Any:
            return backend.tokenizer(list(rows["text"]), is_split_into_words=True, padding=True,
                                     truncation=True, max_length=max_length,
                                     return_tensors=backend.tensor_type)

        gold: list[list[str]] = []
        pred: list[list[str]] = []
        unscored = 0
        labels_col = _column(split, "label")
        row = 0
        for batch, out in predict_batches(backend, split, batch_size=batch_size, progress=progress,
                                          encode=encode, desc="entity F1"):
            logits = out.get("logits")
            if logits is None or logits.ndim != 3 or logits.shape[-1] != len(names):
                shape = None if logits is None else tuple(logits.shape)
                raise CompressorError(
                    f"the model outputs logits of shape {shape} but token classification needs "
                    f"(batch, tokens, {len(names)})",
                    hint="fine-tune a token-classification head on this task first (a 'finetune' stage)",
                )
            ids = logits.argmax(axis=-1)
            for i in range(ids.shape[0]):
                tags = [names[t] for t in labels_col[row]]
                first = first_subtokens(batch.word_ids(i))
                guess = [names[int(ids[i, first[w]])] if w in first else "O" for w in range(len(tags))]
                unscored += len(tags) - len(first)
                gold.append(tags)
                pred.append(guess)
                row += 1
        counts = entity_counts(gold, pred)
        label_id = {t: k for k, t in enumerate(names)}
        flat = np.asarray([label_id.get(t, -1) for p in pred for t in p], dtype=np.int64)
        offsets = np.cumsum([0] + [len(p) for p in pred]).astype(np.int64)
        return Scored(
            arrays={"tp": counts[:, 0], "predicted": counts[:, 1], "gold": counts[:, 2]},
            extra={"words_unscored": int(unscored), "per_type": per_type_counts(gold, pred)},
            predictions={"prediction": flat, "offsets": offsets},
        )

    def metric_matrix(self, weights: "np.ndarray", scored: Scored, data: "TaskData") -> dict[str, "np.ndarray"]:
        """Micro-averaged entity P/R/F1 of each resample of sentences: the counts summed
        with the resample's weights (``weights @ counts``), then :func:`entity_prf`."""
        import numpy as np

        w = np.asarray(weights, dtype=np.float64)
        a = scored.arrays
        return entity_prf(w @ a["tp"].astype(np.float64), w @ a["predicted"].astype(np.float64),
                          w @ a["gold"].astype(np.float64))

    def loading_snippet(self, path: str = "path/to/this/folder") -> list[str]:
        return [*super().loading_snippet(path), "",
                "# or: transformers.pipeline(\"token-classification\", model=model, "
                "tokenizer=tokenizer, aggregation_strategy=\"first\")"]


def per_type_counts(gold: list[list[str]], pred: list[list[str]]) -> dict[str, dict[str, int]]:
    """``{type: {"tp", "predicted", "gold"}}`` entity counts over a split (strict IOB2)."""
    out: dict[str, dict[str, int]] = {}
    for g, p in zip(gold, pred):
        ge, pe = sentence_entities(g), sentence_entities(p)
        for kind, n_tp, n_p, n_g in (
            (k, len({e for e in ge & pe if e[0] == k}), len({e for e in pe if e[0] == k}),
             len({e for e in ge if e[0] == k}))
            for k in {e[0] for e in ge | pe}
        ):
            c = out.setdefault(kind, {"tp": 0, "predicted": 0, "gold": 0})
            c["tp"] += n_tp
            c["predicted"] += n_p
            c["gold"] += n_g
    return dict(sorted(out.items()))


def _need_fast(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise CompressorError(
            f"token classification needs a fast tokenizer (word_ids()); {type(tokenizer).__name__} is not",
            hint="save the model with a tokenizer.json (AutoTokenizer.from_pretrained(..., use_fast=True))",
        )


def _column(ds: "datasets.Dataset", name: str) -> list[Any]:
    return ds.with_format("arrow")[name].to_pylist()
