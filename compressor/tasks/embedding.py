"""``sentence-embedding``: one vector per sentence, made with the model's own pooling.

The model is the bare encoder (``AutoModel``: token embeddings, ``last_hidden_state``)
followed by the head its sentence-transformers files define (``modules.json``,
``1_Pooling/config.json``, ``Dense``, ``Normalize``; see
:mod:`compressor.tasks.embedding_head`), so an embedding scored here is the one
``SentenceTransformer(folder).encode`` gives, for a PyTorch or an ONNX artifact alike.

Data (``task.data``):

- **sentence pairs with a gold similarity** (STS-B: ``text_column: sentence1``,
  ``text_pair_column: sentence2``, ``label_column: score``): the headline metric is the
  Spearman correlation between the cosine of the two embeddings and the gold score, as
  sentence-transformers' ``EmbeddingSimilarityEvaluator`` computes it (Reimers & Gurevych
  2019), and Pearson's r beside it;
- **raw text** (``text`` only: news articles, snippets): no gold; the model is measured by its
  agreement with its reference (teacher) and by the benchmarks below.

On the evaluated split, every model is also compared with its reference (the teacher of a
distilled student, the parent otherwise; :meth:`SentenceEmbedding.relate`): the mean cosine
between its embedding of each sentence and the reference's, and the overlap of the ``k``
nearest neighbours (cosine) of each sentence among the split's sentences (``k = 10`` by
default). Both are per-sentence statistics, so they get bootstrap intervals and paired
differences like the STS correlations.

MTEB-style benchmarks on frozen embeddings (Muennighoff et al. 2023, "MTEB"), from packaged
labelled data sets named in ``task.options.benchmarks`` (``mr-snippets`` and ``trec6`` by
default), split with ``task.options.seed``:

- **classification**: logistic regression (scikit-learn, ``max_iter=100`` as MTEB) trained
  on the embeddings of the benchmark's train split (capped), accuracy on its test split;
- **clustering**: k-means with as many clusters as classes on the test split's embeddings,
  V-measure against the classes (Rosenberg & Hirschberg 2007; MTEB's clustering metric).

Their point estimates and 95% percentile-bootstrap intervals (over the benchmark's test rows)
are reported under the record's ``details.benchmarks``.

Training (raw text, no labels) is ``distill.embedding``'s: MSE and/or cosine between the
student's and the teacher's sentence embeddings (Reimers & Gurevych 2020, "Making
monolingual sentence embeddings multilingual using knowledge distillation"); the loss code
is :func:`embedding_loss`, shared with pruning importance (:meth:`importance_loss`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..errors import CompressorError
from .base import Metric, Scored, SoftTarget, Task, TaskOptions

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np
    import torch

    from ..evaluate.backends import Backend
    from ..task import TaskData
    from .embedding_head import EmbeddingHead

log = logging.getLogger(__name__)

TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")
"""Output names tried, in order, for the token embeddings of a backend's forward call."""


class EmbeddingOptions(TaskOptions):
    """``task.options`` of ``sentence-embedding``."""

    benchmarks: list[str] = Field(
        default_factory=lambda: ["mr-snippets", "trec6"],
        max_length=20,
        description="Registered text-classification data sets for the MTEB-style classification "
        "(logistic regression on frozen embeddings) and clustering (V-measure) benchmarks; [] for none.",
    )
    benchmark_train_samples: int = Field(
        2000, ge=10, le=1_000_000,
        description="Rows of each benchmark's train split the classifier is fitted on (seeded sample).",
    )
    benchmark_test_samples: int = Field(
        1000, ge=10, le=1_000_000,
        description="Rows of each benchmark's test split that are scored and clustered (seeded sample).",
    )
    clustering: bool = Field(True, description="Also cluster each benchmark's test split (k-means, V-measure).")
    neighbours: int = Field(
        10, ge=1, le=1000, description="k of the k-nearest-neighbour overlap with the reference model."
    )
    max_length: int | None = Field(
        None, ge=4, le=65536,
        description="Tokens per sentence; null: the model's sentence_bert_config.json max_seq_length, "
        "else its position limit (at most 512).",
    )
    seed: int = Field(0, ge=0, description="Seed of the benchmark splits, samples, classifier and k-means.")


# --- the shared loss ----------------------------------------------------------------------


def embedding_loss(
    student: "torch.Tensor", teacher: "torch.Tensor", *, alpha_mse: float = 1.0, alpha_cos: float = 1.0
) -> dict[str, "torch.Tensor"]:
    """Embedding distillation loss (Reimers & Gurevych 2020).

    ``L = alpha_mse * MSE(e_s, e_t) + alpha_cos * mean(1 - cos(e_s, e_t))``, computed in
    float32. The MSE is the mean over batch and dimensions (``torch.nn.MSELoss``, as
    sentence-transformers' ``MSELoss``); for unit-norm embeddings ``MSE = 2 (1 - cos) / D``,
    so the cosine term carries most of the gradient at equal weights.

    :param student: ``(B, D)`` float, the student's sentence embeddings (projected to the
        teacher's width if it is narrower).
    :param teacher: ``(B, D)`` float, the teacher's (no gradient needed).
    :returns: ``{"loss": total, "loss_mse": ..., "loss_cos": ...}``, scalar tensors.
    :raises ValueError: when the shapes differ or both weights are 0.
    """
    import torch.nn.functional as F

    if student.shape != teacher.shape:
        raise ValueError(
            f"student embeddings {tuple(student.shape)} and teacher embeddings "
            f"{tuple(teacher.shape)} differ in shape"
        )
    if alpha_mse < 0 or alpha_cos < 0 or alpha_mse + alpha_cos <= 0:
        raise ValueError(f"loss weights must be >= 0 and not both 0, got mse={alpha_mse}, cos={alpha_cos}")
    s, t = student.float(), teacher.float()
    mse = F.mse_loss(s, t)
    cos = (1.0 - F.cosine_similarity(s, t, dim=-1, eps=1e-8)).mean()
    return {"loss": alpha_mse * mse + alpha_cos * cos, "loss_mse": mse, "loss_cos": cos}


def token_embeddings(outputs: Any, hidden_size: int | None = None) -> Any:
    """The ``(B, S, H)`` token embeddings among a forward call's outputs.

    :param outputs: a ``ModelOutput`` or a mapping name -> tensor/array (a backend's
        :meth:`~compressor.evaluate.backends.Backend.predict_outputs`).
    :param hidden_size: when no output has a known name, the single 3-D output whose last
        axis has this width is taken.
    :raises CompressorError: when no output is token embeddings (e.g. a classifier's logits).
    """
    get = outputs.get if hasattr(outputs, "get") else (lambda k: getattr(outputs, k, None))
    for name in TOKEN_OUTPUTS:
        value = get(name)
        if value is not None:
            return value
    hidden = get("hidden_states")
    if hidden is not None:
        return hidden[-1]
    items = outputs.items() if hasattr(outputs, "items") else []
    three_d = [v for _, v in items if getattr(v, "ndim", 0) == 3 and (hidden_size is None or v.shape[-1] == hidden_size)]
    if len(three_d) == 1:
        return three_d[0]
    names = [k for k, _ in (outputs.items() if hasattr(outputs, "items") else [])]
    raise CompressorError(
        f"the model returns no token embeddings (outputs: {names})",
        expected="a 'last_hidden_state' output: the bare encoder (AutoModel), as the "
        "sentence-embedding task loads and exports it",
    )


# --- heads, found from a model's folder ----------------------------------------------------

_HEADS: dict[tuple[str, float], "EmbeddingHead"] = {}


def model_folder(obj: Any) -> Path | None:
    """The folder a backend or a model was loaded from, if it can be told.

    Tries a backend's ``path`` / ``onnx_file``, the PyTorch model's ``name_or_path``, then the
    tokenizer's (every artifact holds its tokenizer).
    """
    for candidate in (
        getattr(obj, "path", None),
        getattr(getattr(obj, "onnx_file", None), "parent", None),
        getattr(getattr(obj, "model", None), "name_or_path", None),
        getattr(obj, "name_or_path", None),
        getattr(getattr(obj, "tokenizer", None), "name_or_path", None),
    ):
        if candidate and Path(str(candidate)).is_dir():
            return Path(str(candidate))
    return None


def head_for(folder: Path | None, hidden_size: int | None) -> "EmbeddingHead":
    """The head of ``folder`` (cached while its ``modules.json`` is unchanged); mean pooling
    when the folder is unknown or has no sentence-transformers files."""
    from .embedding_head import MODULES_FILE, load_head, mean_pooling_head

    if folder is None:
        if hidden_size is None:
            raise CompressorError("cannot tell the model's folder nor its hidden size for pooling")
        return mean_pooling_head(hidden_size).eval()
    modules = folder / MODULES_FILE
    key = (str(folder.resolve()), modules.stat().st_mtime if modules.is_file() else -1.0)
    if key not in _HEADS:
        _HEADS[key] = load_head(folder, hidden_size)
        if not modules.is_file():
            log.warning("%s has no modules.json: sentence embeddings use mean pooling", folder)
    return _HEADS[key]


def _hidden_size(config: Any) -> int | None:
    value = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    return value if isinstance(value, int) else None


def embed_texts(
    backend: "Backend", texts: list[str], *, batch_size: int, head: "EmbeddingHead",
    max_length: int, progress: bool = False, desc: str = "embedding",
) -> "np.ndarray":
    """Sentence embeddings of ``texts`` through ``backend`` and ``head``.

    Texts are batched longest first (less padding, as ``SentenceTransformer.encode`` does) and
    returned in their order.

    :returns: float32 ``(len(texts), D)``.
    """
    import numpy as np
    from tqdm.auto import tqdm

    hidden = _hidden_size(backend.config)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    chunks: list[np.ndarray] = []
    with tqdm(total=len(texts), desc=desc, unit="sent", disable=not progress, leave=False) as bar:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = backend.encode([texts[i] for i in idx], None, padding=True, max_length=max_length)
            tokens = token_embeddings(backend.predict_outputs(batch), hidden)
            mask = batch["attention_mask"]
            mask = mask.cpu().numpy() if hasattr(mask, "cpu") else np.asarray(mask)
            chunks.append(head.embed_numpy(tokens, mask))
            bar.update(len(idx))
    if not chunks:
        return np.zeros((0, hidden or 0), dtype=np.float32)
    out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
    out[np.asarray(order)] = np.concatenate(chunks)
    return out


def unit(x: "np.ndarray") -> "np.ndarray":
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    import numpy as np

    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def knn_overlap(a: "np.ndarray", b: "np.ndarray", k: int) -> "np.ndarray":
    """Per-row overlap of the ``k`` nearest neighbours (cosine, self excluded) of row ``i`` in
    ``a`` and in ``b`` (two embeddings of the same ``n`` sentences, any widths).

    :returns: float64 ``(n,)`` in ``[0, 1]``: ``|N_a(i) ∩ N_b(i)| / k``.
    :raises CompressorError: for fewer than ``k + 1`` rows.
    """
    import numpy as np

    n = a.shape[0]
    if n <= k:
        raise CompressorError(f"{n} sentences are too few for a {k}-nearest-neighbour overlap")

    def neighbours(x: "np.ndarray") -> "np.ndarray":
        x = unit(x.astype(np.float32))
        out = np.empty((n, k), dtype=np.int64)
        for start in range(0, n, 2048):
            sim = x[start : start + 2048] @ x.T
            rows = np.arange(sim.shape[0])
            sim[rows, rows + start] = -np.inf
            part = np.argpartition(-sim, k, axis=1)[:, :k]
            out[start : start + 2048] = part
        return out

    na, nb = neighbours(a), neighbours(b)
    same = (na[:, :, None] == nb[:, None, :]).any(axis=2).sum(axis=1)
    return same.astype(np.float64) / k


# --- MTEB-style benchmarks -----------------------------------------------------------------

_BENCHMARK_DATA: dict[tuple[Any, ...], Any] = {}


def benchmark_data(name: str, options: EmbeddingOptions, data: "TaskData") -> "TaskData":
    """A registered classification data set, split with the options' seed and capped (cached),
    loaded as the run's data was (:attr:`compressor.task.TaskData.loader`).

    :raises CompressorError: for an unknown name or one that is not labelled classification
        data (key ``task.options.benchmarks``), or data built without a loader.
    """
    if data.loader is None:
        raise CompressorError(
            "the sentence-embedding benchmarks load registered data sets, but this task's data "
            "was built by hand (no loader)",
            key="task.options.benchmarks", hint="set benchmarks: [] or load the data with load_task_data",
        )
    key = (name, options.benchmark_train_samples, options.benchmark_test_samples, options.seed)
    if key not in _BENCHMARK_DATA:
        try:
            _BENCHMARK_DATA[key] = data.loader(
                name, task_type="text-classification", seed=options.seed,
                validation_fraction=0.1, test_fraction=0.2,  # validation unused
                max_train_samples=options.benchmark_train_samples,
                max_eval_samples=options.benchmark_test_samples,
            )
        except CompressorError as exc:
            raise CompressorError(
                f"benchmark {name!r}: {exc.message}", key="task.options.benchmarks",
                expected="a registered text-classification data set (compressor plugins --verbose)",
                hint=exc.hint,
            ) from exc
    return _BENCHMARK_DATA[key]


def _percentile_interval(stat: Any, n: int, seed: int, resamples: int = 1000) -> list[float]:
    """95% percentile-bootstrap interval of ``stat(indices)`` over ``n`` rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n, n)) for _ in range(resamples)]
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def classification_benchmark(
    train_x: "np.ndarray", train_y: "np.ndarray", test_x: "np.ndarray", test_y: "np.ndarray", *, seed: int
) -> dict[str, Any]:
    """MTEB-style classification: logistic regression on frozen embeddings.

    :returns: ``{"accuracy", "accuracy_ci" (95%, bootstrap over test rows), "n_train",
        "n_test"}``; accuracy is a fraction.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=100, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at MTEB's 100 iterations
        clf.fit(train_x, train_y)
    correct = (clf.predict(test_x) == test_y).astype(np.float64)
    return {
        "accuracy": float(correct.mean()),
        "accuracy_ci": _percentile_interval(lambda i: correct[i].mean(), len(correct), seed),
        "n_train": int(len(train_y)),
        "n_test": int(len(test_y)),
    }


def clustering_benchmark(x: "np.ndarray", y: "np.ndarray", *, seed: int) -> dict[str, Any]:
    """MTEB-style clustering: k-means (k = number of classes) and V-measure.

    :returns: ``{"v_measure", "v_measure_ci" (95%, bootstrap over rows of the fixed
        clustering), "clusters", "n"}``; V-measure in ``[0, 1]``.
    """
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    k = int(np.unique(y).size)
    assigned = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit(x))
    return {
        "v_measure": float(v_measure_score(y, assigned)),
        "v_measure_ci": _percentile_interval(
            lambda i: v_measure_score(y[i], assigned[i]), len(y), seed, resamples=200
        ),
        "clusters": k,
        "n": int(len(y)),
    }


# --- the task ------------------------------------------------------------------------------


class SentenceEmbedding(Task):
    """Sentence embeddings with the model's own pooling (see the module docstring)."""

    name = "sentence-embedding"
    description = "one vector per sentence (the model's pooling); STS Spearman, agreement with the teacher, MTEB-style benchmarks"
    labelled = False
    has_classes = False
    auto_model = "AutoModel"
    pipeline_tag = "sentence-similarity"
    Options = EmbeddingOptions
    onnx_outputs = {"last_hidden_state": ("batch", "sequence")}

    # --- data -----------------------------------------------------------------------------

    def columns(self, cfg: Any) -> dict[str, str]:
        """``text``; with ``text_pair_column``, also ``text_pair`` and the gold score ``label``."""
        wanted = {"text": cfg.text_column}
        if cfg.text_pair_column:
            wanted["text_pair"] = cfg.text_pair_column
            wanted["label"] = cfg.label_column
        return wanted

    def normalise(self, splits: Any, where: Any, spec: Any) -> Any:
        from .regression import normalise_scores

        return normalise_scores(splits, where), []

    def stratify(self) -> bool:
        return False

    def required_columns(self, data: "TaskData") -> tuple[str, ...]:
        return ("text", "text_pair") if data.has_text_pair else ("text",)

    # --- distillation and pruning ---------------------------------------------------------

    def tokenize(self, split: "datasets.Dataset", tokenizer: Any, max_length: int, data: "TaskData",
                 *, progress: bool = False) -> "datasets.Dataset":
        """The sentences of ``text`` (and of ``text_pair``, each as its own row), truncated,
        without labels: what importance scores and embedding distillation read."""
        from .base import tokenize_texts

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            texts = list(batch["text"]) + list(batch.get("text_pair") or [])
            return dict(tokenizer(texts, truncation=True, max_length=max_length))

        return tokenize_texts(split, encode, progress=progress)

    def soft_targets(self, outputs: Any, batch: dict[str, Any]) -> list[SoftTarget]:
        """The sentence embedding by mean pooling of ``last_hidden_state`` over
        ``batch["attention_mask"]`` (the model's own head is applied by ``distill.embedding``)."""
        tokens = token_embeddings(outputs)
        mask = batch["attention_mask"].to(tokens.dtype).unsqueeze(-1)
        pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return [SoftTarget("embedding", pooled, "embedding")]

    def embed(self, model: Any, batch: dict[str, Any], head: "EmbeddingHead | None" = None) -> "torch.Tensor":
        """Sentence embeddings ``(B, D)`` of a PyTorch encoder for one tokenised batch, with
        gradients, through ``head`` (default: the head of the folder the model was loaded from).
        """
        head = head or head_for(model_folder(model), _hidden_size(model.config))
        outputs = model(**{k: v for k, v in batch.items() if k != "labels"})
        tokens = token_embeddings(outputs, _hidden_size(model.config))
        return head.to(tokens.device)(tokens, batch["attention_mask"])

    def importance_loss(self, model: Any, batch: dict[str, Any], reference_outputs: Any, *,
                        alpha_mse: float = 1.0, alpha_cos: float = 1.0) -> "torch.Tensor":
        """The embedding-distillation loss of ``model`` against the unpruned model, for
        gradient-based head, FFN-neuron and layer importance (Michel et al. 2019 take
        ``|dL/d mask|`` of a loss; here the loss needs no labels).

        :param model: the PyTorch encoder being pruned (``AutoModel`` or any model whose
            outputs hold ``last_hidden_state`` or ``hidden_states``), gradients on.
        :param batch: its tokenised inputs (``input_ids``, ``attention_mask``...).
        :param reference_outputs: the unpruned model's outputs on the same batch (a
            ``ModelOutput`` or mapping with ``last_hidden_state``) or its sentence embeddings,
            a ``(B, D)`` tensor; computed once, without gradients.
        :returns: scalar float32 tensor :func:`embedding_loss` (``loss``), with gradient.
        """
        import torch

        head = head_for(model_folder(model), _hidden_size(model.config))
        student = self.embed(model, batch, head)
        if isinstance(reference_outputs, torch.Tensor) and reference_outputs.dim() == 2:
            teacher = reference_outputs
        else:
            tokens = token_embeddings(reference_outputs, _hidden_size(model.config))
            with torch.no_grad():
                teacher = head.to(tokens.device)(tokens.detach(), batch["attention_mask"])
        return embedding_loss(student, teacher.detach(), alpha_mse=alpha_mse, alpha_cos=alpha_cos)["loss"]

    #: batch key of the unpruned model's sentence embeddings (:meth:`reference_batch`)
    REFERENCE_KEY = "reference_embedding"

    def reference_batch(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """Store the unpruned model's sentence embeddings ``(B, D)`` in the batch."""
        import torch

        with torch.no_grad():
            batch[self.REFERENCE_KEY] = self.embed(model, batch).detach()
        return batch

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        """:meth:`importance_loss` against the embeddings :meth:`reference_batch` stored.

        :raises StageError: for a batch without them.
        """
        from ..errors import StageError

        if self.REFERENCE_KEY not in batch:
            raise StageError("sentence-embedding importance needs the unpruned model's embeddings in the batch")
        inputs = {k: v for k, v in batch.items() if k != self.REFERENCE_KEY}
        return self.importance_loss(model, inputs, batch[self.REFERENCE_KEY])

    # --- evaluation -----------------------------------------------------------------------

    def metrics(self, data: "TaskData") -> list[Metric]:
        k = self.options(data).neighbours
        agreement = [Metric("teacher_cosine", "cosine to reference", "x100"),
                     Metric("knn_overlap", f"{k}-NN overlap", "%")]
        if data.has_text_pair:
            return [Metric("spearman", "STS Spearman", "x100"),
                    Metric("pearson", "STS Pearson", "x100"), *agreement]
        return agreement

    def max_length(self, backend: "Backend", folder: Path | None, data: "TaskData | None") -> int:
        """Tokens per sentence: ``task.options.max_length``, else the model's
        ``max_seq_length``, capped by the model's position limit."""
        from .embedding_head import max_seq_length

        limit = backend.accuracy_max_length()
        wanted = self.options(data).max_length or (max_seq_length(folder) if folder else None)
        return min(wanted, limit) if wanted else limit

    def score(self, backend: "Backend", split: "datasets.Dataset", data: "TaskData", *,
              batch_size: int, progress: bool = False) -> Scored:
        """Embed the split's sentences (and pairs), and run the benchmarks.

        :returns: arrays ``embedding`` (float32 ``(n, D)``), with pairs also
            ``embedding_pair``, ``cosine`` (``(n,)``, the pair's cosine) and ``label`` (gold
            score); extra ``pooling``, ``embedding_dim``, ``max_length`` and ``benchmarks``
            (name -> classification and clustering results).
        :raises CompressorError: for a model that returns no token embeddings, or an unknown
            benchmark name (``task.options.benchmarks``).
        """
        import numpy as np

        options = self.options(data)
        folder = model_folder(backend)
        head = head_for(folder, _hidden_size(backend.config))
        length = self.max_length(backend, folder, data)

        def embed(texts: list[str], desc: str) -> np.ndarray:
            return embed_texts(backend, texts, batch_size=batch_size, head=head, max_length=length,
                               progress=progress, desc=desc)

        arrays: dict[str, np.ndarray] = {"embedding": embed(list(split["text"]), "embedding")}
        predictions: dict[str, np.ndarray] = {}
        if "text_pair" in split.column_names:
            arrays["embedding_pair"] = embed(list(split["text_pair"]), "embedding pairs")
            arrays["cosine"] = np.sum(unit(arrays["embedding"]) * unit(arrays["embedding_pair"]), axis=1).astype(np.float64)
            predictions["cosine"] = arrays["cosine"].astype(np.float32)
            if "label" in split.column_names:
                arrays["label"] = np.asarray(split["label"], dtype=np.float64)
        benchmarks: dict[str, Any] = {}
        for name in options.benchmarks:
            bench = benchmark_data(name, options, data)
            train, test = bench.splits["train"], bench.splits["test"]
            train_x = embed(list(train["text"]), f"{name} train")
            test_x = embed(list(test["text"]), f"{name} test")
            train_y, test_y = np.asarray(train["label"]), np.asarray(test["label"])
            result = {"classification": classification_benchmark(train_x, train_y, test_x, test_y, seed=options.seed)}
            if options.clustering:
                result["clustering"] = clustering_benchmark(test_x, test_y, seed=options.seed)
            benchmarks[name] = result
        return Scored(
            arrays=arrays,
            extra={
                "pooling": head.description,
                "embedding_dim": int(arrays["embedding"].shape[1]),
                "max_length": int(length),
                "benchmarks": benchmarks,
            },
            predictions=predictions,
        )

    def relate(self, scored: Scored, reference: Scored, data: "TaskData") -> None:
        """Add the agreement with the reference model to ``scored`` (in place).

        Adds per-unit arrays ``teacher_cosine`` (mean cosine between this model's and the
        reference's embedding of the unit's sentences; only when both have the same width)
        and ``knn_overlap`` (mean over the unit's sentences of the overlap of their ``k``
        nearest neighbours among all the split's sentences). The evaluator calls it for every
        model once its reference is scored (the reference itself gets 1.0 on both).

        :raises CompressorError: when the two were scored on different units.
        """
        import numpy as np

        if len(scored) != len(reference):
            raise CompressorError(
                f"cannot compare embeddings of {len(scored)} and {len(reference)} units"
            )
        keys = [k for k in ("embedding", "embedding_pair") if k in scored.arrays and k in reference.arrays]
        mine = np.concatenate([scored.arrays[k] for k in keys])
        theirs = np.concatenate([reference.arrays[k] for k in keys])
        n = len(scored)
        k = self.options(data).neighbours
        overlap = knn_overlap(mine, theirs, min(k, mine.shape[0] - 1))
        scored.arrays["knn_overlap"] = overlap.reshape(len(keys), n).mean(axis=0)
        if mine.shape[1] == theirs.shape[1]:
            cos = np.sum(unit(mine) * unit(theirs), axis=1).astype(np.float64)
            scored.arrays["teacher_cosine"] = cos.reshape(len(keys), n).mean(axis=0)
        else:
            scored.extra["teacher_cosine"] = (
                f"not defined: embedding widths differ ({mine.shape[1]} vs {theirs.shape[1]})"
            )

    def metric_matrix(self, weights: "np.ndarray", scored: Scored, data: "TaskData") -> dict[str, "np.ndarray"]:
        import numpy as np

        from .regression import correlation_matrix

        out: dict[str, np.ndarray] = {}
        a = scored.arrays
        if "cosine" in a and "label" in a:
            out.update(correlation_matrix(weights, a["cosine"], a["label"]))
        total = np.asarray(weights, dtype=np.float64).sum(axis=1)
        total = np.where(total > 0, total, 1.0)
        for name in ("teacher_cosine", "knn_overlap"):
            if name in a:
                out[name] = (np.asarray(weights, dtype=np.float64) @ a[name]) / total
        return out

    # --- artifacts ------------------------------------------------------------------------

    def loading_snippet(self, path: str = "path/to/this/folder") -> list[str]:
        return [
            "from sentence_transformers import SentenceTransformer",
            "",
            f'model = SentenceTransformer("{path}")',
            'embeddings = model.encode(["A man is playing a guitar.", "Someone plays music."])',
        ]

    def complete_artifact(self, source: Any, output: Any) -> None:
        """Carry ``modules.json``, ``1_Pooling/``, ``sentence_bert_config.json``,
        ``config_sentence_transformers.json`` and the other module folders (``Normalize``,
        ``Dense``) from the input model to the new artifact, keeping any the stage wrote."""
        from .embedding_head import copy_sentence_transformers_files

        if source is None or output is None or not Path(source).is_dir():
            return
        copy_sentence_transformers_files(source, output)


def onnx_loading_snippet(path: str = "path/to/this/folder") -> list[str]:
    """Python lines that embed sentences with an ONNX artifact of this task and ONNX Runtime
    (mean pooling and normalisation written out; use the pooling its 1_Pooling says)."""
    return [
        "import numpy as np, onnxruntime",
        "from transformers import AutoTokenizer", "",
        f'tokenizer = AutoTokenizer.from_pretrained("{path}")',
        f'session = onnxruntime.InferenceSession("{path}/model.onnx")',
        "names = [i.name for i in session.get_inputs()]",
        'enc = tokenizer(["some text"], padding=True, truncation=True, return_tensors="np")',
        "tokens = session.run(None, {k: v for k, v in enc.items() if k in names})[0]  # (B, S, H)",
        'mask = enc["attention_mask"][..., None]',
        "emb = (tokens * mask).sum(1) / mask.sum(1)            # 1_Pooling: mean",
        "emb /= np.linalg.norm(emb, axis=1, keepdims=True)     # 2_Normalize",
    ]
