"""Tiny random token-classification and QA models over the conformance kit's real tokenizer
kinds (WordPiece, byte-level BPE, SentencePiece Unigram), and tiny synthetic data."""

from __future__ import annotations

from typing import Any

WORDS = ["good", "great", "movie", "film", "story", "plot", "the", "a", "is", "was", "very", "really"]


def tiny_head(kind: str, tokenizer: Any, *, seed: int = 0, max_positions: int = 64, **head: Any) -> Any:
    """A 2-layer, hidden-32 BERT (or RoBERTa for a BPE/Unigram tokenizer) with the head of
    ``kind`` (``"token"`` or ``"qa"``), randomly initialised."""
    import torch
    import transformers as T

    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, pad_token_id=tokenizer.pad_token_id, **head)
    if type(tokenizer).__name__.startswith("Bert"):
        cfg = T.BertConfig(max_position_embeddings=max_positions, **common)
    else:
        cfg = T.RobertaConfig(max_position_embeddings=max_positions + 2, **common)
    torch.manual_seed(seed)
    auto = T.AutoModelForTokenClassification if kind == "token" else T.AutoModelForQuestionAnswering
    return auto.from_config(cfg).eval()


def backend(model: Any, tokenizer: Any) -> Any:
    from compressor.evaluate.backends import PyTorchBackend

    return PyTorchBackend(model, tokenizer, model.config)


def train(model: Any, rows: Any, collator: Any, *, steps: int, lr: float = 3e-3, seed: int = 0) -> Any:
    """A few AdamW steps on random batches of 16 tokenised rows (learnable toy tasks)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = collator([rows[int(i)] for i in rng.choice(len(rows), 16)])
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def ner_rows(n: int, seed: int = 0) -> dict[str, list]:
    """Sentences whose entities are learnable: ``movie``/``film`` start a ``work``, a
    following ``story`` continues it, ``good``/``great`` are a ``quality``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, tags = [], []
    for _ in range(n):
        ws = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(3, 9)))]
        t: list[str] = []
        for j, w in enumerate(ws):
            if w in ("movie", "film"):
                t.append("B-work")
            elif w == "story" and j and t[-1] in ("B-work", "I-work"):
                t.append("I-work")
            elif w in ("good", "great"):
                t.append("B-quality")
            else:
                t.append("O")
        tokens.append(ws)
        tags.append(t)
    return {"text": tokens, "label": tags}


def qa_rows(n: int, seed: int = 0, *, max_words: int = 40) -> dict[str, list]:
    """Contexts of 5..max_words filler words with ``superb`` inserted once; the question
    ``what is superb`` is answered by that word; five articles."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"text": [], "text_pair": [], "label": [], "id": [], "title": []}
    for i in range(n):
        ws = [str(w) for w in rng.choice(WORDS[2:], size=int(rng.integers(5, max_words)))]
        k = int(rng.integers(0, len(ws)))
        ws.insert(k, "superb")
        start = len(" ".join(ws[:k])) + (1 if k else 0)
        out["text"].append("what is superb")
        out["text_pair"].append(" ".join(ws))
        out["label"].append({"text": ["superb"], "answer_start": [start]})
        out["id"].append(f"q{i}")
        out["title"].append(f"article-{i % 5}")
    return out
