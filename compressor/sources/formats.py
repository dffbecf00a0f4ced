"""Readers for the two task-specific file layouts a recipe's ``task.data.files`` may name.

- **CoNLL** (``.conll``, token classification): one token per line, the token in the first
  column and its tag in the last, separated by tabs or spaces (so both the two-column
  WNUT-17 files and the four-column CoNLL-2003 files read the same way); a blank line (or a
  line of whitespace) between sentences; ``-DOCSTART-`` lines are skipped. Tags must be IOB2
  (Tjong Kim Sang & Veenstra 1999; the scheme seqeval's strict mode scores).
- **SQuAD** (``.json`` or ``.json.gz`` holding ``{"data": [{"title", "paragraphs": [{"context",
  "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``, Rajpurkar et al.
  2016, the v1.1 layout): one row per question, in the columns of the Hugging Face ``squad``
  data set (``id``, ``title``, ``context``, ``question``, ``answers`` =
  ``{"text": [...], "answer_start": [...]}``), so files and ``hub: squad`` normalise the same
  way.

:func:`read_task_file` is what :func:`compressor.sources.datasets._read_file` asks first; it
returns ``None`` for any other file, which is then read as a plain table.

Errors are :class:`~compressor.errors.SourceError` with ``where`` = ``file:line`` (CoNLL) or
the file and the record's path inside it (SQuAD: ``data[3].paragraphs[1].qas[0]``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SourceError
from ..tasks.question_answering import span_problem
from ..tasks.token_classification import iob2_problem

if TYPE_CHECKING:  # pragma: no cover
    import datasets

#: File name endings read by this module (``.json`` only when the file is in SQuAD layout).
TASK_FILE_TYPES = (".conll", ".json", ".json.gz")



def read_task_file(path: Path, *, key: str) -> "datasets.Dataset | None":
    """Read ``path`` if it is a CoNLL or SQuAD file, else return ``None``.

    :param path: the file (``.conll``, ``.json`` or ``.json.gz``).
    :param key: recipe key for messages, e.g. ``"task.data.files.train"``.
    :returns: a :class:`datasets.Dataset` (``tokens``, ``tags``: lists of strings, one row
        per sentence; or the SQuAD columns, one row per question), or ``None`` when the file
        is neither (a plain ``.json`` table, any other suffix).
    :raises SourceError: a missing or unreadable file, or a malformed record (see
        :func:`read_conll` and :func:`read_squad`).
    """
    name = path.name.lower()
    if name.endswith(".conll"):
        check_file(path, key)
        return read_conll(path, key=key)
    if name.endswith(".json.gz") or name.endswith(".json"):
        check_file(path, key)
        doc = _load_json(path, key)
        if doc is None or not is_squad(doc):
            if name.endswith(".json.gz"):
                raise SourceError(
                    "a .json.gz file must hold SQuAD-format JSON ({\"data\": [{\"title\", "
                    "\"paragraphs\": [...]}]})",
                    key=key,
                    where=str(path),
                    hint="decompress a plain table and give it as .json",
                )
            return None
        return squad_dataset(doc, path, key=key)
    return None


def check_file(path: Path, key: str) -> None:
    """:raises SourceError: naming ``key`` and ``path`` when ``path`` is not an existing file."""
    if not path.is_file():
        raise SourceError(
            "file not found" if not path.exists() else "not a file",
            key=key,
            where=str(path),
            hint="paths are relative to the recipe's folder",
        )


# --- CoNLL --------------------------------------------------------------------------------


def read_conll(path: Path, *, key: str = "task.data.files") -> "datasets.Dataset":
    """Read a CoNLL file: one row per sentence, columns ``tokens`` and ``tags`` (lists of str).

    :param path: UTF-8 text; token in the first column, IOB2 tag in the last (tab or space
        separated), a blank line between sentences, ``-DOCSTART-`` lines skipped.
    :param key: recipe key for messages.
    :raises SourceError: ``where="file:line"`` for a line with one column (a missing tag),
        a tag that is not ``O`` / ``B-TYPE`` / ``I-TYPE``, an ``I-TYPE`` that does not
        continue a ``B-TYPE`` or ``I-TYPE`` of the same type (IOB1, not IOB2), a file that is
        not UTF-8, or a file without any sentence.
    """
    import datasets

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text: {exc}", key=key, where=str(path)) from exc
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[int] = []  # first line of each sentence
    cur_tokens: list[str] = []
    cur_tags: list[str] = []
    first = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            if cur_tokens:
                tokens.append(cur_tokens)
                tags.append(cur_tags)
                lines.append(first)
                cur_tokens, cur_tags = [], []
            continue
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        fields = [f for f in fields if f]
        if fields and fields[0].startswith("-DOCSTART-"):
            continue
        if len(fields) < 2:
            raise SourceError(
                f"line has {len(fields)} column(s): {line[:60]!r}",
                key=key,
                where=f"{path}:{lineno}",
                expected="a token and its tag separated by a tab (or spaces)",
                hint="a sentence ends with an empty line; a token line needs its tag column",
            )
        tag = fields[-1]
        previous = cur_tags[-1] if cur_tags else "O"
        problem = iob2_problem(previous, tag)
        if problem:
            raise SourceError(problem, key=key, where=f"{path}:{lineno}", expected=_IOB2_EXPECTED)
        if not cur_tokens:
            first = lineno
        cur_tokens.append(fields[0])
        cur_tags.append(tag)
    if cur_tokens:
        tokens.append(cur_tokens)
        tags.append(cur_tags)
        lines.append(first)
    if not tokens:
        raise SourceError("no sentence in the file", key=key, where=str(path),
                          expected="token<TAB>tag lines, a blank line between sentences")
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "tags": datasets.Sequence(datasets.Value("string")),
        "line": datasets.Value("int64"),
    })
    return datasets.Dataset.from_dict({"tokens": tokens, "tags": tags, "line": lines}, features=features)


_IOB2_EXPECTED = "IOB2 tags: O, B-TYPE, or I-TYPE right after B-TYPE or I-TYPE of the same TYPE"


# --- SQuAD --------------------------------------------------------------------------------


def _load_json(path: Path, key: str) -> Any:
    """The parsed JSON document, or ``None`` when a ``.json`` file is JSON lines."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        if path.name.lower().endswith(".json"):
            return None  # maybe JSON lines: the table reader decides
        raise SourceError(f"not JSON: {exc}", key=key, where=f"{path}:{exc.lineno}") from exc
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise SourceError(f"cannot read the file: {type(exc).__name__}: {exc}", key=key,
                          where=str(path)) from exc


def is_squad(doc: Any) -> bool:
    """Whether a parsed JSON document has the SQuAD layout (``data`` -> ``paragraphs``)."""
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("data"), list)
        and bool(doc["data"])
        and all(isinstance(a, dict) and "paragraphs" in a for a in doc["data"][:3])
    )


def read_squad(path: Path, *, key: str = "task.data.files") -> "datasets.Dataset":
    """Read a SQuAD v1.1 file (``.json`` or gzip'd ``.json.gz``): one row per question.

    :param path: the file.
    :param key: recipe key for messages.
    :returns: columns ``id``, ``title``, ``context``, ``question`` (str) and ``answers``
        (``{"text": list[str], "answer_start": list[int]}``, character offsets into
        ``context``).
    :raises SourceError: naming the file and the record (``data[i].paragraphs[j].qas[k]``
        and the question id) for a missing field, a question without answers (SQuAD v2
        unanswerable questions are not supported), or an answer whose ``text`` is not at
        ``answer_start`` in its context.
    """
    check_file(path, key)
    doc = _load_json(path, key)
    if not is_squad(doc):
        raise SourceError("not SQuAD-format JSON", key=key, where=str(path),
                          expected='{"data": [{"title": ..., "paragraphs": [{"context", "qas"}]}]}')
    return squad_dataset(doc, path, key=key)


def squad_dataset(doc: dict[str, Any], path: Path, *, key: str) -> "datasets.Dataset":
    """Flatten a parsed SQuAD document (see :func:`read_squad`)."""
    import datasets

    cols: dict[str, list[Any]] = {"id": [], "title": [], "context": [], "question": [], "answers": []}

    def need(obj: Any, field: str, kind: type, record: str) -> Any:
        value = obj.get(field) if isinstance(obj, dict) else None
        if not isinstance(value, kind):
            got = "missing" if value is None else f"a {type(value).__name__}"
            raise SourceError(f"{record}: field {field!r} is {got}", key=key,
                              where=f"{path}: {record}", expected=f"{field!r} as {kind.__name__}")
        return value

    for i, article in enumerate(doc["data"]):
        title = article.get("title") if isinstance(article.get("title"), str) else f"article-{i}"
        for j, para in enumerate(need(article, "paragraphs", list, f"data[{i}]")):
            rec = f"data[{i}].paragraphs[{j}]"
            context = need(para, "context", str, rec)
            for k, qa in enumerate(need(para, "qas", list, rec)):
                qrec = f"{rec}.qas[{k}]"
                qid = str(qa.get("id", f"{i}-{j}-{k}")) if isinstance(qa, dict) else qrec
                question = need(qa, "question", str, f"{qrec} (id {qid})")
                answers = need(qa, "answers", list, f"{qrec} (id {qid})")
                if not answers:
                    raise SourceError(
                        f"{qrec} (id {qid}): the question has no answer",
                        key=key, where=f"{path}: {qrec}",
                        expected="SQuAD v1.1: every question has at least one answer span",
                        hint="SQuAD v2 unanswerable questions are not supported",
                    )
                texts, starts = [], []
                for a, ans in enumerate(answers):
                    arec = f"{qrec}.answers[{a}] (id {qid})"
                    text = need(ans, "text", str, arec)
                    start = ans.get("answer_start") if isinstance(ans, dict) else None
                    if isinstance(start, bool) or not isinstance(start, int):
                        raise SourceError(f"{arec}: 'answer_start' is not an integer: {start!r}",
                                          key=key, where=f"{path}: {arec}")
                    problem = span_problem(context, text, start)
                    if problem:
                        raise SourceError(f"{arec}: {problem}", key=key, where=f"{path}: {arec}",
                                          expected="context[answer_start:answer_start+len(text)] == text")
                    texts.append(text)
                    starts.append(start)
                cols["id"].append(qid)
                cols["title"].append(title)
                cols["context"].append(context)
                cols["question"].append(question)
                cols["answers"].append({"text": texts, "answer_start": starts})
    if not cols["id"]:
        raise SourceError("no question in the file", key=key, where=str(path))
    features = datasets.Features({
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {"text": datasets.Sequence(datasets.Value("string")),
                    "answer_start": datasets.Sequence(datasets.Value("int64"))},
    })
    return datasets.Dataset.from_dict(cols, features=features)
