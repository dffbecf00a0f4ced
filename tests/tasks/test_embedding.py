"""``sentence-embedding``: the model's own pooling (checked against sentence-transformers),
STS Spearman, agreement with the reference, MTEB-style benchmarks, pruning importance loss,
artifact files, ONNX Runtime; the real MiniLM on real STS-B where present."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compressor.testing import sentence_transformers_files

from compressor.errors import CompressorError
from compressor.task import TaskData
from compressor.tasks.embedding import (
    SentenceEmbedding,
    embedding_loss,
    head_for,
    knn_overlap,
    model_folder,
)
from compressor.tasks.embedding_head import load_head

STSB = Path(__file__).resolve().parents[3] / "shared" / "data" / "stsb"
MINILM = Path.home() / ".cache" / "compressor" / "models" / "all-minilm-l6-v2"
WORDS = ["good", "great", "bad", "awful", "movie", "plot", "the", "a", "is", "very", "man", "guitar", "plays"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder (AutoModel) with a real WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("encoder")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def st_folder(tmp_path: Path, encoder_dir: Path, **kw: Any) -> Path:
    folder = tmp_path / "st"
    shutil.copytree(encoder_dir, folder)
    return sentence_transformers_files(folder, 32, **kw)


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 9)))) for _ in range(n)]


def backend(folder: Path) -> Any:
    from compressor.artifact import Artifact
    from compressor.evaluate.backends import PyTorchBackend

    return PyTorchBackend.load(Artifact(name="m", path=folder), task_type="sentence-embedding", threads=1)


def pairs_data(n: int = 40, **options: Any) -> TaskData:
    import datasets

    rng = np.random.default_rng(0)
    split = datasets.Dataset.from_dict({"text": sentences(n, 1), "text_pair": sentences(n, 2),
                                        "label": rng.uniform(0, 5, n).astype(np.float32).tolist()})
    opts = SentenceEmbedding.Options(benchmarks=[], neighbours=3, **options)
    return TaskData(type="sentence-embedding", splits={"test": split}, has_text_pair=True, options=opts)


@pytest.mark.parametrize("mode, normalize", [("mean", True), ("cls", False), ("max", True)])
def test_pooling_matches_sentence_transformers(tmp_path, encoder_dir, mode, normalize) -> None:
    """The task's embedding of a sentence is SentenceTransformer(folder).encode's."""
    from sentence_transformers import SentenceTransformer

    folder = st_folder(tmp_path, encoder_dir, mode=mode, normalize=normalize)
    texts = sentences(12, 3)
    task = SentenceEmbedding()
    data = TaskData(type="sentence-embedding", splits={},
                    options=SentenceEmbedding.Options(benchmarks=[]))
    import datasets

    scored = task.score(backend(folder), datasets.Dataset.from_dict({"text": texts}), data, batch_size=5)
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(scored.arrays["embedding"], expected, atol=1e-5)
    assert scored.extra["pooling"].startswith(f"{mode} pooling")
    assert scored.extra["max_length"] == 48  # sentence_bert_config.json's max_seq_length


def test_folder_without_st_files_gets_mean_pooling(encoder_dir) -> None:
    head = head_for(encoder_dir, 32)
    assert head.description.startswith("mean pooling (default") and not head.normalised


def test_unsupported_module_is_named(tmp_path, encoder_dir) -> None:
    folder = st_folder(tmp_path, encoder_dir)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "sentence_transformers.models.Asym"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CompressorError, match=r"modules.json: module 1 is .*Asym"):
        load_head(folder)


def test_sts_metrics_agreement_and_bootstrap(tmp_path, encoder_dir) -> None:
    from scipy.stats import pearsonr, spearmanr

    folder = st_folder(tmp_path, encoder_dir)
    data = pairs_data()
    task = SentenceEmbedding()
    scored = task.score(backend(folder), data.splits["test"], data, batch_size=8)
    task.relate(scored, scored, data)  # its own reference: perfect agreement
    full = task.full_metrics(scored, data)
    gold = data.splits["test"]["label"]
    assert full["spearman"] == pytest.approx(spearmanr(scored.arrays["cosine"], gold)[0], abs=1e-9)
    assert full["pearson"] == pytest.approx(pearsonr(scored.arrays["cosine"], gold)[0], abs=1e-9)
    assert full["teacher_cosine"] == pytest.approx(1.0) and full["knn_overlap"] == 1.0
    assert [m.name for m in task.metrics(data)] == ["spearman", "pearson", "teacher_cosine", "knn_overlap"]
    weights = np.random.default_rng(0).multinomial(40, np.full(40, 1 / 40), size=7).astype(float)
    assert all(v.shape == (7,) for v in task.metric_matrix(weights, scored, data).values())


def test_agreement_of_another_model_is_below_one(tmp_path, encoder_dir) -> None:
    import torch
    from transformers import BertModel

    folder = st_folder(tmp_path, encoder_dir)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    model = BertModel.from_pretrained(other)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(other)
    data = pairs_data()
    task = SentenceEmbedding()
    ref = task.score(backend(folder), data.splits["test"], data, batch_size=8)
    mine = task.score(backend(other), data.splits["test"], data, batch_size=8)
    task.relate(mine, ref, data)
    assert 0.0 < mine.arrays["teacher_cosine"].mean() < 0.9999
    assert mine.arrays["knn_overlap"].shape == (40,) and mine.arrays["knn_overlap"].mean() < 1.0


def test_knn_overlap_ignores_width_and_scale() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 8))
    rotation = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    wide = np.concatenate([a @ rotation, np.zeros((30, 4))], axis=1) * 3.0
    np.testing.assert_array_equal(knn_overlap(a, wide, 5), np.ones(30))
    assert knn_overlap(a, rng.normal(size=(30, 8)), 5).mean() < 0.5
    with pytest.raises(CompressorError, match="too few"):
        knn_overlap(a[:4], a[:4], 5)


def _loader():
    """What a run's data carries: the registered data sets, loaded as the run loads its own."""
    import functools

    from compressor.plugins import get_plugins
    from compressor.sources.datasets import load_named_data
    from compressor.sources.packaged import cache_root

    plugins = get_plugins()
    return functools.partial(load_named_data, datasets_registry=plugins.datasets, cache_dir=cache_root(),
                             base_dir=Path.cwd(), tasks_registry=plugins.tasks)


def test_mteb_style_benchmarks_on_packaged_data(tmp_path, encoder_dir) -> None:
    """Logistic regression and k-means on frozen embeddings of trec6 (small caps)."""
    import datasets

    folder = st_folder(tmp_path, encoder_dir)
    opts = SentenceEmbedding.Options(benchmarks=["trec6"], benchmark_train_samples=200, benchmark_test_samples=100)
    data = TaskData(type="sentence-embedding", splits={}, options=opts, loader=_loader())
    scored = SentenceEmbedding().score(backend(folder), datasets.Dataset.from_dict({"text": sentences(5, 0)}),
                                       data, batch_size=32)
    trec = scored.extra["benchmarks"]["trec6"]
    cls, clu = trec["classification"], trec["clustering"]
    assert cls["n_train"] == 200 and cls["n_test"] == 100 and 0 < cls["accuracy"] <= 1
    assert cls["accuracy_ci"][0] <= cls["accuracy"] <= cls["accuracy_ci"][1]
    assert clu["clusters"] == 6 and 0 <= clu["v_measure"] <= 1


def test_unknown_benchmark_is_named(tmp_path, encoder_dir) -> None:
    import datasets

    data = TaskData(type="sentence-embedding", splits={}, options=SentenceEmbedding.Options(benchmarks=["trec-6"]),
                    loader=_loader())
    with pytest.raises(CompressorError, match="trec-6") as err:
        SentenceEmbedding().score(backend(st_folder(tmp_path, encoder_dir)),
                                  datasets.Dataset.from_dict({"text": ["a"]}), data, batch_size=2)
    assert err.value.key == "task.options.benchmarks" and "trec6" in str(err.value)


def test_options_refuse_unknown_keys() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SentenceEmbedding.Options(neighbors=5)


def test_importance_loss_is_zero_against_itself_and_has_gradients(tmp_path, encoder_dir) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = st_folder(tmp_path, encoder_dir)
    model = AutoModel.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    batch = dict(tok(sentences(6, 4), padding=True, return_tensors="pt"))
    task = SentenceEmbedding()
    model.eval()
    with torch.no_grad():
        reference = model(**batch)
    assert task.importance_loss(model, batch, reference).item() == pytest.approx(0.0, abs=1e-6)
    pruned = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        pruned.encoder.layer[1].output.dense.weight.mul_(0.0)  # one FFN removed
    loss = task.importance_loss(pruned, batch, reference)
    loss.backward()
    assert loss.item() > 1e-6 and pruned.encoder.layer[1].output.dense.weight.grad is not None
    # reference given as embeddings (B, D)
    emb = task.embed(model, batch).detach()
    assert task.importance_loss(model, batch, emb).item() == pytest.approx(0.0, abs=1e-6)


def test_embedding_loss_terms() -> None:
    import torch

    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    terms = embedding_loss(a, a.clone(), alpha_mse=1.0, alpha_cos=2.0)
    assert float(terms["loss"]) == pytest.approx(0.0, abs=1e-6)
    b = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    terms = embedding_loss(a, b)
    # unit vectors: MSE = 2 (1 - cos) / D
    assert float(terms["loss_mse"]) == pytest.approx(2 * float(terms["loss_cos"]) / 8, rel=1e-5)
    with pytest.raises(ValueError, match="shape"):
        embedding_loss(a, b[:, :4])


def test_complete_artifact_carries_the_st_files(tmp_path, encoder_dir) -> None:
    from sentence_transformers import SentenceTransformer

    source = st_folder(tmp_path, encoder_dir)
    out = tmp_path / "out"
    shutil.copytree(encoder_dir, out)
    SentenceEmbedding().complete_artifact(source, out)
    assert (out / "modules.json").is_file() and (out / "1_Pooling" / "config.json").is_file()
    assert SentenceTransformer(str(out), device="cpu").encode(["good movie"]).shape == (1, 32)
    assert any("SentenceTransformer" in line for line in SentenceEmbedding().loading_snippet())


def test_onnx_artifact_scores_like_pytorch(tmp_path, encoder_dir) -> None:
    """An AutoModel exported to ONNX (last_hidden_state) and run by ONNX Runtime gives the
    same sentence embeddings through the task as the PyTorch model."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from compressor.artifact import Artifact
    from compressor.evaluate.backends import OnnxRuntimeBackend

    folder = st_folder(tmp_path, encoder_dir)
    onnx_dir = tmp_path / "onnx"
    shutil.copytree(folder, onnx_dir, ignore=shutil.ignore_patterns("*.safetensors"))
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    enc = AutoTokenizer.from_pretrained(folder)(["good movie", "the plot"], padding=True, return_tensors="pt")
    class Tokens(torch.nn.Module):  # positional inputs for the TorchScript exporter
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    torch.onnx.export(
        Tokens(), (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]), str(onnx_dir / "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
        dynamic_axes={k: {0: "batch", 1: "sequence"} for k in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
        dynamo=False, opset_version=17,
    )
    data = pairs_data(20)
    task = SentenceEmbedding()
    onnx = OnnxRuntimeBackend.load(Artifact(name="onnx", path=onnx_dir, format="onnx"),
                                   task_type="sentence-embedding", threads=1)
    a = task.score(backend(folder), data.splits["test"], data, batch_size=8)
    b = task.score(onnx, data.splits["test"], data, batch_size=8)
    np.testing.assert_allclose(a.arrays["embedding"], b.arrays["embedding"], atol=1e-5)
    assert model_folder(onnx) == onnx_dir


@pytest.mark.skipif(not (STSB / "test.tsv").is_file() or not (MINILM / "modules.json").is_file(),
                    reason=f"needs STS-B at {STSB} (../shared/data) and the packaged MiniLM in {MINILM}")
def test_real_minilm_on_stsb_sample() -> None:
    """all-MiniLM-L6-v2 on the first 150 STS-B test pairs: the task's embeddings are
    SentenceTransformer's, and the pair cosine correlates with the gold score."""
    import csv

    import datasets
    from sentence_transformers import SentenceTransformer

    with open(STSB / "test.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:151]
    split = datasets.Dataset.from_dict({"text": [r[0] for r in rows], "text_pair": [r[1] for r in rows],
                                        "label": [float(r[2]) for r in rows]})
    data = TaskData(type="sentence-embedding", splits={"test": split}, has_text_pair=True,
                    options=SentenceEmbedding.Options(benchmarks=[]))
    task = SentenceEmbedding()
    scored = task.score(backend(MINILM), split, data, batch_size=32)
    expected = SentenceTransformer(str(MINILM), device="cpu").encode(split["text"][:40])
    np.testing.assert_allclose(scored.arrays["embedding"][:40], expected, atol=1e-5)
    assert task.full_metrics(scored, data)["spearman"] > 0.7
