"""The conformance kit's tiny models carry their family's real kind of tokenizer (WordPiece,
byte-level BPE, SentencePiece Unigram), built offline, so that a plugin that depends on the
tokenizer is tested against the tokenizers it will meet."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor import testing

#: architecture -> (class AutoTokenizer reloads, special tokens around one sequence)
EXPECTED = {
    "bert": ("BertTokenizer", ("[CLS]", "[SEP]")),
    "electra": ("BertTokenizer", ("[CLS]", "[SEP]")),
    "distilbert": ("DistilBertTokenizer", ("[CLS]", "[SEP]")),
    "mpnet": ("MPNetTokenizer", ("<s>", "</s>")),
    "roberta": ("RobertaTokenizer", ("<s>", "</s>")),
    "modernbert": ("TokenizersBackend", ("[CLS]", "[SEP]")),
    "xlm-roberta": ("XLMRobertaTokenizer", ("<s>", "</s>")),
    "deberta-v2": ("DebertaV2Tokenizer", ("[CLS]", "[SEP]")),
}


def test_every_architecture_is_covered() -> None:
    assert set(EXPECTED) == set(testing.ARCHITECTURES) == set(testing.TOKENIZER_MODELS)


@pytest.mark.parametrize("arch", list(testing.ARCHITECTURES))
def test_tiny_model_saves_the_family_tokenizer(arch: str, tmp_path: Path) -> None:
    import json

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = testing.tiny_model(arch, tmp_path / arch)
    tok = AutoTokenizer.from_pretrained(folder)
    cls_name, (first, last) = EXPECTED[arch]
    assert type(tok).__name__ == cls_name
    kind = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"]
    assert kind == {"wordpiece": "WordPiece", "byte-level-bpe": "BPE", "unigram": "Unigram"}[testing.TOKENIZER_MODELS[arch]]
    enc = tok(["the movie was great", "a boring plot"], padding=True, return_tensors="pt")
    assert ("token_type_ids" in enc) is testing.ARCHITECTURES[arch]
    tokens = tok.convert_ids_to_tokens(tok("the movie was great")["input_ids"])
    assert tokens[0] == first and tokens[-1] == last
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert model.config.vocab_size == len(tok) and model.config.pad_token_id == tok.pad_token_id
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_byte_level_bpe_encodes_any_text_without_unknown_tokens() -> None:
    tok = testing.tiny_tokenizer("roberta")
    ids = tok("Ünïcode façade, 42 €!", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == "Ünïcode façade, 42 €!"
    assert tok.tokenize("the movie") == ["the", "Ġmovie"]  # trained merges: whole words


def test_unigram_keeps_the_task_words_and_splits_others() -> None:
    tok = testing.tiny_tokenizer("xlm-roberta")
    assert tok.tokenize("the movie was great") == ["▁the", "▁movie", "▁was", "▁great"]
    assert tok.tokenize("hello") == ["▁", "h", "e", "l", "l", "o"]
    assert tok.unk_token_id == 3 and tok.pad_token_id == 1 and tok.mask_token_id == len(tok) - 1
    deberta = testing.tiny_tokenizer("deberta-v2")
    assert (deberta.pad_token_id, deberta.cls_token_id, deberta.sep_token_id, deberta.unk_token_id) == (0, 1, 2, 3)


def test_unknown_architecture_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown architecture 'gpt2'"):
        testing.tiny_model("gpt2", tmp_path)
