"""Implementation of ``export.onnx`` (heavy: torch, onnxruntime)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import StageError
from compressor.onnx_export import (
    ONNX_FILE,
    attention_fusion,
    capped_length,
    export_onnx,
    load_for_export,
    optimize_onnx,
    session,
    task_outputs,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

    from .plugin import ExportOnnxConfig

def parity_texts(context: "StageContext", split: str, n: int) -> tuple[list[str], list[str] | None]:
    """The first ``n`` texts (and text pairs) of ``split``.

    :raises StageError: if the split is missing or empty.
    """
    try:
        dataset = context.data.split(split)
    except KeyError as exc:
        raise StageError(str(exc.args[0]), key="config.parity_split") from None
    if len(dataset) == 0:
        raise StageError(f"split {split!r} is empty: no parity inputs", key="config.parity_split")
    dataset = context.data.task.plain_text(dataset.select(range(min(n, len(dataset)))))
    rows = dataset[:]
    pairs = list(rows["text_pair"]) if "text_pair" in dataset.column_names else None
    return list(rows["text"]), pairs


def outputs_pytorch(
    model: Any, batches: list[dict[str, "np.ndarray"]], names: list[str]
) -> list[dict[str, "np.ndarray"]]:
    """The named outputs of the fp32 PyTorch model on CPU, one dict per batch.

    :param names: output names (the task's: ``logits``, ``start_logits``/``end_logits``,
        ``last_hidden_state``).
    :returns: per batch, name -> float32 array (``(batch, num_labels)``, ``(batch, tokens)``...).
    """
    import torch

    out = []
    with torch.inference_mode():
        for batch in batches:
            result = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
            out.append({n: result[n].float().numpy() for n in names})
    return out


def outputs_onnx(
    onnx_file: Path, batches: list[dict[str, "np.ndarray"]], names: list[str]
) -> list[dict[str, "np.ndarray"]]:
    """The named outputs of an ONNX graph with ONNX Runtime on CPU, one dict per batch."""
    import numpy as np

    sess = session(onnx_file)
    inputs = [i.name for i in sess.get_inputs()]
    out = []
    for batch in batches:
        values = sess.run(names, {k: batch[k] for k in inputs if k in batch})
        out.append({n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values)})
    return out


def check_parity(
    source: Path,
    onnx_file: Path,
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None,
    *,
    task_type: str,
    max_length: int,
    batch_size: int,
) -> dict[str, Any]:
    """Compare the ONNX graph's outputs with the PyTorch model's on the same token ids.

    Every output the task's head exports (:func:`compressor.onnx_export.task_outputs`) is
    compared.

    :returns: ``{"max_abs_diff", "mean_abs_diff", "argmax_agreement", "n", "outputs"}``:
        absolute differences over every output element (the outputs' units), agreement of
        the argmax over the last axis as a fraction in [0, 1].
    :raises StageError: when the graph's outputs have other shapes than PyTorch's.
    """
    import numpy as np

    batches = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            pairs[start : start + batch_size] if pairs is not None else None,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        batches.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
    names = list(task_outputs(task_type))
    ref = outputs_pytorch(load_for_export(source, task_type), batches, names)
    got = outputs_onnx(onnx_file, batches, names)
    diffs, agree = [], []
    for r_batch, g_batch in zip(ref, got):
        for name in names:
            r, g = r_batch[name], g_batch[name]
            if r.shape != g.shape:
                raise StageError(
                    f"the ONNX model returns {name} of shape {g.shape}, PyTorch {r.shape}"
                )
            diffs.append(np.abs(r.astype(np.float64) - g.astype(np.float64)).ravel())
            agree.append((r.argmax(-1) == g.argmax(-1)).ravel())
    diff = np.concatenate(diffs)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "argmax_agreement": float(np.concatenate(agree).mean()),
        "n": len(texts),
        "outputs": names,
    }


def _model_type(source: Path) -> str:
    import json

    return str(json.loads((source / "config.json").read_text(encoding="utf-8")).get("model_type", ""))


def run_export(
    strategy: "Strategy", artifact: "Artifact", config: "ExportOnnxConfig", context: "StageContext"
) -> "Artifact":
    """Export, optionally optimise, check parity; see :class:`~.plugin.ExportOnnx`."""
    source = Path(artifact.path)
    task_type = context.data.type
    tokenizer = context.load_tokenizer(artifact)
    texts, pairs = parity_texts(context, config.parity_split, config.parity_samples)

    scratch = Path(context.work_dir) / "onnx-export"
    shutil.rmtree(scratch, ignore_errors=True)
    context.logger.info("%s: exporting %s to ONNX (%s exporter)", context.stage_name, artifact.name, config.exporter)
    exported = export_onnx(
        source, scratch / "exported", task_type=task_type, exporter=config.exporter, opset=config.opset
    )
    for note in exported.notes:
        context.logger.info("%s: %s", context.stage_name, note)
    onnx_file = exported.onnx_file
    fused: dict[str, int] = {}
    model_type = _model_type(source)
    if config.optimization is not None:
        context.logger.info("%s: ONNX Runtime graph optimisation %s", context.stage_name, config.optimization)
        onnx_file = scratch / "optimized.onnx"
        fused = optimize_onnx(
            exported.onnx_file, onnx_file, model_type=model_type, level=config.optimization,
            num_heads=exported.num_heads, hidden_size=exported.attention_hidden_size, for_gpu=config.for_gpu,
        )
    attention = attention_fusion(exported, fused, level=config.optimization, model_type=model_type)
    if config.optimization not in (None, "O1") and attention["reason"]:
        context.logger.info("%s: %s", context.stage_name, attention["reason"])

    out = Path(context.output_dir)
    shutil.copyfile(onnx_file, out / ONNX_FILE)
    for data in onnx_file.parent.glob(f"{onnx_file.name}.data"):  # external weights, > 2 GB
        shutil.copyfile(data, out / f"{ONNX_FILE}.data")
    shutil.copyfile(source / "config.json", out / "config.json")
    tokenizer.save_pretrained(out)

    max_length = capped_length(config.max_length, source, tokenizer)
    if max_length < config.max_length:
        context.logger.info(
            "%s: parity inputs truncated to %d tokens, the model's limit (max_length %d)",
            context.stage_name, max_length, config.max_length,
        )
    parity = check_parity(
        source,
        out / ONNX_FILE,
        tokenizer,
        texts,
        pairs,
        task_type=task_type,
        max_length=max_length,
        batch_size=config.parity_batch_size,
    )
    parity.update(tolerance=config.parity_tolerance, split=config.parity_split, max_length=max_length)
    context.logger.info(
        "%s: parity max |logit diff| = %.3g (tolerance %.3g), argmax agreement %.4f",
        context.stage_name, parity["max_abs_diff"], config.parity_tolerance, parity["argmax_agreement"],
    )
    if not parity["max_abs_diff"] <= config.parity_tolerance:  # also catches NaN
        raise StageError(
            f"ONNX export of {artifact.name!r} differs from the PyTorch model: max |logit "
            f"difference| = {parity['max_abs_diff']:.6g} on {parity['n']} texts of split "
            f"{config.parity_split!r} (argmax agreement {parity['argmax_agreement']:.4f})",
            key="config.parity_tolerance",
            expected=f"at most {config.parity_tolerance:g}",
            hint="a lower optimization level (O3 approximates GELU), or raise parity_tolerance "
            "if the difference is acceptable",
        )
    extra = {
        "parity": parity,
        "exporter": exported.exporter,
        "exporter_notes": exported.notes,
        "optimization": config.optimization,
        "fused_operators": fused,
        "attention_fusion": attention,
        "opset": exported.opset,
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return context.new_artifact(artifact, strategy.name, config, format="onnx", extra=extra)
