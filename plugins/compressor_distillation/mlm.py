"""Masked-LM data and models: corpus blocks, dynamic masking, MLM-head checks, MLM accuracy,
and the ``mlm-adapt`` strategy's implementation (heavy: torch, transformers, datasets).

- text is tokenised without special tokens, concatenated and cut into blocks of
  ``block_size - 2`` tokens, each wrapped as ``[CLS] ... [SEP]`` (transformers'
  ``examples/pytorch/language-modeling/run_mlm.py``, ``group_texts``, plus the special
  tokens the model was pre-trained with);
- masking is :class:`transformers.DataCollatorForLanguageModeling`: 15% of the non-special,
  non-padding tokens are chosen, 80% of them replaced by the mask token, 10% by a random
  token, 10% kept; ``labels`` hold the original token at chosen positions and ``-100``
  elsewhere. The collator draws new masks every time it builds a batch (dynamic masking,
  Liu et al. 2019), so each epoch sees other masks;
- MLM accuracy is top-1 accuracy at masked positions on held-out blocks, masked once with a
  fixed seed so that "before" and "after" are measured on the same masks;
- a corpus larger than memory is read as a stream (``corpus.streaming: true``,
  :func:`stream_corpus` and :func:`stream_blocks`): datasets' streaming ``IterableDataset``,
  tokenised and packed on the fly, shuffled in a bounded buffer, trained for ``max_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from compressor.errors import StageError
from compressor.training import trainer as training

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from compressor import Artifact, DataConfig, StageContext, Strategy, TaskData


def corpus_data(corpus: "DataConfig | None", context: "StageContext", *, key: str) -> "TaskData":
    """The raw-text corpus of a masked-LM stage.

    :param corpus: the stage's ``corpus`` setting (a ``task.data``-style mapping: a packaged
        data set such as ``news-articles``, a hub set or local files, relative to
        ``context.base_dir``, the recipe's folder, or the working directory when the
        orchestrator does not set it), loaded with the run's data sets and cache
        (:meth:`compressor.StageContext.load_data`); ``None`` uses the run's task data (any
        task, as :func:`task_text` turns it into raw text).
    :param context: the stage's context (seed, task data, data loading).
    :param key: the config key, for messages.
    :returns: task data with at least a ``train`` split holding a ``text`` column.
    :raises StageError: when the corpus cannot be loaded or has no ``train`` rows.
    """
    if corpus is None:
        import dataclasses

        data = context.data
        data = dataclasses.replace(data, splits={name: task_text(data, split) for name, split in data.splits.items()})
    else:
        data = context.load_data(corpus, task_type="masked-lm", key=key)
    train = data.splits.get("train")
    if train is None or len(train) == 0 or "text" not in train.column_names:
        raise StageError(
            f"the corpus {data.name!r} has no 'train' rows with a 'text' column", key=key
        )
    return data


def task_text(data: "TaskData", split: "datasets.Dataset") -> "datasets.Dataset":
    """A task split as raw text, one string per row in ``text``: the task's
    :meth:`~compressor.tasks.Task.plain_text` (a NER sentence's words joined by spaces), and
    for pairs (a QA question and its context, an NLI premise and hypothesis) both texts
    joined by a space, as BERT's masked LM reads both segments."""
    plain = data.task.plain_text(split)
    if "text_pair" in plain.column_names:
        plain = plain.map(lambda row: {"text": f"{row['text']} {row['text_pair']}"})
    return plain.select_columns(["text"])


def special_tokens_around(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special-token ids the tokenizer puts before and after one sequence.

    Found by encoding a probe word with and without special tokens (transformers 5's
    tokenizers have no ``build_inputs_with_special_tokens``), so it holds for any
    single-sequence template: ``[CLS] $A [SEP]``, ``<s> $A </s>``, ``$A </s>``.

    :returns: ``(prefix, suffix)`` token ids.
    :raises StageError: when the plain encoding is not found inside the special one.
    """
    plain = list(tokenizer("hello world", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("hello world", add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    raise StageError(
        f"cannot tell where {type(tokenizer).__name__} puts its special tokens "
        f"(plain {plain}, with specials {full})"
    )


def group_texts(
    dataset: "datasets.Dataset",
    tokenizer: "PreTrainedTokenizerBase",
    block_size: int,
    *,
    progress: bool = False,
) -> "datasets.Dataset":
    """Tokenise ``text`` and pack it into blocks of exactly ``block_size`` tokens.

    The texts are tokenised without special tokens, concatenated in order, cut into chunks of
    ``block_size - (number of special tokens the tokenizer adds)``; the remainder that does
    not fill a chunk is dropped (as ``run_mlm.py`` does). Each chunk is wrapped with the
    tokenizer's special tokens (``[CLS] ... [SEP]``, ``<s> ... </s>``).

    :param dataset: a column ``text`` (str).
    :param tokenizer: the model's tokenizer.
    :param block_size: tokens per block, special tokens included (``>= 4``).
    :param progress: show the data set library's progress bar.
    :returns: columns ``input_ids``, ``attention_mask`` (all 1), ``special_tokens_mask``
        (1 at special tokens), and ``token_type_ids`` when the tokenizer makes them; every row
        has exactly ``block_size`` tokens.
    :raises StageError: when the corpus is too short to fill one block.
    """
    import datasets as hf_datasets

    pack = block_packer(tokenizer, block_size)
    silence = not progress and hf_datasets.is_progress_bar_enabled()
    if silence:
        hf_datasets.disable_progress_bars()
    try:
        blocks = dataset.map(
            pack, batched=True, batch_size=PACK_BATCH, remove_columns=list(dataset.column_names),
            desc="packing text into blocks",
        )
    finally:
        if silence:
            hf_datasets.enable_progress_bars()
    if len(blocks) == 0:
        raise StageError(
            f"the corpus is shorter than one block of {block_size} tokens",
            hint="give more text or a smaller max_length",
        )
    return blocks


#: Texts tokenised and packed together (the remainder of each group that does not fill a
#: block is dropped, as in ``run_mlm.py``).
PACK_BATCH = 1000


def block_packer(tokenizer: "PreTrainedTokenizerBase", block_size: int) -> Any:
    """The batched ``map`` function of :func:`group_texts` and :func:`stream_blocks`:
    ``{"text": [str, ...]} -> {"input_ids": [[int] * block_size, ...], ...}``.

    :raises StageError: when ``block_size`` leaves fewer than 2 tokens of text.
    """
    prefix, suffix = special_tokens_around(tokenizer)
    chunk = block_size - len(prefix) - len(suffix)
    if chunk < 2:
        raise StageError(f"block size {block_size} leaves no room for text", key="max_length")

    def pack(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        flat = [t for row in ids for t in row]
        usable = (len(flat) // chunk) * chunk
        types = "token_type_ids" in tokenizer.model_input_names
        out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "special_tokens_mask": []}
        if types:
            out["token_type_ids"] = []
        for i in range(0, usable, chunk):
            ids = prefix + flat[i:i + chunk] + suffix
            out["input_ids"].append(ids)
            out["attention_mask"].append([1] * len(ids))
            out["special_tokens_mask"].append([1] * len(prefix) + [0] * chunk + [1] * len(suffix))
            if types:
                out["token_type_ids"].append([0] * len(ids))
        return out

    return pack


#: File suffix -> datasets' packaged builder that streams it.
STREAM_BUILDERS = {
    ".txt": "text", ".text": "text", ".csv": "csv", ".tsv": "csv", ".json": "json",
    ".jsonl": "json", ".parquet": "parquet",
}

#: Texts held out from the head of a stream that has no ``validation`` file, for MLM accuracy.
STREAM_HELD_OUT_TEXTS = 256


@dataclass
class TextStream:
    """A raw-text corpus read as a stream (:func:`stream_corpus`).

    :ivar train: ``datasets.IterableDataset`` with one column ``text`` (str); nothing is
        read until it is iterated.
    :ivar held_out: held-out texts (an in-memory ``datasets.Dataset``, column ``text``).
    :ivar name: the corpus's name for messages and lineage.
    """

    train: Any
    held_out: "datasets.Dataset"
    name: str


def stream_corpus(corpus: "DataConfig | None", context: "StageContext", *, key: str = "corpus") -> TextStream:
    """Open a raw-text corpus as a stream: memory stays flat whatever its size.

    Reusable by any strategy that trains on raw text. Sources:

    - ``files``: local files read with datasets' streaming builders (``.txt``: one text per
      line; ``.csv``/``.tsv``, ``.json``/``.jsonl``, ``.parquet``: the ``text_column``),
      relative to the recipe's folder; a ``validation`` file is the held-out text, else the
      first :data:`STREAM_HELD_OUT_TEXTS` texts of ``train`` are held out and skipped;
    - ``hub``: the hub data set's ``train`` split with ``streaming=True`` (``validation``
      when it has one, else the head of ``train``);
    - ``name`` (a registered, packaged data set) or ``None`` (the run's task data): loaded
      as usual (they fit in memory) and iterated as a stream.

    :param corpus: the stage's ``corpus`` mapping (a :class:`compressor.DataConfig`).
    :param context: the stage's context (recipe folder, data loading, seed).
    :param key: the config key, for messages.
    :returns: a :class:`TextStream`.
    :raises StageError: a missing file, an unknown file type, a column that is not there,
        no held-out text, or a hub set that cannot be opened.
    """
    import datasets as hf_datasets

    if corpus is None or (corpus.files is None and corpus.hub is None):
        data = corpus_data(corpus, context, key=key)
        held = data.splits.get("validation")
        if held is None or len(held) == 0:
            raise StageError(f"the corpus {data.name!r} has no 'validation' split", key=key)
        return TextStream(
            train=data.splits["train"].select_columns(["text"]).to_iterable_dataset(),
            held_out=held.select_columns(["text"]),
            name=data.name,
        )
    column = corpus.text_column
    if corpus.files is not None:
        unknown = sorted(set(corpus.files) - {"train", "validation", "test"})
        if unknown or "train" not in corpus.files:
            raise StageError(
                f"a streamed corpus reads files 'train' (and 'validation'), got {sorted(corpus.files)}",
                key=f"{key}.files",
            )
        paths = {split: context.resolve_path(f) for split, f in corpus.files.items() if split != "test"}
        suffixes = {p.suffix.lower() for p in paths.values()}
        for split, path in paths.items():
            if not path.is_file():
                raise StageError(f"corpus file {path} does not exist", key=f"{key}.files.{split}")
        if len(suffixes) != 1 or next(iter(suffixes)) not in STREAM_BUILDERS:
            raise StageError(
                f"cannot stream files of type {sorted(suffixes)}",
                key=f"{key}.files",
                expected=f"one of {sorted(STREAM_BUILDERS)} (the same for train and validation)",
            )
        suffix = next(iter(suffixes))
        builder = STREAM_BUILDERS[suffix]
        options = {"delimiter": "\t"} if suffix == ".tsv" else {}
        if builder == "text":
            column = "text"
        opened = hf_datasets.load_dataset(
            builder, data_files={s: str(p) for s, p in paths.items()}, streaming=True, **options
        )
        name = paths["train"].name
    else:
        try:
            opened = hf_datasets.load_dataset(
                corpus.hub, corpus.hub_config, streaming=True, trust_remote_code=corpus.trust_remote_code
            )
        except Exception as exc:  # noqa: BLE001 - the hub's many failures, one message
            raise StageError(f"cannot stream the hub data set {corpus.hub!r}: {exc}", key=f"{key}.hub") from exc
        name = corpus.hub
    train = opened["train"]
    if column not in (train.column_names or [column]):
        raise StageError(
            f"the corpus {name!r} has no column {column!r} (columns: {train.column_names})",
            key=f"{key}.text_column",
        )
    if column != "text":
        train = train.rename_column(column, "text")
    train = train.select_columns(["text"])
    if "validation" in opened:
        held_stream = opened["validation"]
        if column != "text":
            held_stream = held_stream.rename_column(column, "text")
        held_rows = list(held_stream.select_columns(["text"]).take(STREAM_HELD_OUT_TEXTS * 8))
    else:
        held_rows = list(train.take(STREAM_HELD_OUT_TEXTS))
        train = train.skip(STREAM_HELD_OUT_TEXTS)
    held_rows = [r for r in held_rows if isinstance(r.get("text"), str) and r["text"].strip()]
    if not held_rows:
        raise StageError(f"the corpus {name!r} gives no held-out text", key=key)
    held = hf_datasets.Dataset.from_dict({"text": [r["text"] for r in held_rows]})
    return TextStream(train=train, held_out=held, name=name)


def stream_blocks(
    texts: Any, tokenizer: "PreTrainedTokenizerBase", block_size: int, *, seed: int,
    shuffle_buffer: int = 10_000,
) -> Any:
    """Tokenise and pack a text stream into blocks on the fly (see :func:`group_texts`).

    :param texts: a ``datasets.IterableDataset`` with a ``text`` column.
    :param tokenizer: the model's tokenizer.
    :param block_size: tokens per block, special tokens included.
    :param seed: seed of the shuffle buffer (re-seeded each epoch by the Trainer).
    :param shuffle_buffer: blocks held in memory for shuffling (0: no shuffle).
    :returns: an ``IterableDataset`` of blocks (``input_ids``, ``attention_mask``,
        ``special_tokens_mask``, maybe ``token_type_ids``; ``block_size`` ints each).
    :raises StageError: when ``block_size`` leaves no room for text.
    """
    pack = block_packer(tokenizer, block_size)
    texts = texts.filter(lambda row: isinstance(row["text"], str) and bool(row["text"].strip()))
    blocks = texts.map(pack, batched=True, batch_size=PACK_BATCH, remove_columns=["text"])
    if shuffle_buffer:
        blocks = blocks.shuffle(seed=seed, buffer_size=shuffle_buffer)
    return blocks


def mlm_collator(tokenizer: "PreTrainedTokenizerBase", probability: float, seed: int | None = None) -> Any:
    """:class:`transformers.DataCollatorForLanguageModeling` with BERT's 80/10/10 recipe.

    :param tokenizer: must have a mask token.
    :param probability: share of tokens chosen for prediction (0.15 in BERT and DistilBERT).
    :param seed: seeds the collator's own generator (fixed masks for evaluation); ``None``
        uses torch's global RNG, re-seeded by the Trainer.
    :raises StageError: when the tokenizer has no mask token.
    """
    from transformers import DataCollatorForLanguageModeling

    if tokenizer.mask_token is None:
        raise StageError(
            f"the tokenizer ({type(tokenizer).__name__}) has no mask token; masked-LM "
            "training needs one"
        )
    return DataCollatorForLanguageModeling(
        tokenizer, mlm=True, mlm_probability=probability, mask_replace_prob=0.8,
        random_replace_prob=0.1, seed=seed,
    )


def load_masked_lm(
    artifact: "Artifact", *, require_head: bool, key: str = "teacher", **kwargs: Any
) -> tuple["PreTrainedModel", list[str]]:
    """Load an artifact with ``AutoModelForMaskedLM`` and report untrained MLM-head weights.

    Pruned models (a ``compressor_structure.json``) load with their shapes
    (:func:`~compressor_distillation.loading.load_with_new_weights`).

    Sentence-embedding checkpoints (both packaged models) hold the encoder only: loading them
    as masked LMs initialises the prediction head (``cls.predictions.transform``,
    ``lm_head``, ``vocab_projector``, ... and the output bias) at random, and
    ``from_pretrained`` lists those weights as missing. The decoder matrix itself is usually
    tied to the word embeddings, so it is not listed.

    :param artifact: a PyTorch artifact.
    :param require_head: raise when head weights are missing.
    :param key: the config key naming this model, for messages.
    :param kwargs: passed to ``from_pretrained`` (e.g. ``attn_implementation``).
    :returns: ``(model, newly initialised weight names)``.
    :raises StageError: when the artifact is not PyTorch, cannot be loaded as a masked LM,
        or (``require_head``) has no trained MLM head, saying what to do.
    """
    from transformers import AutoModelForMaskedLM

    from .loading import load_with_new_weights

    if artifact.format != "pytorch":
        raise StageError(f"{artifact.name!r} is a {artifact.format} artifact", key=key,
                         expected="a PyTorch artifact")
    # a pruned model (compressor_structure.json) loads with its shapes rebuilt; one saved
    # with another head gets a new MLM head, listed as missing, as from_pretrained does
    model, missing = load_with_new_weights(
        AutoModelForMaskedLM, artifact.path, what=f"{artifact.name!r} (a masked language model)",
        key=key, **kwargs,
    )
    if missing and require_head:
        raise StageError(
            f"the teacher {artifact.name!r} has no masked-LM head weights: loading it as a "
            f"masked language model initialised {', '.join(missing)} at random. It is an "
            "encoder-only (e.g. sentence-embedding) checkpoint, so its MLM predictions, the "
            "soft targets of general distillation, would be noise",
            key=key,
            hint="add an 'mlm-adapt' stage before this one to train the MLM head on the corpus "
            "(it reports the teacher's MLM accuracy before and after), or use a checkpoint "
            "pre-trained with its MLM head",
        )
    return model, missing


def fixed_masks(
    blocks: "datasets.Dataset", tokenizer: "PreTrainedTokenizerBase", probability: float,
    seed: int, batch_size: int,
) -> list[dict[str, torch.Tensor]]:
    """Mask held-out blocks once, reproducibly, for :func:`mlm_accuracy`.

    :returns: a list of collated batches (``input_ids``, ``attention_mask``, ``labels``, ...)
        whose masks depend only on ``seed``.
    """
    collate = mlm_collator(tokenizer, probability)
    rows = [blocks[i] for i in range(len(blocks))]
    # torch's global RNG, forked and seeded: the masks depend on the seed only, and the
    # caller's RNG stream is left as it was (the collator's own ``seed`` ignores seed 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def mlm_accuracy(model: "PreTrainedModel", batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Top-1 accuracy and cross-entropy of a masked LM at the masked positions.

    :param model: a ``*ForMaskedLM`` model (any device).
    :param batches: from :func:`fixed_masks`.
    :returns: ``{"mlm_accuracy": fraction, "mlm_loss": mean CE (nats), "masked_tokens": n}``.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for batch in batches:
        labels = batch["labels"].to(device)
        inputs = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "special_tokens_mask")}
        logits = model(**inputs).logits.float()
        keep = labels != -100
        n = int(keep.sum())
        if n == 0:
            continue
        sel, gold = logits[keep], labels[keep]
        correct += int((sel.argmax(-1) == gold).sum())
        loss_sum += float(torch.nn.functional.cross_entropy(sel, gold, reduction="sum"))
        total += n
    model.train(was_training)
    return {
        "mlm_accuracy": correct / total if total else float("nan"),
        "mlm_loss": loss_sum / total if total else float("nan"),
        "masked_tokens": total,
    }


def corpus_blocks(
    config: Any, context: "StageContext", tokenizer: "PreTrainedTokenizerBase", block_size: int
) -> tuple["datasets.Dataset", "datasets.Dataset", str]:
    """Train and held-out blocks of the stage's corpus.

    With ``config.streaming`` the train blocks are a stream (:func:`stream_corpus`,
    :func:`stream_blocks`: an ``IterableDataset`` without a length; the Trainer needs
    ``max_steps``) and the held-out blocks come from the held-out texts.

    :returns: ``(train blocks, held-out blocks, corpus name)``; held-out blocks come from the
        corpus's ``validation`` split (capped at ``config.max_eval_blocks``).
    :raises StageError: when there is no held-out text; streaming without ``max_steps``
        or with ``max_train_blocks``.
    """
    if getattr(config, "streaming", False):
        if config.max_steps is None:
            raise StageError(
                "a streamed corpus has no length, so training needs a number of steps",
                key="max_steps",
                hint="set max_steps (optimiser steps; each takes batch_size x "
                "gradient_accumulation_steps blocks)",
            )
        if config.max_train_blocks is not None:
            raise StageError(
                "max_train_blocks samples an in-memory corpus; a streamed one is capped by max_steps",
                key="max_train_blocks",
            )
        stream = stream_corpus(config.corpus, context, key="corpus")
        held_blocks = group_texts(stream.held_out, tokenizer, block_size, progress=context.progress)
        if config.max_eval_blocks is not None and len(held_blocks) > config.max_eval_blocks:
            held_blocks = held_blocks.select(range(config.max_eval_blocks))
        train = stream_blocks(stream.train, tokenizer, block_size, seed=context.seed)
        return train, held_blocks, stream.name
    data = corpus_data(config.corpus, context, key="corpus")
    train = group_texts(data.splits["train"], tokenizer, block_size, progress=context.progress)
    held = data.splits.get("validation")
    if held is None or len(held) == 0:
        raise StageError(
            f"the corpus {data.name!r} has no 'validation' split to measure MLM accuracy on",
            key="corpus",
            hint="give a validation file, or let the loader hold out validation_fraction of train",
        )
    held_blocks = group_texts(held, tokenizer, block_size, progress=context.progress)
    if config.max_eval_blocks is not None and len(held_blocks) > config.max_eval_blocks:
        held_blocks = held_blocks.select(range(config.max_eval_blocks))
    if config.max_train_blocks is not None and len(train) > config.max_train_blocks:
        train = train.shuffle(seed=context.seed).select(range(config.max_train_blocks))
        train = train.flatten_indices()
    return train, held_blocks, data.name


def head_parameter_names(model: "PreTrainedModel") -> list[str]:
    """Names of the MLM head's own parameters (everything outside the base encoder).

    The base encoder is ``model.base_model``; a decoder tied to the word embeddings belongs
    to the encoder and is not listed.
    """
    base = {id(p) for p in model.base_model.parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in base]


def run_mlm_adapt(
    strategy: "Strategy", artifact: "Artifact", config: Any, context: "StageContext"
) -> "Artifact":
    """Train a model's masked-LM head (optionally the whole model) on a corpus; see
    :class:`~compressor_distillation.plugin.MLMAdapt`.
    """
    from transformers import Trainer, set_seed

    training.check_device_and_precision(config, context.device)
    seed = context.seed if config.seed is None else config.seed
    tokenizer = context.load_tokenizer(artifact)
    block_size = training.effective_max_length(tokenizer, config.max_length, context)
    set_seed(seed)  # the new head is initialised from this seed
    model, new_weights = load_masked_lm(artifact, require_head=False, key="model")
    if new_weights:
        context.logger.info(
            "%s: %r has no trained MLM head; newly initialised: %s",
            context.stage_name, artifact.name, ", ".join(new_weights),
        )
    train, held, corpus_name = corpus_blocks(config, context, tokenizer, block_size)
    masks = fixed_masks(held, tokenizer, config.mlm_probability, seed, config.eval_batch_size)
    before = mlm_accuracy(model, masks)
    context.logger.info(
        "%s: MLM accuracy of %r before adaptation: %.4f (%d masked tokens in %d held-out blocks)",
        context.stage_name, artifact.name, before["mlm_accuracy"], before["masked_tokens"], len(held),
    )
    head = set(head_parameter_names(model))
    if config.train == "head":
        for name, p in model.named_parameters():
            p.requires_grad_(name in head)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    args = training.training_arguments(config, context, has_validation=False, seed=seed)
    trainer = Trainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer,
        data_collator=mlm_collator(tokenizer, config.mlm_probability),
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=False)
    after = mlm_accuracy(model, masks)
    context.logger.info(
        "%s: MLM accuracy after adaptation: %.4f (before %.4f)",
        context.stage_name, after["mlm_accuracy"], before["mlm_accuracy"],
    )
    model.requires_grad_(True)
    training.save_trained_model(trainer, context.output_dir)
    extra = {
        "corpus": corpus_name,
        "trained": config.train,
        "trainable_params": trainable,
        "new_head_weights": new_weights,
        "train_blocks": len(train) if not config.streaming else None,
        "streamed": bool(config.streaming),
        "block_size": block_size,
        "heldout_blocks": len(held),
        "mlm_accuracy_before": before["mlm_accuracy"],
        "mlm_accuracy_after": after["mlm_accuracy"],
        "mlm_loss_before": before["mlm_loss"],
        "mlm_loss_after": after["mlm_loss"],
        "masked_tokens": after["masked_tokens"],
        **metrics,
    }
    return context.new_artifact(artifact, strategy.name, config, extra=extra)
