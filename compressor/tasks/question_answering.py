"""``question-answering``: extractive QA (SQuAD v1.1), a span of the context per question.

Data: ``text`` is the question, ``text_pair`` the context, ``label`` the gold answers
``{"text": [...], "answer_start": [...]}`` (character offsets into the context); ``id`` and
``title`` (the article) are kept when the source has them: the split of a file without a
``train`` part is made by article (:meth:`QuestionAnswering.groups`), so that no article
has questions on both sides. A SQuAD JSON file (``.json`` / ``.json.gz``) reads into this
layout (:mod:`compressor.sources.formats`), as does the Hub's ``squad``.

Windows (the reference is ``transformers``' ``examples/pytorch/question-answering/run_qa.py``
and ``utils_qa.py``): a context longer than the window is cut into overlapping windows of
``max_seq_length`` tokens (question + context + special tokens), consecutive windows sharing
``doc_stride`` tokens, with the tokenizer's ``return_overflowing_tokens``; offsets map every
context token back to its characters. In training a window whose context does not hold the
whole first gold answer is labelled with the ``[CLS]`` position (SQuAD v1 practice); in
evaluation each question's answer is the best span over all of its windows.

Post-processing (``postprocess_qa_predictions`` of ``utils_qa.py``, SQuAD v1): the
``n_best`` highest start and end logits of each window are paired; a pair is a candidate
when both tokens are context tokens (answers inside the context only: never the question,
a special token or padding), ``end >= start`` and the span has at most
``max_answer_length`` tokens; its score is ``start_logit + end_logit``. The best candidate's
characters are the prediction; with no candidate the prediction is the empty string (which
scores 0).

Metrics: exact match and F1 of the official SQuAD v1.1 script
(:mod:`compressor.tasks.squad_metrics`), the maximum over each question's gold answers,
kept per question so that any resample of questions is one matrix product.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from ..errors import CompressorError, SourceError
from .base import Metric, Scored, SoftTarget, Task, TaskOptions, predict_batches, tokenize_texts

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from ..evaluate.backends import Backend
    from ..task import TaskData

#: logit given to padding positions in the soft targets: finite, so that KL stays finite
MASKED_LOGIT = -1.0e4


class QAOptions(TaskOptions):
    """``task.options`` of ``question-answering`` (defaults: ``run_qa.py``'s, and
    ``max_query_length`` of Google's BERT ``run_squad.py``)."""

    max_seq_length: int = Field(
        384, ge=16, le=8192,
        description="Tokens per window in evaluation (question + context + special tokens); "
        "training windows use the stage's max_length.")
    doc_stride: int = Field(
        128, ge=0, le=4096, description="Tokens shared by consecutive windows of a long context.")
    max_query_length: int = Field(
        64, ge=1, le=4096, description="Question tokens kept; longer questions are cut.")
    max_answer_length: int = Field(
        30, ge=1, le=4096, description="Longest predicted answer, in tokens.")
    n_best: int = Field(
        20, ge=1, le=1000, description="Start and end positions considered per window.")

    @model_validator(mode="after")
    def _room_for_context(self) -> "QAOptions":
        room = self.max_seq_length - self.max_query_length - 4
        if self.doc_stride >= room:
            raise ValueError(
                f"doc_stride {self.doc_stride} leaves no new context per window: it must be below "
                f"max_seq_length - max_query_length - 4 = {room}")
        return self


def span_problem(context: str, text: str, start: int) -> str | None:
    """Why an answer span is not in its context, or ``None`` when
    ``context[start:start + len(text)] == text`` and the answer is not empty."""
    if not text:
        return "the answer text is empty"
    if not 0 <= start <= len(context) - len(text):
        return f"answer_start {start} puts {text!r} outside the context ({len(context)} characters)"
    found = context[start:start + len(text)]
    if found != text:
        return f"the context has {found!r} at answer_start {start}, not the answer {text!r}"
    return None


class QuestionAnswering(Task):
    """Extractive QA with an ``AutoModelForQuestionAnswering`` head (start/end logits)."""

    name = "question-answering"
    description = "extractive QA (SQuAD v1.1): answer spans; exact match and F1 (official script)"
    labelled = True
    has_classes = False
    auto_model = "AutoModelForQuestionAnswering"
    pipeline_tag = "question-answering"
    supervised = True
    token_level = True
    onnx_outputs = {"start_logits": ("batch", "sequence"), "end_logits": ("batch", "sequence")}
    Options = QAOptions

    # --- data -----------------------------------------------------------------------------

    def columns(self, cfg: Any) -> dict[str, str]:
        """``text`` = question (``text_column``, default ``question``), ``text_pair`` =
        context (``text_pair_column``, default ``context``), ``label`` = answers
        (``label_column``, default ``answers``): the SQuAD columns."""
        given = getattr(cfg, "model_fields_set", set())
        return {
            "text": cfg.text_column if "text_column" in given else "question",
            "text_pair": cfg.text_pair_column or "context",
            "label": cfg.label_column if "label_column" in given else "answers",
        }

    #: optional source columns the loader keeps when present: question id, article
    optional_columns = {"id": "id", "title": "title"}

    def normalise(self, splits: Any, where: Any, spec: Any) -> Any:
        """Check every answer: ``{"text": [...], "answer_start": [...]}``, at least one, each
        found at its offset in the context.

        :raises SourceError: naming the split's file (or data set), the row and the question
            id for a malformed answers value or a span that is not in its context.
        """
        out = {}
        for split, ds in splits.items():
            ids = _column(ds, "id") if "id" in ds.column_names else None
            for i, (context, answers) in enumerate(zip(_column(ds, "text_pair"), _column(ds, "label"))):
                place = f"{where[split]}: row {i + 1}" + (f" (id {ids[i]})" if ids else "")
                texts = answers.get("text") if isinstance(answers, dict) else None
                starts = answers.get("answer_start") if isinstance(answers, dict) else None
                if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
                    raise SourceError(
                        f"{place}: answers is {answers!r}", key="task.data.label_column", where=place,
                        expected='{"text": [answer, ...], "answer_start": [character offset, ...]}')
                if not texts:
                    raise SourceError(f"{place}: the question has no answer", key="task.data.label_column",
                                      where=place, hint="SQuAD v2 unanswerable questions are not supported")
                for text, start in zip(texts, starts):
                    if isinstance(start, bool) or not isinstance(start, int):
                        raise SourceError(f"{place}: answer_start {start!r} is not an integer",
                                          key="task.data.label_column", where=place)
                    problem = span_problem(context, text, start)
                    if problem:
                        raise SourceError(f"{place}: {problem}", key="task.data.label_column", where=place,
                                          expected="context[answer_start:answer_start+len(text)] == text")
            out[split] = ds
        return out, []

    def stratify(self) -> bool:
        return False

    def groups(self, split: "datasets.Dataset") -> list[str]:
        """The article of every row, for a split without shared articles
        (:func:`group_split_indices`): ``title`` when the data has it, else the context."""
        return _column(split, "title" if "title" in split.column_names else "text_pair")

    # --- training -------------------------------------------------------------------------

    def tokenize(self, split: "datasets.Dataset", tokenizer: Any, max_length: int, data: "TaskData",
                 *, progress: bool = False) -> "datasets.Dataset":
        """Windows of ``max_length`` tokens (``doc_stride`` shared) with ``start_positions``
        and ``end_positions`` (token indices of the first gold answer; the ``[CLS]`` index
        when the window does not hold it), one row per window."""
        opts = self.options(data)
        _need_fast(tokenizer)

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            enc, ctx = windows(tokenizer, batch["text"], batch["text_pair"], max_length=max_length,
                               doc_stride=opts.doc_stride, max_query_length=opts.max_query_length,
                               padding=False)
            starts, ends = [], []
            for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
                answer = batch["label"][sample]
                s, e = answer_tokens(enc, i, ctx, answer["answer_start"][0],
                                     answer["answer_start"][0] + len(answer["text"][0]),
                                     cls_index(enc["input_ids"][i], tokenizer))
                starts.append(s)
                ends.append(e)
            keep = {k: enc[k] for k in enc if k not in ("offset_mapping", "overflow_to_sample_mapping")}
            keep["start_positions"], keep["end_positions"] = starts, ends
            return keep

        return tokenize_texts(split, encode, progress=progress, desc="windows")

    # --- distillation ---------------------------------------------------------------------

    def soft_targets(self, outputs: Any, batch: dict[str, Any]) -> list[SoftTarget]:
        """Two distributions over token positions per window (Sanh et al. 2019, SQuAD):
        ``start_logits`` and ``end_logits``, float ``(windows, tokens)``, with padding
        positions set to -1e4 so that they carry no probability."""
        mask = batch.get("attention_mask")
        targets = []
        for name in ("start_logits", "end_logits"):
            values = getattr(outputs, name)
            if mask is not None:
                values = values.masked_fill(mask == 0, MASKED_LOGIT)
            targets.append(SoftTarget(name, values, "distribution"))
        return targets

    # --- evaluation -----------------------------------------------------------------------

    def metrics(self, data: "TaskData") -> list[Metric]:
        return [Metric("exact_match", "exact match"), Metric("f1", "F1")]

    def score(self, backend: "Backend", split: "datasets.Dataset", data: "TaskData", *,
              batch_size: int, progress: bool = False) -> Scored:
        """Answer every question of ``split`` (windows, then the post-processing of the
        module docstring) and score it against the gold answers.

        :param batch_size: questions per forward call (a long context adds windows).
        :returns: arrays ``exact_match`` and ``f1`` (float64 ``(n_questions,)``, 0 or 1 and
            [0, 1]); extra: window and empty-prediction counts; predictions: the answer text
            (``prediction``, unicode) and the question ``id`` when known.
        :raises CompressorError: a slow tokenizer, or a model without ``start_logits`` and
            ``end_logits`` outputs.
        """
        import numpy as np
        from transformers import BatchEncoding

        from .squad_metrics import squad_scores

        opts = self.options(data)
        tok = backend.tokenizer
        _need_fast(tok)
        max_length = min(opts.max_seq_length, backend.accuracy_max_length())
        names = [n for n in tok.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
        metas: list[tuple[Any, int]] = []

        def encode(rows: dict[str, list[Any]]) -> Any:
            enc, ctx = windows(tok, rows["text"], rows["text_pair"], max_length=max_length,
                               doc_stride=opts.doc_stride, max_query_length=opts.max_query_length,
                               padding=True)
            metas.append((enc, ctx))
            return BatchEncoding({k: enc[k] for k in names if k in enc}, tensor_type=backend.tensor_type)

        predictions: list[str] = []
        n_windows = 0
        contexts = _column(split, "text_pair")
        row = 0
        for k, (_, out) in enumerate(predict_batches(backend, split, batch_size=batch_size,
                                                     progress=progress, encode=encode, desc="SQuAD EM/F1")):
            if "start_logits" not in out or "end_logits" not in out:
                raise CompressorError(
                    f"the model outputs {sorted(out)}, not start_logits and end_logits",
                    hint="fine-tune a question-answering head on this task first (a 'finetune' stage)")
            enc, ctx = metas[k]
            sample_map = enc["overflow_to_sample_mapping"]
            n_windows += len(sample_map)
            n_rows = max(sample_map) + 1 if sample_map else 0
            per_row: list[list[int]] = [[] for _ in range(n_rows)]
            for w, s in enumerate(sample_map):
                per_row[s].append(w)
            for s in range(n_rows):
                context = contexts[row + s]
                feats = [(out["start_logits"][w], out["end_logits"][w], context_offsets(enc, w, ctx))
                         for w in per_row[s]]
                predictions.append(best_span(context, feats, n_best=opts.n_best,
                                             max_answer_length=opts.max_answer_length))
            row += n_rows
        golds = [a["text"] for a in _column(split, "label")]
        scores = np.asarray([squad_scores(p, g) for p, g in zip(predictions, golds)], dtype=np.float64)
        preds = {"prediction": np.asarray(predictions, dtype=str)}
        if "id" in split.column_names:
            preds["id"] = np.asarray(_column(split, "id"), dtype=str)
        return Scored(
            arrays={"exact_match": scores[:, 0], "f1": scores[:, 1]},
            extra={"windows": int(n_windows), "empty_predictions": int(sum(1 for p in predictions if not p)),
                   "max_seq_length": int(max_length), "doc_stride": opts.doc_stride},
            predictions=preds,
        )

    def metric_matrix(self, weights: "np.ndarray", scored: Scored, data: "TaskData") -> dict[str, "np.ndarray"]:
        """Mean exact match and F1 of each resample of questions (weighted means)."""
        import numpy as np

        w = np.asarray(weights, dtype=np.float64)
        total = w.sum(axis=1)
        total = np.where(total > 0, total, 1.0)
        return {"exact_match": w @ scored.arrays["exact_match"] / total,
                "f1": w @ scored.arrays["f1"] / total}

    def loading_snippet(self, path: str = "path/to/this/folder") -> list[str]:
        return [*super().loading_snippet(path), "",
                "# or: transformers.pipeline(\"question-answering\", model=model, tokenizer=tokenizer)"
                "(question=..., context=...)"]


# --- windows and post-processing ----------------------------------------------------------


def cut_questions(tokenizer: Any, questions: list[str], max_query_length: int) -> list[str]:
    """Questions with leading whitespace removed and cut after ``max_query_length`` tokens
    (at a token's last character)."""
    questions = [q.lstrip() for q in questions]
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for q, offs in zip(questions, enc["offset_mapping"]):
        out.append(q[: offs[max_query_length - 1][1]] if len(offs) > max_query_length else q)
    return out


def windows(tokenizer: Any, questions: list[str], contexts: list[str], *, max_length: int,
            doc_stride: int, max_query_length: int, padding: bool) -> tuple[Any, int]:
    """Tokenise question/context pairs into windows over the context.

    :returns: ``(encoding, context_sequence_id)``: a ``BatchEncoding`` (lists) with
        ``offset_mapping`` and ``overflow_to_sample_mapping`` (window -> row), and which
        sequence id (0 or 1) is the context (1 unless the tokenizer pads on the left, when
        the context comes first, as ``run_qa.py`` does).
    :raises CompressorError: when ``max_length`` leaves no room for the context.
    """
    questions = cut_questions(tokenizer, list(questions), max_query_length)
    right = getattr(tokenizer, "padding_side", "right") == "right"
    room = max_length - max_query_length - tokenizer.num_special_tokens_to_add(pair=True)
    if doc_stride >= room:
        raise CompressorError(
            f"windows of {max_length} tokens leave {room} for the context after the question "
            f"({max_query_length}) and special tokens: too few for a stride of {doc_stride}",
            hint="raise max_length / task.options.max_seq_length or lower task.options.doc_stride")
    first, second = (questions, list(contexts)) if right else (list(contexts), questions)
    enc = tokenizer(first, second, truncation="only_second" if right else "only_first",
                    max_length=max_length, stride=doc_stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding=padding)
    return enc, 1 if right else 0


def cls_index(input_ids: list[int], tokenizer: Any) -> int:
    """Position of the classifier token in a window (0 when the tokenizer has none)."""
    cls = tokenizer.cls_token_id
    return input_ids.index(cls) if cls is not None and cls in input_ids else 0


def answer_tokens(enc: Any, i: int, ctx: int, start_char: int, end_char: int, cls: int) -> tuple[int, int]:
    """Token indices of the characters ``[start_char, end_char)`` in window ``i``, or
    ``(cls, cls)`` when the window's context does not hold the whole answer."""
    seq = enc.sequence_ids(i)
    offsets = enc["offset_mapping"][i]
    ctx_tokens = [t for t, s in enumerate(seq) if s == ctx]
    if not ctx_tokens:
        return cls, cls
    first, last = ctx_tokens[0], ctx_tokens[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return cls, cls
    s = first
    while s <= last and offsets[s][0] <= start_char:
        s += 1
    e = last
    while e >= first and offsets[e][1] >= end_char:
        e -= 1
    return s - 1, e + 1


def context_offsets(enc: Any, i: int, ctx: int) -> list[tuple[int, int] | None]:
    """Window ``i``'s character offsets, ``None`` for every token outside the context."""
    seq = enc.sequence_ids(i)
    return [tuple(o) if s == ctx else None for o, s in zip(enc["offset_mapping"][i], seq)]


def best_span(context: str, features: list[tuple[Any, Any, list[tuple[int, int] | None]]], *,
              n_best: int, max_answer_length: int) -> str:
    """The answer text of one question from its windows (SQuAD v1 post-processing).

    :param context: the question's context.
    :param features: per window ``(start_logits, end_logits, offsets)``: float arrays
        ``(tokens,)`` and the offsets of :func:`context_offsets`.
    :param n_best: top start and end positions paired per window.
    :param max_answer_length: longest span in tokens.
    :returns: ``context[start_char:end_char]`` of the best-scoring valid span, or ``""``
        when no span is valid.
    """
    import numpy as np

    best_score, best = -math.inf, ""
    for start_logits, end_logits, offsets in features:
        n = len(offsets)
        starts = np.argsort(start_logits[:n])[::-1][:n_best]
        ends = np.argsort(end_logits[:n])[::-1][:n_best]
        for s in starts:
            if offsets[s] is None:
                continue
            for e in ends:
                if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[s]) + float(end_logits[e])
                if score > best_score:
                    best_score, best = score, context[offsets[s][0]:offsets[e][1]]
    return best


def _need_fast(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise CompressorError(
            f"question answering needs a fast tokenizer (offsets); {type(tokenizer).__name__} is not",
            hint="save the model with a tokenizer.json (AutoTokenizer.from_pretrained(..., use_fast=True))",
        )


def _column(ds: "datasets.Dataset", name: str) -> list[Any]:
    return ds.with_format("arrow")[name].to_pylist()
