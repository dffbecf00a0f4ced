"""load_task_data: normalised columns, seeded splits, caps, fingerprints, typed errors."""

from __future__ import annotations

import collections
import json

import pytest

from compressor.errors import SourceError
from compressor.sources.datasets import DatasetSpec, load_task_data


def load(cfg, registry, cache_dir, tmp_path, seed=0, **kw):
    return load_task_data(cfg, datasets_registry=registry, cache_dir=cache_dir, seed=seed, base_dir=tmp_path, **kw)


def test_registered_mr_snippets_split_and_balance(registry, cache_dir, tmp_path, data_cfg):
    data = load(data_cfg(name="mr-snippets"), registry, cache_dir, tmp_path)
    sizes = {s: len(d) for s, d in data.splits.items()}
    assert sizes == {"train": 8_454, "validation": 1_057, "test": 1_057}
    assert data.type == "text-classification" and data.label_names == ["negative", "positive"]
    assert data.name == "mr-snippets" and not data.has_text_pair and data.num_labels == 2
    for split in data.splits.values():
        assert split.column_names == ["text", "label"]
        share = sum(split["label"]) / len(split)
        assert abs(share - 5_242 / 10_568) < 0.002  # stratified: same balance everywhere
    assert len(data.fingerprint) == 64


def test_splits_are_deterministic_per_seed(registry, cache_dir, tmp_path, data_cfg):
    cfg = data_cfg(name="trec6")
    a = load(cfg, registry, cache_dir, tmp_path, seed=0)
    b = load(cfg, registry, cache_dir, tmp_path, seed=0)
    c = load(cfg, registry, cache_dir, tmp_path, seed=1)
    for split in ("train", "validation", "test"):
        assert a.splits[split]["text"] == b.splits[split]["text"]
        assert a.splits[split]["label"] == b.splits[split]["label"]
    assert a.fingerprint == b.fingerprint
    assert a.splits["test"]["text"] != c.splits["test"]["text"]
    assert a.fingerprint != c.fingerprint
    # no row lost or duplicated
    texts = [t for s in ("train", "validation", "test") for t in a.splits[s]["text"]]
    assert len(texts) == 5_452
    assert collections.Counter(texts) == collections.Counter(registry["trec6"].load(cache_dir)["text"])
    # stratified: the rare class (ABBR, 86 rows) is in every split
    for split in a.splits.values():
        assert 0 in split["label"]


def test_caps_are_seeded_samples(registry, cache_dir, tmp_path, data_cfg):
    cfg = data_cfg(name="mr-snippets", max_train_samples=500, max_eval_samples=100)
    a = load(cfg, registry, cache_dir, tmp_path, seed=3)
    b = load(cfg, registry, cache_dir, tmp_path, seed=3)
    assert {s: len(d) for s, d in a.splits.items()} == {"train": 500, "validation": 100, "test": 100}
    assert a.splits["train"]["text"] == b.splits["train"]["text"]
    full = load(data_cfg(name="mr-snippets"), registry, cache_dir, tmp_path, seed=3)
    assert set(a.splits["test"]["text"]) <= set(full.splits["test"]["text"])
    assert a.splits["train"]._indices is None  # flattened


def test_news_articles_raw_text(registry, cache_dir, tmp_path, data_cfg):
    data = load(data_cfg(name="news-articles", max_eval_samples=50), registry, cache_dir, tmp_path)
    assert data.type == "masked-lm" and data.label_names == []
    assert data.splits["train"].column_names == ["text"]
    assert len(data.splits["train"]) == 3_823 - 383 - 383 and len(data.splits["test"]) == 50


def test_labelled_set_used_as_raw_text(registry, cache_dir, tmp_path, data_cfg):
    data = load(data_cfg(name="trec6"), registry, cache_dir, tmp_path, task_type="masked-lm")
    assert data.type == "masked-lm" and data.splits["train"].column_names == ["text"]
    with pytest.raises(SourceError) as err:
        load(data_cfg(name="news-articles"), registry, cache_dir, tmp_path, task_type="text-classification")
    assert err.value.key == "task.data.name" and "mr-snippets" in err.value.expected


def test_unknown_dataset_name(registry, cache_dir, tmp_path, data_cfg):
    with pytest.raises(SourceError) as err:
        load(data_cfg(name="mr-snipets"), registry, cache_dir, tmp_path)
    e = err.value
    assert e.key == "task.data.name" and e.hint == "did you mean 'mr-snippets'?"
    assert "trec6" in e.expected and "news-articles" in e.expected


# --- local files ----------------------------------------------------------------------------


REVIEWS = [
    ("a wonderful film", "pos"),
    ("dull and boring", "neg"),
    ("great acting", "pos"),
    ("awful plot", "neg"),
    ("superb", "pos"),
    ("terrible", "neg"),
    ("fine but long", "neutral"),
    ("not bad", "neutral"),
] * 10  # 80 rows, 3 classes


def write_reviews(path, fmt):
    rows = [{"review": t, "sentiment": s, "id": i} for i, (t, s) in enumerate(REVIEWS)]
    if fmt == "csv":
        path.write_text("id,review,sentiment\n" + "".join(f'{r["id"]},"{r["review"]}",{r["sentiment"]}\n' for r in rows))
    elif fmt == "tsv":
        path.write_text("id\treview\tsentiment\n" + "".join(f'{r["id"]}\t{r["review"]}\t{r["sentiment"]}\n' for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_local_file_renamed_columns_string_labels(tmp_path, cache_dir, fmt, data_cfg):
    write_reviews(tmp_path / f"reviews.{fmt}", fmt)
    cfg = data_cfg(files={"train": f"reviews.{fmt}"}, text_column="review", label_column="sentiment",
                   validation_fraction=0.25, test_fraction=0.25)
    data = load(cfg, {}, cache_dir, tmp_path)
    assert data.type == "text-classification"
    assert data.label_names == ["neg", "neutral", "pos"]
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 40, "validation": 20, "test": 20}
    train = data.splits["train"]
    assert train.column_names == ["text", "label"]
    assert train.features["label"].names == ["neg", "neutral", "pos"]
    by_text = dict(zip(train["text"], train["label"]))
    assert by_text.get("great acting", 2) == 2 and by_text.get("dull and boring", 0) == 0
    assert data.name == f"reviews.{fmt}"


def test_same_rows_from_every_format_give_same_fingerprint(tmp_path, cache_dir, data_cfg):
    prints = set()
    for fmt in ("csv", "jsonl", "parquet"):
        write_reviews(tmp_path / f"r.{fmt}", fmt)
        cfg = data_cfg(files={"train": f"r.{fmt}"}, text_column="review", label_column="sentiment")
        prints.add(load(cfg, {}, cache_dir, tmp_path).fingerprint)
    assert len(prints) == 1


def test_given_splits_kept_and_only_missing_ones_made(tmp_path, cache_dir, data_cfg):
    (tmp_path / "d").mkdir()
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(60)]
    (tmp_path / "d" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:50]))
    (tmp_path / "d" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[50:]))
    cfg = data_cfg(files={"train": "d/train.jsonl", "dev": "d/dev.jsonl"}, test_fraction=0.2)
    data = load(cfg, {}, cache_dir, tmp_path)
    assert data.splits["validation"]["text"] == [f"t{i}" for i in range(50, 60)]
    assert len(data.splits["test"]) == 10 and len(data.splits["train"]) == 40
    assert data.label_names == ["0", "1"]


def test_text_pair_and_noncontiguous_int_labels(tmp_path, cache_dir, data_cfg):
    rows = [{"q": f"question {i}", "a": f"answer {i}", "y": [-1, 1][i % 2]} for i in range(40)]
    (tmp_path / "pairs.json").write_text(json.dumps(rows))
    cfg = data_cfg(files={"train": "pairs.json"}, text_column="q", text_pair_column="a", label_column="y")
    data = load(cfg, {}, cache_dir, tmp_path)
    assert data.has_text_pair and data.label_names == ["-1", "1"]
    train = data.splits["train"]
    assert train.column_names == ["text", "text_pair", "label"]
    for row in train:
        i = int(row["text"].split()[1])
        assert row["text_pair"] == f"answer {i}" and row["label"] == i % 2


def test_raw_text_file_without_labels(tmp_path, cache_dir, data_cfg):
    (tmp_path / "corpus.txt").write_text("\n".join(f"sentence number {i}" for i in range(30)) + "\n\n")
    data = load(data_cfg(files={"train": "corpus.txt"}), {}, cache_dir, tmp_path)
    assert data.type == "masked-lm" and sum(len(d) for d in data.splits.values()) == 30
    csv = tmp_path / "raw.csv"
    csv.write_text("text\n" + "".join(f"line {i}\n" for i in range(30)))
    assert load(data_cfg(files={"train": "raw.csv"}), {}, cache_dir, tmp_path).type == "masked-lm"


def test_rows_with_empty_text_are_dropped(tmp_path, cache_dir, data_cfg):
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(20)) + ",1\n")
    data = load(data_cfg(files={"train": "d.csv"}), {}, cache_dir, tmp_path)
    assert sum(len(d) for d in data.splits.values()) == 20


# --- errors -----------------------------------------------------------------------------------


def test_missing_column_names_file_and_suggests(tmp_path, cache_dir, data_cfg):
    write_reviews(tmp_path / "reviews.csv", "csv")
    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "reviews.csv"}, text_column="reviews", label_column="sentiment"),
             {}, cache_dir, tmp_path)
    e = err.value
    assert e.key == "task.data.text_column"
    assert e.where == str(tmp_path / "reviews.csv")
    assert "reviews.csv" in e.message and "id, review, sentiment" in e.message
    assert e.hint == "did you mean 'review'?"

    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "reviews.csv"}, text_column="review", label_column="sentimnt"),
             {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.label_column" and err.value.hint == "did you mean 'sentiment'?"

    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "reviews.csv"}, text_column="review", text_pair_column="other",
                      label_column="sentiment"), {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.text_pair_column"


def test_label_column_close_to_default_is_an_error(tmp_path, cache_dir, data_cfg):
    (tmp_path / "d.csv").write_text("text,labels\n" + "".join(f"t{i},{i % 2}\n" for i in range(20)))
    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "d.csv"}), {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.label_column" and err.value.hint == "did you mean 'labels'?"


def test_missing_and_unreadable_files(tmp_path, cache_dir, data_cfg):
    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "nope.csv"}), {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.files.train" and err.value.where == str(tmp_path / "nope.csv")
    assert "not found" in err.value.message

    (tmp_path / "broken.parquet").write_bytes(b"this is not parquet")
    (tmp_path / "ok.csv").write_text("text,label\na,0\nb,1\n")
    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "ok.csv", "test": "broken.parquet"}), {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.files.test" and err.value.where == str(tmp_path / "broken.parquet")
    assert "cannot read parquet file" in err.value.message

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "bad.json"}), {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.files.train"

    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "data.xlsx"}), {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.files.train" and ".parquet" in err.value.expected


def test_bad_split_names_and_labels(tmp_path, cache_dir, data_cfg):
    (tmp_path / "a.csv").write_text("text,label\na,0\nb,1\n")
    with pytest.raises(SourceError) as err:
        load(data_cfg(files={"train": "a.csv", "tset": "a.csv"}), {}, cache_dir, tmp_path)
    assert err.value.key == "task.data.files" and err.value.hint == "did you mean 'test'?"
    (tmp_path / "reg.csv").write_text("text,label\n" + "".join(f"t{i},{i / 3}\n" for i in range(20)))
    with pytest.raises(SourceError, match="regression"):
        load(data_cfg(files={"train": "reg.csv"}), {}, cache_dir, tmp_path)
    (tmp_path / "one.csv").write_text("text,label\n" + "".join(f"t{i},x\n" for i in range(20)))
    with pytest.raises(SourceError, match="at least 2"):
        load(data_cfg(files={"train": "one.csv"}), {}, cache_dir, tmp_path)
    (tmp_path / "tiny.csv").write_text("text,label\na,0\nb,1\n")
    with pytest.raises(SourceError, match="too few"):
        load(data_cfg(files={"train": "tiny.csv"}), {}, cache_dir, tmp_path)


# --- registered specs from plugins, hub ---------------------------------------------------------


def test_plugin_spec_with_classlabel_and_unlabelled_test(tmp_path, cache_dir, data_cfg):
    import datasets

    feats = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["no", "yes"])})

    def loader(cache):
        rows = {"sentence": [f"s{i}" for i in range(100)], "label": [i % 2 for i in range(100)]}
        test = {"sentence": [f"x{i}" for i in range(10)], "label": [-1] * 10}  # GLUE-style hidden labels
        return datasets.DatasetDict(
            train=datasets.Dataset.from_dict(rows, features=feats),
            test=datasets.Dataset.from_dict(test, features=feats),
        )

    reg = {"glueish": DatasetSpec(name="glueish", type="text-classification", load=loader)}
    data = load(data_cfg(name="glueish", text_column="sentence"), reg, cache_dir, tmp_path)
    assert data.label_names == ["no", "yes"]
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 80, "validation": 10, "test": 10}
    assert all(t.startswith("s") for t in data.splits["test"]["text"])


def test_hub_dataset_loaded_and_normalised(monkeypatch, tmp_path, cache_dir, data_cfg):
    import datasets

    seen = {}

    def fake_load_dataset(path, name=None, **kw):
        seen.update(path=path, name=name, **kw)
        feats = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])})
        return datasets.DatasetDict(
            train=datasets.Dataset.from_dict({"sentence": [f"s{i}" for i in range(50)], "label": [i % 2 for i in range(50)]}, features=feats),
            validation=datasets.Dataset.from_dict({"sentence": ["v0", "v1"], "label": [0, 1]}, features=feats),
            test=datasets.Dataset.from_dict({"sentence": ["t0", "t1"], "label": [-1, -1]}, features=feats),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load(data_cfg(hub="glue", hub_config="sst2", text_column="sentence"), {}, cache_dir, tmp_path)
    assert seen == {"path": "glue", "name": "sst2"}
    assert data.splits["validation"]["text"] == ["v0", "v1"]
    assert len(data.splits["test"]) == 5 and len(data.splits["train"]) == 45
    assert data.name == "glue"


def test_hub_unreachable(monkeypatch, tmp_path, cache_dir, registry, data_cfg):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'stanfordnlp/sst2' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(SourceError) as err:
        load(data_cfg(hub="stanfordnlp/sst2"), registry, cache_dir, tmp_path)
    e = err.value
    assert e.key == "task.data.hub" and "unreachable" in e.message
    assert "mr-snippets" in e.hint and "task.data.files" in e.hint


def test_real_data_config_model_is_accepted(registry, cache_dir, tmp_path):
    recipe = pytest.importorskip("compressor.recipe")
    cfg = recipe.DataConfig(name="trec6", max_train_samples=100, max_eval_samples=20)
    data = load(cfg, registry, cache_dir, tmp_path)
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 100, "validation": 20, "test": 20}


def test_split_indices_stratified_and_deterministic():
    from compressor.sources.datasets import split_indices

    labels = [0] * 70 + [1] * 27 + [2] * 3
    rest, off = split_indices(100, 10, 5, labels)
    assert sorted(rest + off) == list(range(100)) and len(off) == 10
    counts = collections.Counter(labels[i] for i in off)
    assert counts == {0: 7, 1: 3}  # 7.0, 2.7, 0.3 -> largest remainder gives class 1 the spare row
    assert split_indices(100, 10, 5, labels) == (rest, off)
    assert split_indices(100, 10, 6, labels) != (rest, off)
    plain_rest, plain_off = split_indices(100, 10, 5)
    assert len(plain_off) == 10 and sorted(plain_rest + plain_off) == list(range(100))


# --- files without a train split: evaluation-only data ------------------------------------------


def _labelled(path, n, prefix="t"):
    path.write_text("text,label\n" + "".join(f"{prefix}{i},{i % 2}\n" for i in range(n)))
    return path


@pytest.mark.parametrize(
    ("files", "sizes"),
    [
        ({"test": "dev.csv"}, {"train": 0, "validation": 0, "test": 87}),
        ({"dev": "dev.csv"}, {"train": 0, "validation": 87, "test": 0}),
        ({"TEST": "dev.csv", "valid": "val.csv"}, {"train": 0, "validation": 30, "test": 87}),
    ],
)
def test_files_without_train_keep_their_splits_whole(tmp_path, cache_dir, data_cfg, caplog, files, sizes):
    """A lone test file was taken as train and split 80/10/10 (evaluated on 9 of 87 rows)."""
    import logging

    _labelled(tmp_path / "dev.csv", 87)
    _labelled(tmp_path / "val.csv", 30, prefix="v")
    with caplog.at_level(logging.INFO, logger="compressor"):
        data = load(data_cfg(files=files), {}, cache_dir, tmp_path)
    assert {s: len(d) for s, d in data.splits.items()} == sizes
    assert data.label_names == ["0", "1"] and data.name == "dev.csv"
    if sizes["test"]:
        assert sorted(data.splits["test"]["text"]) == sorted(f"t{i}" for i in range(87))  # every row
    log = caplog.text
    assert "train: 0 rows, not given (no training is possible)" in log
    for split, n in sizes.items():
        if n:
            assert f"{split}: {n} rows, given: {tmp_path}" in log


def test_how_each_split_was_made_is_logged_and_caps_too(tmp_path, cache_dir, data_cfg, caplog):
    import logging

    _labelled(tmp_path / "all.csv", 100)
    _labelled(tmp_path / "dev.csv", 87)
    with caplog.at_level(logging.INFO, logger="compressor"):
        data = load(data_cfg(files={"train": "all.csv", "test": "dev.csv"}, max_eval_samples=50), {}, cache_dir, tmp_path)
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 90, "validation": 10, "test": 50}
    log = caplog.text
    assert "validation: 10 rows, split off train (10% of its 100 rows, seed 0, stratified by label)" in log
    assert f"test: 50 rows, given: {tmp_path / 'dev.csv'}; capped to 50 of its 87 rows (seeded sample)" in log
    assert f"train: 90 rows, given: {tmp_path / 'all.csv'}, less the rows split off" in log


def test_file_splits_rules():
    from compressor.sources.datasets import file_splits

    assert file_splits({"test": "a.csv"}) == [("test", "test", "a.csv")]
    assert file_splits({"Dev": "a.csv"}) == [("validation", "Dev", "a.csv")]
    assert file_splits({"train": "a.csv"}) == [("train", "train", "a.csv")]
    assert file_splits({"data": "a.csv"}) == [("train", "data", "a.csv")]  # one file alone: the whole set
    assert file_splits({"test": "a", "val": "b"}) == [("test", "test", "a"), ("validation", "val", "b")]
    with pytest.raises(SourceError) as err:
        file_splits({"test": "a", "tset": "b"})
    assert err.value.key == "task.data.files" and err.value.hint == "did you mean 'test'?"
    with pytest.raises(SourceError, match="given twice"):
        file_splits({"dev": "a", "validation": "b"})
