"""The ``distill.embedding`` strategy: sentence-embedding distillation on raw text.

Reimers & Gurevych 2020 ("Making monolingual sentence embeddings multilingual using knowledge
distillation") train a student so that its sentence embedding of a text matches the
teacher's, with the mean squared error; no labels are needed, only sentences. Here:

- ``L = alpha_mse * MSE(e_s, e_t) + alpha_cos * (1 - cos(e_s, e_t)) + alpha_hidden_cos * L_cos``
  where ``e`` are the sentence embeddings each model's own head makes (pooling, Dense,
  Normalize from the teacher's sentence-transformers files;
  :func:`compressor.tasks.embedding.embedding_loss`) and ``L_cos`` is DistilBERT's cosine
  between last hidden states at non-padding tokens (Sanh et al. 2019; same tokenizer only);
- the student is by default the teacher's architecture with fewer layers copied from it, as
  ``distill.distilbert`` builds it (``student_layers``, ``layer_selection``, ``layers``,
  ``student_init``; a pruned teacher's copied layers keep their heads and FFN widths), or
  another model (``student: {model: ...}``, any width and tokenizer: each model tokenises
  the text itself);
- a student narrower than the teacher gets a learned linear projection after its pooling;
  it is saved as a sentence-transformers ``Dense`` module, so the student's embeddings have
  the teacher's width and live in its space (a drop-in replacement for an existing index);
- the text is the ``corpus`` (data sets or files, split into sentences), or the task's train
  split (both sides of pairs); a held-out share measures the student's mean cosine to the
  teacher before and after training (lineage ``heldout_cosine_before`` / ``_after``).

The saved artifact is the bare encoder (``AutoModel``) with the sentence-transformers files,
loadable with ``SentenceTransformer(folder)``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from compressor import DataConfig
from compressor.strategy import Strategy
from compressor.training import TrainingConfig

from .layers import LayerSelection, check_explicit_layers
from .plugin import StudentModel

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext


class EmbeddingDistillationConfig(TrainingConfig):
    """Config of ``distill.embedding``. Sample recipe stage::

        - name: student
          strategy: distill.embedding
          config:
            student_layers: 3               # teacher layers 0, 2, 4 of 6
            corpus: [{name: news-articles}, {name: mr-snippets}]
            max_sentences: 50000
            epochs: 1
            learning_rate: 1.0e-4
    """

    teacher: str | None = Field(
        None, min_length=1,
        description="Name of an earlier artifact used as the teacher; null: the stage's input artifact.",
    )
    student_layers: int | None = Field(
        None, ge=1, le=1000,
        description="Encoder layers of the layer-copy student; null: len(layers) for 'explicit', else half the teacher's, rounded up.",
    )
    layer_selection: LayerSelection = Field(
        "every-other",
        description="Teacher layers copied into the student: 'every-other', 'uniform', 'first-k' or 'explicit' (the 'layers' list).",
    )
    layers: list[int] | None = Field(
        None, min_length=1, max_length=1000,
        description="Teacher layer indices, strictly increasing, one per student layer ('explicit' only).",
    )
    student_init: Literal["copy", "random"] = Field(
        "copy", description="Layer-copy student: 'copy' the teacher's weights (Sanh et al. 2019) or 'random' (ablation).",
    )
    student: StudentModel | Literal["input"] | None = Field(
        None,
        description="null: the layer-copy student; 'input': the stage's input artifact as is; "
        "{model: name-or-path, source: auto}: another encoder, any width or tokenizer.",
    )
    corpus: list[DataConfig] | None = Field(
        None, max_length=20,
        description="Raw text to distil on, a list of task.data mappings ({name: news-articles}, "
        "{files: {train: sentences.txt}}); their train splits are used. null: the task's train split.",
    )
    split_sentences: bool = Field(
        True, description="Split each text into sentences (news articles are long); false: one example per text.",
    )
    min_words: int = Field(3, ge=1, le=1000, description="Sentences with fewer words are dropped.")
    max_sentences: int | None = Field(
        100_000, ge=10, le=100_000_000, description="Cap on training sentences (seeded sample); null: all.",
    )
    heldout_sentences: int = Field(
        500, ge=0, le=100_000,
        description="Sentences held out (not trained on) to measure the student's cosine to the teacher before and after.",
    )
    alpha_mse: float = Field(1.0, ge=0, le=1000, description="Weight of the MSE between sentence embeddings.")
    alpha_cos: float = Field(1.0, ge=0, le=1000, description="Weight of 1 - cosine between sentence embeddings.")
    alpha_hidden_cos: float = Field(
        0.0, ge=0, le=1000,
        description="Weight of DistilBERT's cosine between last hidden states at non-padding tokens "
        "(same tokenizer only; projected when widths differ).",
    )

    @model_validator(mode="after")
    def _check(self) -> "EmbeddingDistillationConfig":
        if max(self.alpha_mse, self.alpha_cos, self.alpha_hidden_cos) <= 0:
            raise ValueError("at least one of alpha_mse, alpha_cos, alpha_hidden_cos must be > 0")
        if self.student is not None and (
            self.student_layers is not None or self.layers is not None or self.student_init != "copy"
        ):
            raise ValueError("student_layers, layers and student_init shape a layer-copy student; "
                             "they cannot be combined with 'student'")
        if self.layer_selection == "explicit":
            if self.layers is None:
                raise ValueError("layer_selection 'explicit' needs 'layers'")
            check_explicit_layers(self.layers, self.student_layers)
        elif self.layers is not None:
            raise ValueError(f"'layers' is only used with layer_selection 'explicit', not {self.layer_selection!r}")
        return self


class EmbeddingDistillation(Strategy):
    """Sentence-embedding distillation on raw text (Reimers & Gurevych 2020); see the module
    docstring. Lineage ``extra``: ``teacher``, ``copied_layers`` / ``student``,
    ``teacher_params``, ``student_params``, ``projection`` (``[in, out]`` or null),
    ``pooling``, ``corpus``, ``train_sentences``, ``heldout_cosine_before`` / ``_after``
    and the training metrics."""

    name: ClassVar[str] = "distill.embedding"
    Config: ClassVar[type[EmbeddingDistillationConfig]] = EmbeddingDistillationConfig
    description: ClassVar[str] = (
        "Sentence-embedding distillation on raw text: MSE/cosine to the teacher's embeddings, layers copied"
    )
    needs_training_data: ClassVar[bool] = False  # the corpus, or the task's train split
    needs_teacher: ClassVar[bool] = True
    task_types: ClassVar[tuple[str, ...]] = ("sentence-embedding",)

    @classmethod
    def task_refusal(cls, task_type: str) -> str | None:
        if task_type not in cls.task_types:
            return ("it matches sentence embeddings (task type sentence-embedding); for a task "
                    "head use distill.distilbert")
        return None

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Distil the teacher's sentence embeddings into a student written to ``output_dir``.

        :raises compressor.errors.StageError: for a teacher that is not a PyTorch encoder, a
            corpus that cannot be loaded or holds no sentences, ``alpha_hidden_cos`` with a
            student of another tokenizer, invalid layer choices, or a precision the hardware
            lacks.
        """
        return run_embedding_distillation(self, artifact, config, context)


# --- implementation (heavy imports inside) -------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` at sentence ends (``.``, ``!``, ``?`` followed by space and a capital
    or digit) and at line breaks; a heuristic good enough for news prose."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def collect_sentences(
    texts: list[str], *, split: bool, min_words: int
) -> list[str]:
    """Sentences of ``texts`` (split or whole), with fewer than ``min_words`` words dropped,
    duplicates removed (first kept), order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for text in texts:
        for s in split_sentences(text) if split else [text.strip()]:
            if len(s.split()) >= min_words and s not in seen:
                seen.add(s)
                out.append(s)
    return out


def _training_texts(config: EmbeddingDistillationConfig, context: "StageContext") -> tuple[list[str], list[str], list[str]]:
    """``(train sentences, held-out sentences, corpus names)``, seeded."""
    import random

    from compressor.errors import StageError

    texts: list[str] = []
    names: list[str] = []
    if config.corpus:
        for i, cfg in enumerate(config.corpus):
            data = context.load_data(cfg, task_type="masked-lm", key=f"corpus[{i}]")
            texts.extend(data.splits["train"]["text"])
            names.append(data.name)
    else:
        train = context.data.splits.get("train")
        if train is None or len(train) == 0:
            raise StageError(
                "distill.embedding needs text: give a corpus, or a task with a non-empty train split",
                key="corpus",
                hint="corpus: [{name: news-articles}, {name: mr-snippets}]",
            )
        texts.extend(train["text"])
        if "text_pair" in train.column_names:
            texts.extend(train["text_pair"])
        names.append(f"{context.data.name or 'task'} (train split)")
    sentences = collect_sentences(texts, split=config.split_sentences, min_words=config.min_words)
    seed = context.seed if config.seed is None else config.seed
    random.Random(seed).shuffle(sentences)
    held = sentences[: config.heldout_sentences] if len(sentences) > config.heldout_sentences + 10 else []
    train_sents = sentences[len(held):]
    if config.max_sentences is not None:
        train_sents = train_sents[: config.max_sentences]
    if not train_sents:
        raise StageError(
            f"the corpus ({', '.join(names)}) holds no sentence of at least {config.min_words} words",
            key="corpus",
        )
    return train_sents, held, names


class TextCollator:
    """Tokenises a batch of ``{"text": str}`` rows for the student, and for the teacher under
    ``teacher_`` keys when the teacher's tokenizer differs."""

    def __init__(self, student_tokenizer: Any, teacher_tokenizer: Any | None, max_length: int) -> None:
        self.student, self.teacher, self.max_length = student_tokenizer, teacher_tokenizer, max_length

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [r["text"] for r in rows]
        kw = dict(padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = dict(self.student(texts, **kw))
        if self.teacher is not None:
            batch.update({f"teacher_{k}": v for k, v in self.teacher(texts, **kw).items()})
        return batch


def _student_head(teacher_head: Any, student_width: int, teacher_width: int, seed: int) -> tuple[Any, Any]:
    """``(student head, projection or None)``: the teacher's head with pooling at the
    student's width and a learned projection after it when the widths differ."""
    import copy

    import torch
    from torch import nn

    from compressor.tasks.embedding_head import EmbeddingHead
    from compressor.tasks.embedding_head import modules_class as type_of

    steps = [copy.deepcopy(s) for s in teacher_head.steps]
    for s in steps:
        s.requires_grad_(False)
    if student_width == teacher_width:
        return EmbeddingHead(steps, teacher_head.description), None
    pool = steps[0]
    cfg = {k: v for k, v in pool.get_config_dict().items() if k not in ("embedding_dimension", "word_embedding_dimension")}
    torch.manual_seed(seed)
    # a sentence-transformers Dense (identity activation): a pipeline step, saved as one
    projection = type_of("Dense")(student_width, teacher_width, activation_function=nn.Identity())
    head = EmbeddingHead([type(pool)(student_width, **cfg), projection, *steps[1:]],
                         teacher_head.description + f", projected {student_width}->{teacher_width}")
    return head, projection


def _make_trainer_class() -> Any:
    import torch
    from transformers import Trainer

    from compressor.tasks.embedding import embedding_loss, token_embeddings

    from .losses import hidden_cosine_loss
    from .trainer import HEADS_ATTR, TEACHER_PREFIX

    class EmbeddingDistillationTrainer(Trainer):
        """Trainer whose loss is :func:`~compressor.tasks.embedding.embedding_loss` (plus the
        optional hidden-state cosine); the teacher and its head are frozen, not checkpointed.
        Terms are averaged over each logging window and logged (``loss_mse``, ``loss_cos``,
        ``loss_hidden_cos``)."""

        def __init__(self, *args: Any, teacher: Any, teacher_head: Any, student_head: Any,
                     alphas: tuple[float, float, float], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False
            self.teacher = teacher.to(self.args.device).eval().requires_grad_(False)
            self.teacher_head = teacher_head.to(self.args.device).eval()
            self.student_head = student_head.to(self.args.device)
            self.alphas = alphas
            self._sums: dict[str, float] = {}
            self._count = 0

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            features = {k: v for k, v in inputs.items() if not k.startswith(TEACHER_PREFIX)}
            t_features = {k[len(TEACHER_PREFIX):]: v for k, v in inputs.items()
                          if k.startswith(TEACHER_PREFIX)} or features
            alpha_mse, alpha_cos, alpha_hidden = self.alphas
            out = model(**features)
            tokens = token_embeddings(out)
            heads = getattr(self.accelerator.unwrap_model(model), HEADS_ATTR, None)
            if heads is not None and "embedding" in heads:  # trained projection: keep it in the graph
                self.student_head.steps[1] = heads["embedding"]
            e_s = self.student_head(tokens, features["attention_mask"])
            with torch.no_grad():
                t_out = self.teacher(**t_features)
                t_tokens = token_embeddings(t_out)
                e_t = self.teacher_head(t_tokens, t_features["attention_mask"])
            terms = embedding_loss(e_s, e_t, alpha_mse=alpha_mse, alpha_cos=alpha_cos) if alpha_mse + alpha_cos > 0 else {
                "loss": tokens.float().sum() * 0.0}
            total = terms["loss"]
            logged = {k: float(v.detach()) for k, v in terms.items() if k != "loss"}
            if alpha_hidden > 0:
                h = tokens
                if heads is not None and "hidden" in heads:
                    h = heads["hidden"](h)
                hidden = hidden_cosine_loss(h, t_tokens, features["attention_mask"])
                total = total + alpha_hidden * hidden
                logged["loss_hidden_cos"] = float(hidden.detach())
            for k, v in logged.items():
                self._sums[k] = self._sums.get(k, 0.0) + v
            self._count += 1
            return (total, out) if return_outputs else total

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs and self._count:
                logs.update({k: round(v / self._count, 6) for k, v in self._sums.items()})
                self._sums, self._count = {}, 0
            super().log(logs, *args, **kwargs)

    return EmbeddingDistillationTrainer


def heldout_cosine(model: Any, head: Any, tokenizer: Any, teacher_embeddings: Any, texts: list[str],
                   *, max_length: int, batch_size: int) -> float | None:
    """Mean cosine between ``model``'s embeddings of ``texts`` (through ``head``) and the
    teacher's (``teacher_embeddings``, ``(n, D)``); ``None`` without texts."""
    import torch.nn.functional as F

    if not texts:
        return None
    embs = embed_with(model, head, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    return float(F.cosine_similarity(embs, teacher_embeddings, dim=-1).mean())


def embed_with(model: Any, head: Any, tokenizer: Any, texts: list[str], *, max_length: int,
               batch_size: int) -> Any:
    """``(n, D)`` float32 CPU tensor of sentence embeddings, no gradients."""
    import torch

    from compressor.tasks.embedding import token_embeddings

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            tokens = token_embeddings(model(**enc))
            out.append(head.to(device)(tokens, enc["attention_mask"]).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def run_embedding_distillation(
    strategy: Strategy, artifact: "Artifact", config: EmbeddingDistillationConfig, context: "StageContext"
) -> "Artifact":
    """See :class:`EmbeddingDistillation`."""
    from pathlib import Path

    import datasets
    from transformers import AutoModel, set_seed

    from compressor.artifact import Artifact
    from compressor.errors import StageError
    from compressor.tasks.embedding_head import (
        add_dense_module,
        copy_sentence_transformers_files,
        load_head,
    )
    from compressor.training import trainer as training

    from .distill import hidden_size, layer_copy_student, resolve_student_model, same_vocabulary
    from .student import count_parameters, layer_count
    from .trainer import HEADS_ATTR, attach_heads, detach_heads

    training.check_device_and_precision(config, context.device)
    seed = context.seed if config.seed is None else config.seed
    teacher_artifact = context.artifact(config.teacher) if config.teacher else artifact
    teacher = context.load_model(teacher_artifact, AutoModel, key="teacher")
    teacher.eval().requires_grad_(False)
    t_tok = context.load_tokenizer(teacher_artifact, key="teacher")
    try:
        teacher_head = load_head(teacher_artifact.path, hidden_size(teacher))
    except Exception as exc:  # CompressorError from a bad modules.json
        raise StageError(f"teacher {teacher_artifact.name!r}: {getattr(exc, 'message', exc)}", key="teacher") from exc

    facts: dict[str, Any] = {"teacher": teacher_artifact.name, "pooling": teacher_head.description}
    if config.student is None:
        student, shape = layer_copy_student(teacher, config, context, seed)  # type: ignore[arg-type]
        facts.update(shape)
        s_tok, s_source = t_tok, teacher_artifact
    else:
        if config.student == "input":
            s_source = artifact
        else:
            s_source = Artifact(name=config.student.model, path=Path(resolve_student_model(config.student, context)))
        s_tok = context.load_tokenizer(s_source, key="student")
        set_seed(seed)
        student = context.load_model(s_source, AutoModel, key="student")
        student.train()
        facts.update({"student": s_source.name, "student_layers": layer_count(student.config)[1],
                      "teacher_layers": layer_count(teacher.config)[1]})
    cross = not same_vocabulary(s_tok, t_tok)
    if cross and config.alpha_hidden_cos > 0:
        raise StageError(
            "alpha_hidden_cos compares token positions, which differ when the student and the "
            "teacher tokenise the text differently",
            key="alpha_hidden_cos", hint="set alpha_hidden_cos: 0 (the embedding losses need no alignment)",
        )
    w_s, w_t = hidden_size(student), hidden_size(teacher)
    student_head, projection = _student_head(teacher_head, w_s, w_t, seed)
    heads = {}
    if projection is not None:
        heads["embedding"] = projection
    if config.alpha_hidden_cos > 0 and w_s != w_t:
        import torch

        torch.manual_seed(seed + 1)
        heads["hidden"] = torch.nn.Linear(w_s, w_t)
    attach_heads(student, heads)

    max_length = training.effective_max_length(t_tok, config.max_length, context)
    train_texts, held, corpus_names = _training_texts(config, context)
    context.logger.info(
        "%s: embedding distillation on %d sentences from %s (%d held out); student %d layers, width %d; teacher head: %s",
        context.stage_name, len(train_texts), ", ".join(corpus_names), len(held),
        layer_count(student.config)[1], w_s, teacher_head.description,
    )
    teacher_held = embed_with(teacher, teacher_head, t_tok, held, max_length=max_length,
                              batch_size=config.eval_batch_size) if held else None
    before = heldout_cosine(student, student_head, s_tok, teacher_held, held, max_length=max_length,
                            batch_size=config.eval_batch_size) if held and projection is None else None

    args = training.training_arguments(config, context, has_validation=False, seed=seed)
    args.remove_unused_columns = False
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=student,
        args=args,
        train_dataset=datasets.Dataset.from_dict({"text": train_texts}),
        processing_class=s_tok,
        data_collator=TextCollator(s_tok, t_tok if cross else None, max_length),
        callbacks=training.callbacks(config),
        teacher=teacher,
        teacher_head=teacher_head,
        student_head=student_head,
        alphas=(config.alpha_mse, config.alpha_cos, config.alpha_hidden_cos),
    )
    metrics = training.train_and_evaluate(trainer, context, has_validation=False)
    trained = getattr(student, HEADS_ATTR, None)
    if trained is not None and "embedding" in trained:
        projection = trained["embedding"]
        student_head.steps[1] = projection
    shapes = detach_heads(student)
    after = heldout_cosine(student, student_head, s_tok, teacher_held, held, max_length=max_length,
                           batch_size=config.eval_batch_size) if held else None
    training.save_trained_model(trainer, context.output_dir)
    # the student's pipeline: the teacher's sentence-transformers files (the orchestrator
    # carries them too; written here so the folder is complete whatever runs it) ...
    copy_sentence_transformers_files(teacher_artifact.path, context.output_dir, overwrite=True)
    if projection is not None:  # ... with pooling at the student's width and the projection
        pooling_dir = Path(context.output_dir) / "1_Pooling"
        pooling_dir.mkdir(exist_ok=True)
        student_head.steps[0].save(str(pooling_dir))
        add_dense_module(context.output_dir, projection.linear)
    context.logger.info(
        "%s: held-out cosine to the teacher %s -> %s", context.stage_name,
        "n/a" if before is None else f"{before:.4f}", "n/a" if after is None else f"{after:.4f}",
    )
    facts.update({
        "corpus": corpus_names,
        "train_sentences": len(train_texts),
        "heldout_sentences": len(held),
        "heldout_cosine_before": before,
        "heldout_cosine_after": after,
        "projection": shapes.get("embedding"),
        "teacher_params": count_parameters(teacher),
        "student_params": count_parameters(student),
        "max_length": max_length,
        **metrics,
    })
    return context.new_artifact(artifact, strategy.name, config, reference=teacher_artifact.name, extra=facts)
