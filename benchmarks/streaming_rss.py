"""Peak memory of reading an MLM corpus as a stream, as the corpus grows from 1x to 10x.

The packaged ``news-articles`` corpus (3,823 articles, ~2.1M words) is repeated N times into
a JSONL file; each size is then read in a fresh process exactly as general distillation with
``corpus: {files: {train: ...}}, streaming: true`` reads it (:func:`stream_corpus`,
:func:`stream_blocks` with its 10,000-block shuffle buffer, the MLM collator in a DataLoader
of 32 blocks of 128 tokens), over the whole corpus. For contrast, the in-memory path (the
corpus loaded as a data set, packed with ``group_texts``) is measured at the smaller sizes.

    python benchmarks/streaming_rss.py [--factors 1 2 5 10] [--memory-factors 1 2 5] [--out FILE]

Prints a markdown table (and writes JSON to --out): peak RSS (ru_maxrss of the child, MB),
blocks and tokens read, wall time. Needs the packaged assets (``all-minilm-l6-v2`` and
``news-articles``) in the compressor cache.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(path: str, mode: str, block_size: int, batch: int) -> dict:
    import logging

    from compressor import DataConfig
    from compressor.plugins import get_plugins
    from compressor.sources.models import resolve_model
    from compressor.sources.packaged import cache_root
    from compressor.strategy import StageContext
    from compressor_distillation.mlm import group_texts, mlm_collator, stream_blocks, stream_corpus
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    model_dir = resolve_model("all-minilm-l6-v2", "auto", sources=get_plugins().model_sources, cache_dir=cache_root())
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    folder = Path(path).parent
    ctx = StageContext(stage_name="bench", output_dir=folder, work_dir=folder, data=None, seed=0,
                       progress=False, base_dir=folder, logger=logging.getLogger("bench"))
    corpus = DataConfig(files={"train": Path(path).name})
    collate = mlm_collator(tok, 0.15)
    if mode == "stream":
        import torch

        stream = stream_corpus(corpus, ctx)
        blocks = stream_blocks(stream.train, tok, block_size, seed=0)
        loader = torch.utils.data.DataLoader(blocks, batch_size=batch, collate_fn=collate)
    else:
        data = ctx.load_data(corpus, task_type="masked-lm")
        packed = group_texts(data.splits["train"], tok, block_size)
        loader = (collate([packed[j] for j in range(i, min(i + batch, len(packed)))])
                  for i in range(0, len(packed), batch))
    n_blocks = 0
    for b in loader:
        n_blocks += int(b["input_ids"].shape[0])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "blocks": n_blocks, "tokens": n_blocks * block_size,
            "peak_rss_mb": round(peak_kb / 1024, 1), "wall_s": round(time.perf_counter() - t0, 1)}


def write_corpus(folder: Path, factor: int) -> tuple[Path, int]:
    from compressor.sources.builtin import load_news_articles
    from compressor.sources.packaged import cache_root

    texts = load_news_articles(cache_root())["text"]
    path = folder / f"news-x{factor}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(factor):
            for t in texts:
                fh.write(json.dumps({"text": t}) + "\n")
    return path, path.stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--factors", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--memory-factors", type=int, nargs="*", default=[1, 2, 5])
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", type=Path)
    p.add_argument("--child", nargs=2, metavar=("FILE", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.block_size, args.batch)))
        return
    rows = []
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in sorted(set(args.factors) | set(args.memory_factors)):
            path, size = write_corpus(Path(tmp), factor)
            modes = (["stream"] if factor in args.factors else []) + (["memory"] if factor in args.memory_factors else [])
            for mode in modes:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), mode, "--block-size", str(args.block_size),
                     "--batch", str(args.batch)], capture_output=True, text=True, env=env,
                )
                if out.returncode:
                    sys.exit(f"the {mode} reader failed on {factor}x:\n{out.stderr[-3000:]}")
                row = {"factor": factor, "file_mb": round(size / 1e6, 1), **json.loads(out.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| corpus | file (MB) | reader | blocks of 128 | peak RSS (MB) | wall (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['factor']}x news-articles | {r['file_mb']} | {r['mode']} | {r['blocks']:,} | "
              f"{r['peak_rss_mb']} | {r['wall_s']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
