"""Conformance kit: pytest helpers that check a strategy the way compressor uses it.

A plugin author calls these from their own tests; the built-in strategies pass the same
checks (``tests/plugins/test_conformance.py``). Each check raises ``AssertionError`` (or
the library error it found) with a message saying what is wrong.

- :func:`check_config_roundtrip`: the config validates, dumps to YAML, loads back equal.
- :func:`check_rejects_unknown_keys`: a misspelled key is an error, and in a recipe the
  error names the file, line and key.
- :func:`check_runs_in_recipe`: a recipe using the strategy runs through the real
  orchestrator on a tiny random model of one architecture (:data:`ARCHITECTURES`) and one
  task (:data:`TASKS`: classification, token classification or extractive QA, with tiny
  CSV, CoNLL or SQuAD files): the artifact is written where it belongs, has the promised
  format and lineage, reloads in the evaluator's backend and scores the task with finite
  outputs, and the evaluator (:func:`compressor.evaluate.evaluate_artifacts`) measures the
  task's metric, size and latency.
- :func:`check_clear_errors`: on an input folder that is not a model, ``apply`` raises a
  :class:`compressor.CompressorError` (a message for the user), not a bare exception.
- :func:`check_strategy` runs them all; :class:`StrategyConformance` is a test-class base.

A strategy that accepts a task (:meth:`compressor.Strategy.supports_task`) is run on it:
:func:`check_strategy` and :class:`StrategyConformance` cover every task of :data:`TASKS` the
strategy supports.

Unit tests of a strategy's own logic call ``apply`` directly: :func:`apply_strategy` (one
call, checked as the orchestrator checks it) or :func:`make_context` (a
:class:`compressor.StageContext` rooted in a scratch folder) with :func:`tiny_model` and
:func:`tiny_task_data`.

A check never fails because of the host's hardware: a strategy that cannot run on this
machine raises :class:`compressor.HardwareUnsupported` (directly, or as the ``__cause__`` of
the error that ends the run), and the check calls ``pytest.skip("<strategy>: <why>")``
instead (:func:`skip_on_unsupported_hardware`). Tests of hardware-dependent choices fake the
hardware instead (e.g. the quantisation plugin's ``COMPRESSOR_CPUINFO``).

Example (a plugin's own ``tests/test_conformance.py``)::

    from compressor.testing import StrategyConformance

    class TestLowRank(StrategyConformance):
        strategy = "lowrank.svd"
        config = {"rank": 8}
        architectures = ("bert", "roberta", "distilbert")

Tiny models are built from configs (hidden 32, 2 layers, 2 heads), each with its family's
real kind of tokenizer over a small vocabulary (:func:`tiny_tokenizer`): WordPiece for BERT,
DistilBERT, ELECTRA and MPNet, byte-level BPE for RoBERTa and ModernBERT, SentencePiece
Unigram for XLM-RoBERTa and DeBERTa-v2. Nothing is downloaded. This module imports pytest,
torch, transformers and tokenizers only inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from .errors import CompressorError, HardwareUnsupported, RecipeError

if TYPE_CHECKING:  # pragma: no cover
    from .artifact import Artifact
    from .pipeline import RunResult
    from .plugins import Plugins
    from .strategy import StageContext, Strategy
    from .task import TaskData

__all__ = [
    "sentence_transformers_files",
    "ARCHITECTURES",
    "NER_TAGS",
    "TASKS",
    "TINY_QA_OPTIONS",
    "FAST_EVALUATION",
    "StrategyConformance",
    "TOKENIZER_MODELS",
    "apply_strategy",
    "check_artifact_reloads",
    "check_clear_errors",
    "check_config_roundtrip",
    "check_rejects_unknown_keys",
    "check_runs_in_recipe",
    "check_strategy",
    "hardware_refusal",
    "make_context",
    "plugins_with",
    "skip_on_unsupported_hardware",
    "supported_tasks",
    "tiny_model",
    "tiny_task_data",
    "tiny_tokenizer",
    "write_tiny_task_files",
]

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "terrible", "horrible", "poor", "boring"]
FILLER = ["the", "a", "movie", "film", "story", "plot", "actor", "scene", "is", "was", "very",
          "really", "quite", "and", "but", "with", "of", "it", "this", "that"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

#: Settings that make the evaluator quick on tiny models (latency still measured).
FAST_EVALUATION: dict[str, Any] = {
    "baseline": False,
    "batch_sizes": [2],
    "sequence_length": 16,
    "threads": 1,
    "warmup": 1,
    "min_runs": 2,
    "max_runs": 2,
    "min_time_s": 0.0,
}

#: Tasks the kit builds tiny data and models for -> labels of the head (classes, IOB2 tags;
#: a QA head has two outputs, start and end).
TASKS: dict[str, int] = {"text-classification": 2, "token-classification": 5, "question-answering": 2}

#: Tags of the tiny token-classification task (``O`` first, as the task orders them).
NER_TAGS = ["O", "B-negative", "I-negative", "B-positive", "I-positive"]

#: ``task.options`` of the tiny QA task: windows that fit a tiny model's 64 positions, so
#: that every context is cut into two or more windows.
TINY_QA_OPTIONS: dict[str, int] = {"max_seq_length": 24, "doc_stride": 6, "max_query_length": 6, "max_answer_length": 5}

INTENSIFIERS = ("very", "really")

_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _config(architecture: str, tokenizer: Any, num_labels: int, overrides: Mapping[str, Any] | None = None) -> Any:
    """The tiny model config of ``architecture``, with the tokenizer's vocabulary size and
    special-token ids (RoBERTa-family position ids start after the padding id), and
    ``overrides`` passed to the config's constructor (so that derived fields, such as
    ModernBERT's ``layer_types``, follow them)."""
    import transformers as T

    ids = dict(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    common = {**dict(_TINY, vocab_size=len(tokenizer), num_labels=num_labels, **ids), **(overrides or {})}
    if architecture == "bert":
        return T.BertConfig(max_position_embeddings=64, **common)
    if architecture == "roberta":
        return T.RobertaConfig(max_position_embeddings=66, type_vocab_size=1, **common)
    if architecture == "xlm-roberta":
        return T.XLMRobertaConfig(max_position_embeddings=66, type_vocab_size=1, **common)
    if architecture == "distilbert":
        return T.DistilBertConfig(
            vocab_size=len(tokenizer), dim=common["hidden_size"], n_layers=common["num_hidden_layers"],
            n_heads=common["num_attention_heads"], hidden_dim=common["intermediate_size"],
            max_position_embeddings=64, num_labels=num_labels, pad_token_id=tokenizer.pad_token_id,
        )
    if architecture == "electra":
        return T.ElectraConfig(max_position_embeddings=64, embedding_size=32, **common)
    if architecture == "mpnet":
        return T.MPNetConfig(max_position_embeddings=66, **common)
    if architecture == "deberta-v2":
        return T.DebertaV2Config(max_position_embeddings=64, **common)
    if architecture == "modernbert":
        return T.ModernBertConfig(
            **common, max_position_embeddings=64, cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id, global_attn_every_n_layers=1, local_attention=16,
        )
    raise ValueError(f"unknown architecture {architecture!r}; known: {list(ARCHITECTURES)}")


#: Architecture name -> whether its tokenizer returns ``token_type_ids``.
ARCHITECTURES: dict[str, bool] = {
    "bert": True,
    "roberta": False,
    "distilbert": False,
    "electra": True,
    "mpnet": False,
    "deberta-v2": True,
    "xlm-roberta": False,
    "modernbert": False,
}

#: Architecture name -> the tokenizer model of its real checkpoints, which :func:`tiny_model`
#: builds offline: ``"wordpiece"`` (BERT's, lower-cased), ``"byte-level-bpe"`` (GPT-2's
#: byte-level BPE: every byte string encodes without unknown tokens) or ``"unigram"``
#: (SentencePiece Unigram with ``▁`` word boundaries).
TOKENIZER_MODELS: dict[str, str] = {
    "bert": "wordpiece",
    "roberta": "byte-level-bpe",
    "distilbert": "wordpiece",
    "electra": "wordpiece",
    "mpnet": "wordpiece",
    "deberta-v2": "unigram",
    "xlm-roberta": "unigram",
    "modernbert": "byte-level-bpe",
}


def _training_text() -> list[str]:
    """What the tiny tokenizers are trained on: the words of the tiny task, alone and in
    :func:`tiny_task_data`-like sentences."""
    words = POSITIVE + NEGATIVE + FILLER
    return words + _rows(256, 12345)["text"]


@functools.lru_cache(maxsize=None)
def _bpe_merges() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """A byte-level BPE trained on :func:`_training_text`: (tokens in id order, merges).

    The 256 byte symbols are all in the vocabulary (as in GPT-2 and RoBERTa), then up to 96
    merged tokens; no special tokens (each family places its own).
    """
    import json as _json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + 96, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(_training_text(), trainer)
    model = _json.loads(tok.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = tuple(tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"])
    return tuple(t for t, _ in vocab), merges  # type: ignore[return-value]


@functools.lru_cache(maxsize=None)
def _unigram_pieces() -> tuple[tuple[str, float], ...]:
    """A SentencePiece-style Unigram model for :func:`_training_text`: ``(piece, log
    probability)`` pairs, no special tokens.

    Pieces: every word of the tiny task with a word-start mark (``▁good``), scored by its
    log frequency in the training text; the mark alone; and single characters (ASCII letters,
    digits, punctuation) with low scores, so that other words split into characters, as
    rare words do in a real SentencePiece model, and other characters are unknown.
    """
    import math
    import string
    from collections import Counter

    counts = Counter(w for line in _training_text() for w in line.split())
    total = sum(counts.values())
    words = [("\u2581" + w, math.log(n / total)) for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    chars = [(c, -12.0) for c in string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,!?'-"]
    return tuple(words + [("\u2581", -10.0)] + chars)


def tiny_tokenizer(architecture: str) -> Any:
    """The tokenizer :func:`tiny_model` saves for ``architecture``: the real family's
    tokenizer class and model, over a tiny vocabulary, built offline.

    - ``bert``, ``electra``, ``distilbert``: ``BertTokenizer`` / ``DistilBertTokenizer``
      (lower-cased WordPiece, ``[CLS] ... [SEP]``) over the 37 words and specials of the tiny
      task;
    - ``mpnet``: ``MPNetTokenizer`` (the same WordPiece with ``<s> ... </s>``, ``<pad>`` = 1,
      ``<mask>`` last);
    - ``roberta``: ``RobertaTokenizer`` (byte-level BPE: 256 byte symbols plus about 96
      merges, ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` last);
    - ``modernbert``: a ``tokenizers`` byte-level BPE with ``[CLS] ... [SEP]`` and the
      special tokens last, as ModernBERT's OLMo-derived tokenizer;
    - ``xlm-roberta``: ``XLMRobertaTokenizer`` (SentencePiece Unigram over the task's words
      and single characters, ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>``
      last);
    - ``deberta-v2``: ``DebertaV2Tokenizer`` (SentencePiece Unigram, ``[PAD]`` 0, ``[CLS]``
      1, ``[SEP]`` 2, ``[UNK]`` 3, ``[MASK]`` last, ``token_type_ids``).

    The byte-level BPE is trained in-process with the ``tokenizers`` library on the tiny
    task's sentences and the Unigram pieces are scored by their frequency there (milliseconds,
    cached per process; nothing is downloaded); ``model_max_length`` is 64 and
    ``model_input_names`` follow :data:`ARCHITECTURES`.

    :param architecture: a key of :data:`ARCHITECTURES`.
    :returns: a new tokenizer object (``save_pretrained`` it; ``AutoTokenizer`` reloads the
        same class).
    :raises ValueError: for an unknown architecture.
    """
    import transformers as T

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {list(ARCHITECTURES)}")
    inputs = ["input_ids", "attention_mask"]
    if ARCHITECTURES[architecture]:
        inputs.insert(1, "token_type_ids")
    common: dict[str, Any] = {"model_max_length": 64, "model_input_names": inputs}
    words = POSITIVE + NEGATIVE + FILLER
    model = TOKENIZER_MODELS[architecture]
    if model == "wordpiece":
        if architecture == "mpnet":
            tokens = ["<s>", "<pad>", "</s>", "[UNK]", *words, "<mask>"]
            return T.MPNetTokenizer(vocab={t: i for i, t in enumerate(tokens)}, **common)
        cls = T.DistilBertTokenizer if architecture == "distilbert" else T.BertTokenizer
        return cls(vocab={t: i for i, t in enumerate(SPECIAL + words)}, **common)
    if model == "unigram":
        pieces = list(_unigram_pieces())
        if architecture == "xlm-roberta":
            first = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
            return T.XLMRobertaTokenizer(vocab=first + pieces + [("<mask>", 0.0)], **common)
        first = [("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0)]
        return T.DebertaV2Tokenizer(vocab=first + pieces + [("[MASK]", 0.0)], **common)
    tokens, merges = _bpe_merges()
    if architecture == "roberta":
        vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *tokens, "<mask>"])}
        return T.RobertaTokenizer(vocab=vocab, merges=list(merges), **common)
    return _modernbert_tokenizer(tokens, merges, common)


def _modernbert_tokenizer(tokens: tuple[str, ...], merges: tuple[tuple[str, str], ...], common: dict[str, Any]) -> Any:
    """ModernBERT's layout: a byte-level BPE (no prefix space) with ``[UNK] [CLS] [SEP]
    [PAD] [MASK]`` after the merged tokens and a ``[CLS] $A [SEP]`` template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    vocab = {t: i for i, t in enumerate([*tokens, *specials])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(merges), unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]", **common,
    )


def tiny_model(
    architecture: str, path: str | Path, *, num_labels: int | None = None, seed: int = 0,
    task: str = "text-classification", config: Mapping[str, Any] | None = None,
) -> Path:
    """Save a randomly initialised tiny model with the head of ``task`` and its tokenizer to
    ``path``.

    :param architecture: a key of :data:`ARCHITECTURES` (``"bert"``, ``"roberta"``, ...).
    :param path: folder to write (created); Hugging Face layout, safetensors weights.
    :param num_labels: outputs of the head per example (classification) or per token (token
        classification); default: those of :func:`tiny_task_data` for ``task`` (2 classes,
        5 IOB2 tags; a QA head always has 2, start and end).
    :param seed: ``torch.manual_seed`` for the initialisation.
    :param task: one of :data:`TASKS`; the model is the task's Auto class
        (``AutoModelForSequenceClassification``, ``...ForTokenClassification``,
        ``...ForQuestionAnswering``).
    :param config: config attributes set over the tiny ones, e.g.
        ``{"num_attention_heads": 4, "num_hidden_layers": 4}`` (a head count must divide
        the hidden size, 32).
    :returns: ``path``. The model has hidden size 32, 2 layers, 2 heads, FFN 64 (about 21k
        parameters besides the embeddings); the tokenizer is the family's real kind
        (:func:`tiny_tokenizer`, :data:`TOKENIZER_MODELS`): WordPiece with 37 to 38 tokens,
        byte-level BPE with about 360, Unigram with about 110. The config's special-token ids
        are the tokenizer's.
    :raises ValueError: for an unknown architecture or task.
    """
    import torch

    from .tasks import get_task

    _check_task(task)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(architecture)
    config = _config(architecture, tok, num_labels if num_labels is not None else TASKS[task], config)
    if task == "token-classification" and num_labels is None:
        config.id2label = dict(enumerate(NER_TAGS))
        config.label2id = {t: i for i, t in enumerate(NER_TAGS)}
    torch.manual_seed(seed)
    model = get_task(task).auto_class().from_config(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _rows(n: int, seed: int) -> dict[str, list[Any]]:
    """``n`` sentences, label 1 iff a positive cue word is present (balanced, shuffled)."""
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    texts = []
    for y in labels:
        words = rng.sample(FILLER, 5) + [rng.choice(POSITIVE if y else NEGATIVE)]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return {"text": texts, "label": labels}


def _check_task(task: str) -> None:
    """:raises ValueError: when ``task`` is not a key of :data:`TASKS`."""
    if task not in TASKS:
        raise ValueError(f"unknown conformance task {task!r}; known: {list(TASKS)}")


def _task_rows(task: str, n: int, seed: int) -> dict[str, list[Any]]:
    """``n`` rows of the tiny ``task``, in the columns the task's ``normalise`` takes.

    - ``text-classification``: :func:`_rows`.
    - ``token-classification``: the same sentences as word lists; the cue word is an entity
      of its polarity (``B-positive``), and an intensifier right before it (``very``,
      ``really``) starts the entity (``B-positive I-positive``); every other word is ``O``.
    - ``question-answering``: the question ``what is it`` over a context of the same
      sentence followed by 16 more neutral words (22 words, so that every context is cut
      into two or more windows of :data:`TINY_QA_OPTIONS`); the answer is the cue word (its
      character offset in ``answer_start``); 4 articles (``title``) per split.
    """
    base = _rows(n, seed)
    if task == "text-classification":
        return base
    if task == "token-classification":
        tokens, tags = [], []
        for text, y in zip(base["text"], base["label"]):
            words = text.split()
            kind = "positive" if y else "negative"
            row = []
            for j, w in enumerate(words):
                if w in POSITIVE or w in NEGATIVE:
                    cue = j > 0 and words[j - 1] in INTENSIFIERS
                    if cue:
                        row[-1] = f"B-{kind}"
                    row.append(f"I-{kind}" if cue else f"B-{kind}")
                else:
                    row.append("O")
            tokens.append(words)
            tags.append(row)
        return {"text": tokens, "label": tags}
    if task == "question-answering":
        rng = random.Random(seed + 1000)
        out: dict[str, list[Any]] = {"id": [], "title": [], "text": [], "text_pair": [], "label": []}
        for i, text in enumerate(base["text"]):
            words = text.split()
            k = next(j for j, w in enumerate(words) if w in POSITIVE or w in NEGATIVE)
            context = " ".join(words + rng.sample(FILLER, 16))
            start = len(" ".join(words[:k])) + (1 if k else 0)
            out["id"].append(f"s{seed}-q{i}")
            out["title"].append(f"s{seed}-article-{i % 4}")
            out["text"].append("what is it")
            out["text_pair"].append(context)
            out["label"].append({"text": [words[k]], "answer_start": [start]})
        return out
    raise ValueError(f"unknown conformance task {task!r}; known: {list(TASKS)}")


def sentence_transformers_files(
    folder: str | Path, width: int, *, mode: str = "mean", normalize: bool = True, max_seq_length: int = 48
) -> Path:
    """Make a saved encoder folder a sentence-transformers model: ``modules.json``
    (Transformer, Pooling[, Normalize]), ``1_Pooling/config.json`` and
    ``sentence_bert_config.json``, as ``SentenceTransformer.save`` writes them.

    :param width: the encoder's hidden size (the pooled embedding's width).
    :param mode: ``"mean"``, ``"cls"`` or ``"max"`` pooling.
    :param normalize: add the Normalize module (unit-length embeddings).
    :returns: ``folder``.
    """
    import json

    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": width, "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": mode == "max",
        "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
    return folder


def tiny_task_data(
    n_train: int = 64, n_eval: int = 32, *, seed: int = 0, task: str = "text-classification"
) -> "TaskData":
    """A small learnable task (``train``/``validation``/``test``) of type ``task``.

    Each sentence is five neutral words and one cue word (``good``, ``awful``, ...),
    shuffled; the cues are balanced between positive and negative (:func:`_task_rows`):

    - ``text-classification`` (``tiny-sentiment``): the label is 1 when the cue is positive,
      0 when negative; columns ``text`` and ``label`` (int64), ``label_names``
      ``["negative", "positive"]``;
    - ``token-classification`` (``tiny-ner``): the cue is a ``positive`` or ``negative``
      entity, with an intensifier before it when there is one; ``label_names``
      :data:`NER_TAGS`;
    - ``question-answering`` (``tiny-qa``): ``what is it`` over a 22-word context, answered
      by the cue word; ``options`` :data:`TINY_QA_OPTIONS`.

    :param n_train: rows of ``train``.
    :param n_eval: rows of ``validation`` and of ``test`` each.
    :param seed: seed of the sentences (split ``i`` of train/validation/test uses
        ``seed + i``): the same arguments give the same rows.
    :param task: one of :data:`TASKS`.
    :returns: a :class:`compressor.TaskData`, normalised by the task as a recipe's data is.
    :raises ValueError: for an unknown task.
    """
    import datasets

    from .task import TaskData
    from .tasks import get_task

    _check_task(task)
    sizes = (("train", n_train), ("validation", n_eval), ("test", n_eval))
    raw = {name: datasets.Dataset.from_dict(_task_rows(task, n, seed + i)) for i, (name, n) in enumerate(sizes)}
    if task == "text-classification":
        return TaskData(type=task, splits=raw, label_names=["negative", "positive"], name="tiny-sentiment")
    from .sources.datasets import _quiet_datasets

    handler = get_task(task)
    with _quiet_datasets():
        splits, names = handler.normalise(raw, {name: f"tiny {name} split" for name in raw}, None)
    qa = task == "question-answering"
    return TaskData(
        type=task, splits=splits, label_names=names, has_text_pair=qa,
        name="tiny-qa" if qa else "tiny-ner",
        options=handler.Options.model_validate(TINY_QA_OPTIONS) if qa else None,
    )


def write_tiny_task_files(
    folder: str | Path, n_train: int = 64, n_eval: int = 32, *, seed: int = 0,
    task: str = "text-classification",
) -> dict[str, str]:
    """Write the :func:`tiny_task_data` splits as files for a recipe's ``task.data.files``:
    CSV (``text,label``) for classification, CoNLL (``word<TAB>tag``, a blank line between
    sentences) for token classification, SQuAD v1.1 JSON for question answering.

    :param folder: where ``train``, ``validation`` and ``test`` files are written (created).
    :param n_train: rows of ``train``.
    :param n_eval: rows of ``validation`` and of ``test`` each.
    :param seed: as for :func:`tiny_task_data`.
    :param task: one of :data:`TASKS`.
    :returns: split name -> file name (relative to ``folder``).
    :raises ValueError: for an unknown task.
    """
    import csv

    _check_task(task)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (name, n) in enumerate((("train", n_train), ("validation", n_eval), ("test", n_eval))):
        rows = _task_rows(task, n, seed + i)
        if task == "token-classification":
            files[name] = f"{name}.conll"
            lines = ["\n".join(f"{w}\t{t}" for w, t in zip(ws, ts)) for ws, ts in zip(rows["text"], rows["label"])]
            (folder / files[name]).write_text("\n\n".join(lines) + "\n", encoding="utf-8")
        elif task == "question-answering":
            files[name] = f"{name}.json"
            articles: dict[str, list[dict[str, Any]]] = {}
            for qid, title, question, context, answers in zip(
                rows["id"], rows["title"], rows["text"], rows["text_pair"], rows["label"]
            ):
                articles.setdefault(title, []).append({"context": context, "qas": [{
                    "id": qid, "question": question,
                    "answers": [{"text": t, "answer_start": a} for t, a in zip(answers["text"], answers["answer_start"])],
                }]})
            doc = {"version": "1.1", "data": [{"title": t, "paragraphs": ps} for t, ps in articles.items()]}
            (folder / files[name]).write_text(json.dumps(doc), encoding="utf-8")
        else:
            files[name] = f"{name}.csv"
            with open(folder / files[name], "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["text", "label"])
                writer.writerows(zip(rows["text"], rows["label"]))
    return files


# --- plugins ---------------------------------------------------------------------------------


def plugins_with(*modules: Any, entry_points: bool = True) -> "Plugins":
    """Plugins loaded with extra plugin modules (or objects with ``@hookimpl`` functions).

    Use this to test a plugin that is not installed: ``plugins_with(my_package.plugin)``.
    With ``entry_points=True`` the installed plugins (the built-ins included) load too;
    a plugin that is both installed and passed here registers its names twice, which is a
    :class:`compressor.PluginError`: pass ``entry_points=False`` then.
    """
    from .plugins import Plugins

    extra = [(getattr(m, "__name__", type(m).__name__), m) for m in modules]
    return Plugins().load(entry_points_enabled=entry_points, extra=extra)


def _resolve(strategy: "str | type[Strategy]", plugins: "Plugins | None") -> tuple["type[Strategy]", "Plugins"]:
    from .plugins import get_plugins

    plugins = plugins or get_plugins()
    if isinstance(strategy, str):
        return plugins.strategy(strategy), plugins
    registered = plugins.strategies.get(strategy.name)
    if registered is not strategy:
        raise AssertionError(
            f"strategy class {strategy.__name__} ({strategy.name!r}) is not registered in the "
            "plugins given; pass plugins=compressor.testing.plugins_with(your_plugin_module)"
        )
    return strategy, plugins


# --- contexts: calling apply in a unit test -----------------------------------------------


def make_context(
    tmp_path: str | Path,
    *,
    stage_name: str = "stage",
    data: "TaskData | None" = None,
    artifacts: "dict[str, Artifact] | None" = None,
    seed: int = 0,
    device: str = "cpu",
    plugins: "Plugins | None" = None,
    base_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    recipe_hash: str | None = None,
) -> "StageContext":
    """A :class:`compressor.StageContext` like the orchestrator's, for calling ``apply`` in a
    unit test.

    :param tmp_path: a scratch folder (pytest's ``tmp_path``); the context's
        ``output_dir`` is ``<tmp_path>/<stage_name>/output`` (created, empty) and its
        ``work_dir`` ``<tmp_path>/<stage_name>/work`` (created).
    :param stage_name: the stage's name (the new artifact's name).
    :param data: the task; default :func:`tiny_task_data` ``()``.
    :param artifacts: earlier artifacts by name (a teacher, the baseline).
    :param seed: the run's seed.
    :param device: ``"cpu"`` or ``"cuda"``.
    :param plugins: the registries the context's ``load_data``, ``resolve_model``,
        ``load_model`` and ``save_model`` use (:func:`plugins_with` for a plugin that is not
        installed); default: the installed plugins.
    :param base_dir: the "recipe folder" relative paths are resolved against; default
        ``tmp_path``.
    :param cache_dir: the cache root; default: compressor's (``$COMPRESSOR_CACHE`` or
        ``~/.cache/compressor``), so packaged models and data sets are not fetched twice.
    :param recipe_hash: copied into the lineage.
    :returns: the context (progress bars off, logger ``compressor.testing``).
    :raises ValueError: when the output folder exists and is not empty.
    """
    import logging

    from .plugins import get_plugins
    from .strategy import StageContext

    tmp_path = Path(tmp_path)
    out = tmp_path / stage_name / "output"
    work = tmp_path / stage_name / "work"
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise ValueError(f"{out} is not empty: give each context its own stage_name or tmp_path")
    work.mkdir(parents=True, exist_ok=True)
    return StageContext(
        stage_name=stage_name,
        output_dir=out,
        work_dir=work,
        data=data if data is not None else tiny_task_data(),
        seed=seed,
        artifacts=dict(artifacts or {}),
        recipe_hash=recipe_hash,
        logger=logging.getLogger("compressor.testing"),
        progress=False,
        device=device,
        base_dir=Path(base_dir) if base_dir is not None else tmp_path,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
        plugins=plugins if plugins is not None else get_plugins(),
    )


def apply_strategy(
    strategy: "str | type[Strategy]",
    source: "Artifact | str | Path",
    config: Any,
    tmp_path: str | Path,
    *,
    plugins: "Plugins | None" = None,
    **context: Any,
) -> "Artifact":
    """Run one strategy's ``apply`` outside a recipe, checked as the orchestrator checks it.

    :param strategy: a registered name or a registered :class:`compressor.Strategy` class.
    :param source: the input: an :class:`compressor.Artifact`, or a model folder (taken as a
        ``"pytorch"`` artifact named ``baseline``).
    :param config: a mapping (validated by the strategy's ``Config``) or a ``Config`` instance.
    :param tmp_path: scratch folder for the context (see :func:`make_context`).
    :param plugins: where ``strategy`` is looked up, also given to the context; default: the
        installed plugins.
    :param context: more :func:`make_context` arguments (``data``, ``artifacts``, ``seed``,
        ``stage_name``, ...); ``artifacts`` gets the input as ``"baseline"`` unless it names one.
    :returns: the artifact ``apply`` returned (in the context's ``output_dir``, with its
        ``lineage.json``).
    :raises compressor.StageError: when the input's format is not one the strategy takes
        (as the orchestrator refuses it), or whatever ``apply`` raises.
    :raises AssertionError: when ``apply`` returns something else than an artifact in the
        context's ``output_dir``.
    """
    from pydantic import BaseModel

    from .artifact import Artifact
    from .errors import StageError

    cls, plugins = _resolve(strategy, plugins)
    artifact = source if isinstance(source, Artifact) else Artifact(name="baseline", path=Path(source))
    if artifact.format not in cls.input_formats:
        raise StageError(
            f"strategy {cls.name!r} takes {list(cls.input_formats)} models, but its input "
            f"{artifact.name!r} is a {artifact.format!r} model"
        )
    validated = config if isinstance(config, BaseModel) else cls.Config.model_validate(config)
    artifacts = {artifact.name: artifact, **context.pop("artifacts", {})}
    ctx = make_context(tmp_path, plugins=plugins, artifacts=artifacts, **context)
    with plugins.scope():  # as in a run: lookups without a registry get these plugins'
        produced = cls().apply(artifact, validated, ctx)
    assert isinstance(produced, Artifact), f"{cls.name}: apply() returned {type(produced).__name__}, not an Artifact"
    assert Path(produced.path).resolve() == ctx.output_dir.resolve(), (
        f"{cls.name}: apply() wrote its artifact to {produced.path}, not to context.output_dir"
    )
    return produced


# --- hardware ---------------------------------------------------------------------------------


def hardware_refusal(exc: BaseException | None) -> HardwareUnsupported | None:
    """The :class:`compressor.HardwareUnsupported` behind ``exc``, if any.

    :param exc: an exception raised by a strategy or a run.
    :returns: ``exc`` itself when it is one, else the first one along its ``__cause__`` chain
        (``raise ... from exc`` wrappers); ``None`` otherwise. ``__context__`` is not
        followed: an error raised while handling a refusal is a bug of its own.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, HardwareUnsupported):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__
    return None


@contextlib.contextmanager
def skip_on_unsupported_hardware(strategy: str) -> Iterator[None]:
    """Turn a hardware refusal raised inside the block into a pytest skip with its reason.

    :param strategy: the strategy name, first in the skip reason.
    :raises pytest.skip.Exception: ``"<strategy>: <message>"`` where the block raised
        :class:`compressor.HardwareUnsupported` (see :func:`hardware_refusal`); any other
        exception propagates unchanged.
    """
    try:
        yield
    except Exception as exc:
        refusal = hardware_refusal(exc)
        if refusal is None:
            raise
        import pytest

        pytest.skip(f"{strategy}: {refusal.message}")


# --- checks ----------------------------------------------------------------------------------


def check_config_roundtrip(strategy: "str | type[Strategy]", config: dict[str, Any], *, plugins: "Plugins | None" = None) -> Any:
    """The config validates, dumps to YAML and loads back to an equal config.

    Also checks the class has a ``name``, a one-line ``description``, a ``Config`` whose
    fields all have a description, and that the model forbids unknown keys.

    :returns: the validated config instance.
    """
    import yaml

    cls, _ = _resolve(strategy, plugins)
    assert cls.name, f"{cls.__name__} has no name"
    assert cls.description and "\n" not in cls.description.strip(), f"{cls.name}: description must be one line"
    assert cls.Config.model_config.get("extra") == "forbid", f"{cls.name}: Config must set extra='forbid'"
    undocumented = [n for n, f in cls.Config.model_fields.items() if not f.description]
    assert not undocumented, f"{cls.name}: Config fields without Field(description=...): {undocumented}"
    validated = cls.Config.model_validate(config)
    text = yaml.safe_dump(validated.model_dump(mode="json"), sort_keys=False)
    again = cls.Config.model_validate(yaml.safe_load(text))
    assert again == validated, f"{cls.name}: config changed through YAML:\n{text}"
    assert again.model_dump(mode="json") == validated.model_dump(mode="json")
    return validated


def _recipe_text(name: str, model_dir: Path, files: dict[str, str], stages: list[dict[str, Any]],
                 evaluation: dict[str, Any], task_type: str | None = None,
                 options: dict[str, Any] | None = None) -> str:
    import yaml

    recipe = {
        "version": 1,
        "name": name,
        "seed": 0,
        "model": {"name": str(model_dir), "source": "local"},
        "task": {**({"type": task_type} if task_type else {}), "data": {"files": files},
                 **({"options": options} if options else {})},
        "evaluation": evaluation,
        "stages": stages,
    }
    return yaml.safe_dump(recipe, sort_keys=False)


def check_rejects_unknown_keys(
    strategy: "str | type[Strategy]",
    config: dict[str, Any],
    tmp_path: str | Path,
    *,
    plugins: "Plugins | None" = None,
) -> RecipeError:
    """A misspelled config key is rejected, in Python and in a recipe (with file:line).

    :param tmp_path: a scratch folder (pytest's ``tmp_path``).
    :returns: the :class:`compressor.RecipeError` the recipe raised.
    """
    from pydantic import ValidationError

    from .recipe import load_recipe

    cls, plugins = _resolve(strategy, plugins)
    bad = {**config, "definitely_not_a_key": 1}
    try:
        cls.Config.model_validate(bad)
    except ValidationError as exc:
        assert any(e["type"] == "extra_forbidden" for e in exc.errors()), exc
    else:
        raise AssertionError(f"{cls.name}: Config accepted an unknown key")
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    recipe = tmp_path / "unknown-key.yaml"
    stages = [{"name": "stage", "strategy": cls.name, "config": bad}]
    # a task the strategy accepts: the config check comes after the task check
    with plugins.scope():  # task_refusal looks the task up by name
        task_type = next(
            (t for t in ("text-classification", *sorted(plugins.tasks)) if cls.supports_task(t)), None
        )
    recipe.write_text(
        _recipe_text("unknown-key", tmp_path, {"train": "train.csv"}, stages, {}, task_type),
        encoding="utf-8",
    )
    try:
        load_recipe(recipe, plugins=plugins)
    except RecipeError as exc:
        assert "definitely_not_a_key" in exc.message, exc.format()
        assert exc.key and exc.key.startswith("stages[0].config"), exc.format()
        assert exc.where and exc.where.startswith(str(recipe)) and exc.where.rsplit(":", 1)[1].isdigit(), exc.format()
        return exc
    raise AssertionError(f"{cls.name}: a recipe with an unknown config key validated")


def check_artifact_reloads(
    artifact: "Artifact",
    data: "TaskData",
    *,
    expected_format: str | None = None,
    plugins: "Plugins | None" = None,
) -> Any:
    """The artifact's folder reloads as written and its model scores the task with finite
    outputs.

    :param artifact: an artifact returned by a strategy.
    :param data: the task (its first 8 ``test`` rows are fed to the model).
    :param expected_format: the strategy's ``produces``.
    :param plugins: where the artifact's backend and the task are looked up (default: the
        installed plugins).
    :returns: for classification the logits, float32 ``(n, num_labels)``; for any other
        task its :class:`compressor.tasks.Scored` (``task.score`` on those rows).
    """
    import numpy as np

    from .artifact import Artifact
    from .evaluate.backends import backend_for, load_backend
    from .plugins import get_plugins
    from .tasks import get_task

    plugins = plugins if plugins is not None else get_plugins()
    task = get_task(data.type, plugins.tasks)
    again = Artifact.load(artifact.path)
    assert again.name == artifact.name and again.format == artifact.format, (again, artifact)
    assert again.lineage == artifact.lineage
    if expected_format is not None:
        assert again.format == expected_format, f"artifact format {again.format!r}, strategy says {expected_format!r}"
    with plugins.scope():  # a plugin backend may look the task up by name
        backend = load_backend(backend_for(again, plugins.backends), again, task=task, threads=1)
    try:
        split = data.split("test").select(range(min(8, len(data.split("test")))))
        if data.type != "text-classification":
            scored = task.score(backend, split, data, batch_size=4)
            assert len(scored) == len(split), (len(scored), len(split))
            for name, values in scored.arrays.items():
                assert np.isfinite(np.asarray(values, dtype=np.float64)).all(), f"non-finite {name}"
            return scored
        texts = list(split["text"])
        batch = backend.encode(texts, padding=True, max_length=32)
        logits = backend.predict_logits(batch)
    finally:
        backend.close()
    assert logits.shape == (len(texts), data.num_labels), logits.shape
    assert np.isfinite(logits).all(), "the reloaded model gives non-finite logits"
    return logits


def check_runs_in_recipe(
    strategy: "str | type[Strategy]",
    config: dict[str, Any],
    architecture: str,
    tmp_path: str | Path,
    *,
    plugins: "Plugins | None" = None,
    before: Iterable[tuple[str, dict[str, Any]]] = (),
    evaluation: dict[str, Any] | None = None,
    task: str = "text-classification",
) -> "RunResult":
    """Run a recipe that applies the strategy to a tiny model, then check what it made.

    The recipe: a tiny random ``architecture`` model with the head of ``task``
    (:func:`tiny_model`), the tiny task as files (:func:`write_tiny_task_files`: CSV, CoNLL
    or SQuAD JSON), the ``before`` stages (e.g. ``[("finetune", {...})]`` for a
    strategy that needs a trained or an ONNX input), then the strategy with ``config``;
    evaluation with :data:`FAST_EVALUATION`. Checks: the run succeeds; the stage's artifact
    is in ``artifacts/NN-<stage>`` with format ``strategy.produces`` and a lineage naming
    the strategy, its validated config and its parent; it reloads
    (:func:`check_artifact_reloads`); and its evaluation record has the task's headline
    metric on the test split (accuracy, entity F1, exact match) as a fraction, a parameter
    count, bytes on disk and a positive p50 latency.

    :returns: the :class:`compressor.pipeline.RunResult`.
    :raises pytest.skip.Exception: where a stage or the evaluator refused this machine's
        hardware (:class:`compressor.HardwareUnsupported`), with its reason.
    """
    cls, plugins = _resolve(strategy, plugins)
    with skip_on_unsupported_hardware(cls.name):
        return _run_in_recipe(cls, config, architecture, Path(tmp_path), plugins, before, evaluation, task)


def _run_in_recipe(
    cls: "type[Strategy]",
    config: dict[str, Any],
    architecture: str,
    tmp_path: Path,
    plugins: "Plugins",
    before: Iterable[tuple[str, dict[str, Any]]],
    evaluation: dict[str, Any] | None,
    task: str,
) -> "RunResult":
    """The body of :func:`check_runs_in_recipe`."""
    from .pipeline import run

    model_dir = tiny_model(architecture, tmp_path / f"tiny-{architecture}", task=task)
    files = write_tiny_task_files(tmp_path, task=task)
    stages = [
        {"name": f"before{i}", "strategy": name, "config": cfg, "evaluate": False}
        for i, (name, cfg) in enumerate(before)
    ]
    stages.append({"name": "under-test", "strategy": cls.name, "config": config})
    recipe = tmp_path / "conformance.yaml"
    recipe.write_text(
        _recipe_text("conformance", model_dir, files, stages, {**FAST_EVALUATION, **(evaluation or {})},
                     task, TINY_QA_OPTIONS if task == "question-answering" else None),
        encoding="utf-8",
    )
    result = run(recipe, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    art = result.artifacts["under-test"]
    assert art.path.name == f"{len(stages):02d}-under-test", art.path
    assert art.lineage.strategy == cls.name and art.lineage.stage == "under-test"
    assert art.lineage.parent == (stages[-2]["name"] if len(stages) > 1 else "baseline")
    assert art.lineage.config == cls.Config.model_validate(config).model_dump(mode="json")
    check_artifact_reloads(art, tiny_task_data(task=task), expected_format=cls.produces, plugins=plugins)
    record = next(r for r in result.results if r["model"] == "under-test")
    assert record["strategy"] == cls.name and record["format"] == cls.produces
    acc = record["accuracy"]
    assert acc is not None and acc["n"] > 0, acc
    headline = acc.get("primary") or "accuracy"
    value = acc["metrics"][headline] if headline in acc.get("metrics", {}) else acc.get(headline)
    assert value is not None and 0.0 <= value <= 1.0, (headline, acc)
    assert record["size"]["params"] > 0 and record["size"]["disk_bytes"] > 0, record["size"]
    if (evaluation or {}).get("latency", True):
        assert record["latency"] and all(l["p50_ms"] > 0 for l in record["latency"]), record["latency"]
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done", manifest.get("error")
    return result


def check_clear_errors(
    strategy: "str | type[Strategy]",
    config: dict[str, Any],
    tmp_path: str | Path,
    *,
    plugins: "Plugins | None" = None,
) -> CompressorError:
    """On an input folder that holds no model, ``apply`` raises a :class:`CompressorError`.

    The folder has a ``config.json`` that is not a model config and no weights. A strategy
    must turn the loader's failure into a :class:`compressor.StageError` (or another
    :class:`compressor.CompressorError`) that names the artifact or its folder, so the CLI
    prints one message instead of a traceback. Check the input before the hardware: a
    :class:`compressor.HardwareUnsupported` raised here makes the check a skip.

    :returns: the error raised.
    :raises pytest.skip.Exception: where ``apply`` refused this machine's hardware first.
    """
    from .artifact import Artifact

    cls, plugins = _resolve(strategy, plugins)
    tmp_path = Path(tmp_path)
    broken = tmp_path / "not-a-model"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "config.json").write_text('{"this is": "not a model config"}', encoding="utf-8")
    fmt = cls.input_formats[0]
    artifact = Artifact(name="broken", path=broken, format=fmt)
    context = make_context(
        tmp_path, data=tiny_task_data(16, 8), artifacts={"baseline": artifact}, plugins=plugins
    )
    validated = cls.Config.model_validate(config)
    try:
        with plugins.scope():  # as in a run
            cls().apply(artifact, validated, context)
    except CompressorError as exc:
        refusal = hardware_refusal(exc)
        if refusal is not None:
            import pytest

            pytest.skip(f"{cls.name}: {refusal.message}")
        text = exc.format()
        assert "broken" in text or str(broken) in text, f"the error does not name the input: {text}"
        return exc
    except Exception as exc:  # noqa: BLE001 - the point of the check
        raise AssertionError(
            f"{cls.name}: apply() on a folder without a model raised {type(exc).__name__}: {exc}; "
            "raise compressor.StageError naming the artifact instead"
        ) from exc
    raise AssertionError(f"{cls.name}: apply() succeeded on a folder without a model")


def check_strategy(
    strategy: "str | type[Strategy]",
    config: dict[str, Any],
    tmp_path: str | Path,
    *,
    architectures: Iterable[str] = ("bert",),
    plugins: "Plugins | None" = None,
    before: Iterable[tuple[str, dict[str, Any]]] = (),
    tasks: Iterable[str] | None = None,
) -> None:
    """Every check of this module: the recipe run on each architecture (with the first of
    the tasks), then on each other task (with the first architecture).

    :param tasks: tasks of :data:`TASKS` to run; default: every one the strategy supports
        (:meth:`~compressor.Strategy.supports_task`).
    :raises pytest.skip.Exception: at the first check that meets a hardware refusal.
    """
    tmp_path = Path(tmp_path)
    cls, plugins = _resolve(strategy, plugins)
    check_config_roundtrip(cls, config, plugins=plugins)
    check_rejects_unknown_keys(cls, config, tmp_path / "keys", plugins=plugins)
    check_clear_errors(cls, config, tmp_path / "errors", plugins=plugins)
    runs = supported_tasks(cls, tasks, plugins=plugins)
    archs = list(architectures)
    for i, task in enumerate(runs):
        for arch in archs if i == 0 else archs[:1]:
            check_runs_in_recipe(cls, config, arch, tmp_path / task / arch, plugins=plugins, before=before, task=task)


def supported_tasks(strategy: "str | type[Strategy]", tasks: Iterable[str] | None = None, *,
                    plugins: "Plugins | None" = None) -> list[str]:
    """The tasks of ``tasks`` (default :data:`TASKS`) that ``strategy`` supports, in order."""
    cls, plugins = _resolve(strategy, plugins)
    with plugins.scope():  # task_refusal looks the task up by name
        return [t for t in (TASKS if tasks is None else tasks) if cls.supports_task(t)]


class StrategyConformance:
    """Base class of a pytest test class that runs the kit on one strategy.

    Subclass it in a class whose name starts with ``Test`` and set the class attributes:

    :cvar strategy: the registered strategy name.
    :cvar config: a minimal valid config (``{}`` when the defaults are enough).
    :cvar architectures: names from :data:`ARCHITECTURES` the strategy supports.
    :cvar before: stages run before it, ``[(strategy, config), ...]``.
    :cvar tasks: tasks of :data:`TASKS` to run on (``None``: every one the strategy
        supports); the architectures run with the first, the other tasks with the first
        architecture.
    :cvar plugins: a zero-argument callable returning loaded plugins (default: installed).
    """

    strategy: str = ""
    config: dict[str, Any] = {}
    architectures: tuple[str, ...] = ("bert",)
    before: tuple[tuple[str, dict[str, Any]], ...] = ()
    tasks: tuple[str, ...] | None = None
    plugins: Callable[[], "Plugins"] | None = None

    def _plugins(self) -> "Plugins | None":
        return type(self).plugins() if type(self).plugins else None  # type: ignore[misc]

    def test_config_roundtrip(self) -> None:
        check_config_roundtrip(self.strategy, self.config, plugins=self._plugins())

    def test_rejects_unknown_keys(self, tmp_path: Path) -> None:
        check_rejects_unknown_keys(self.strategy, self.config, tmp_path, plugins=self._plugins())

    def test_clear_errors(self, tmp_path: Path) -> None:
        check_clear_errors(self.strategy, self.config, tmp_path, plugins=self._plugins())

    def _tasks(self) -> list[str]:
        tasks = supported_tasks(self.strategy, self.tasks, plugins=self._plugins())
        if not tasks:
            import pytest

            pytest.skip(f"{self.strategy} supports none of the tasks {list(self.tasks or TASKS)}")
        return tasks

    def test_runs_on_each_architecture(self, tmp_path: Path) -> None:
        task = self._tasks()[0]
        for arch in self.architectures:
            check_runs_in_recipe(
                self.strategy, self.config, arch, tmp_path / arch, plugins=self._plugins(),
                before=self.before, task=task,
            )

    def test_runs_on_each_task(self, tmp_path: Path) -> None:
        for task in self._tasks()[1:]:
            check_runs_in_recipe(
                self.strategy, self.config, self.architectures[0], tmp_path / task,
                plugins=self._plugins(), before=self.before, task=task,
            )
