"""CoNLL and SQuAD readers: layouts, and errors that name the file and line or record."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from compressor.errors import SourceError
from compressor.sources.datasets import _read_file
from compressor.sources.formats import read_conll, read_squad, read_task_file

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_conll_two_and_four_columns_blank_lines_and_docstart(tmp_path: Path) -> None:
    f = tmp_path / "a.conll"
    f.write_text("-DOCSTART- -X- -X- O\n\nAnn NNP B-NP B-per\nLee NNP I-NP I-per\nran VBD B-VP O\n"
                 "\t\n\nParis\tB-loc\n", encoding="utf-8")
    ds = _read_file(f, key="task.data.files.train")  # the loader's hook reaches the reader
    assert ds["tokens"] == [["Ann", "Lee", "ran"], ["Paris"]]
    assert ds["tags"] == [["B-per", "I-per", "O"], ["B-loc"]]
    assert ds["line"] == [3, 8]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a\tO\nb\n", 2, "1 column"),                       # missing tag column
        ("a\tO\n\nb\tI-per\n", 3, "must start with B-per"),  # IOB1, not IOB2
        ("a\tB-per\nb\tI-loc\n", 2, "must start with B-loc"),
        ("a\tPER\n", 1, "is not IOB2"),
    ],
)
def test_conll_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    f = tmp_path / "bad.conll"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError, match=message) as err:
        read_task_file(f, key="task.data.files.train")
    assert err.value.where == f"{f}:{line}"
    assert err.value.key == "task.data.files.train"


def _squad(answer_start: int = 4, text: str = "Lee", drop: str | None = None) -> dict:
    qa = {"id": "q1", "question": "Who?", "answers": [{"text": text, "answer_start": answer_start}]}
    if drop:
        qa.pop(drop)
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [
        {"context": "Ann Lee ran.", "qas": [{"id": "q0", "question": "Who ran?",
                                             "answers": [{"text": "Ann Lee", "answer_start": 0}]}, qa]}]}]}


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_squad_json_and_gzip(tmp_path: Path, suffix: str) -> None:
    f = tmp_path / f"dev{suffix}"
    raw = json.dumps(_squad()).encode()
    f.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    ds = _read_file(f, key="task.data.files.test")
    assert ds.column_names == ["id", "title", "context", "question", "answers"]
    assert ds["id"] == ["q0", "q1"] and ds["title"] == ["T", "T"]
    assert ds["answers"][1] == {"text": ["Lee"], "answer_start": [4]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"answer_start": 5}, "not the answer 'Lee'"),   # span not in its context
        ({"answer_start": 40}, "outside the context"),
        ({"drop": "question"}, "field 'question' is missing"),
        ({"drop": "answers"}, "field 'answers' is missing"),
    ],
)
def test_squad_errors_name_file_and_record(tmp_path: Path, kwargs: dict, message: str) -> None:
    f = tmp_path / "dev.json"
    f.write_text(json.dumps(_squad(**kwargs)), encoding="utf-8")
    with pytest.raises(SourceError, match=message) as err:
        read_squad(f)
    assert err.value.where.startswith(f"{f}: data[0].paragraphs[0].qas[1]")
    assert "id q1" in str(err.value)


def test_a_plain_json_table_is_left_to_the_table_reader(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text(json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}]), encoding="utf-8")
    assert read_task_file(f, key="k") is None
    assert _read_file(f, key="k")["text"] == ["a", "b"]
    g = tmp_path / "t.json.gz"
    g.write_bytes(gzip.compress(f.read_bytes()))
    with pytest.raises(SourceError, match="SQuAD-format"):
        read_task_file(g, key="k")


@pytest.mark.skipif(not (DATA / "wnut17").is_dir(), reason=f"WNUT-17 is not at {DATA / 'wnut17'}")
def test_wnut17_counts_match_its_readme() -> None:
    sizes = {s: len(read_conll(DATA / "wnut17" / f"{s}.conll")) for s in ("train", "dev", "test")}
    assert sizes == {"train": 3394, "dev": 1009, "test": 1287}
