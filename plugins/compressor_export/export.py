"""Implementation of ``export.onnx`` (heavy: torch, optimum, onnxruntime)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

    from .plugin import ExportOnnxConfig

#: File name of the model inside an ONNX artifact.
ONNX_FILE = "model.onnx"


def _ort_class(task_type: str) -> Any:
    from optimum.onnxruntime import ORTModelForMaskedLM, ORTModelForSequenceClassification

    return ORTModelForMaskedLM if task_type == "masked-lm" else ORTModelForSequenceClassification


def _torch_class(task_type: str) -> Any:
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    return AutoModelForMaskedLM if task_type == "masked-lm" else AutoModelForSequenceClassification


def export_model(source: Path, out_dir: Path, *, task_type: str, opset: int | None) -> Any:
    """Export a ``save_pretrained`` folder to ONNX with optimum; save it to ``out_dir``.

    :param source: the PyTorch model folder.
    :param out_dir: where ``model.onnx`` and ``config.json`` are written.
    :param task_type: ``"text-classification"`` or ``"masked-lm"`` (selects the head).
    :param opset: ONNX opset, or ``None`` for optimum's default.
    :returns: the loaded ``ORTModel`` (CPU session over ``out_dir/model.onnx``).
    :raises StageError: if optimum cannot export the architecture.
    """
    kwargs: dict[str, Any] = {"export": True, "provider": "CPUExecutionProvider"}
    if opset is not None:
        kwargs["opset"] = opset
    try:
        model = _ort_class(task_type).from_pretrained(str(source), **kwargs)
    except (ValueError, KeyError, RuntimeError, OSError, TypeError) as exc:
        raise StageError(
            f"optimum could not export {source} to ONNX: {type(exc).__name__}: {exc}",
            hint="check that optimum supports this architecture "
            "(optimum-cli export onnx --help lists the supported model types)",
        ) from exc
    model.save_pretrained(out_dir)
    return model


def optimize_model(model: Any, out_dir: Path, *, level: str, for_gpu: bool) -> Path:
    """Apply ``ORTOptimizer`` at ``level`` (``O1``-``O4``) and save to ``out_dir``.

    :returns: the optimised ``.onnx`` file.
    :raises StageError: if ONNX Runtime's transformer optimiser fails on this graph.
    """
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    optimization_config = AutoOptimizationConfig.with_optimization_level(level, for_gpu=for_gpu)
    try:
        optimizer = ORTOptimizer.from_pretrained(model)
        optimizer.optimize(save_dir=out_dir, optimization_config=optimization_config)
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise StageError(
            f"ONNX Runtime graph optimisation {level} failed: {type(exc).__name__}: {exc}",
            key="config.optimization",
            hint="try a lower level (O1), or leave optimization unset",
        ) from exc
    files = sorted(Path(out_dir).glob("*.onnx"))
    if len(files) != 1:
        raise StageError(f"ORTOptimizer wrote {[f.name for f in files]} to {out_dir}, expected one file")
    return files[0]


def fused_operators(onnx_file: Path) -> dict[str, int]:
    """Counts of ONNX Runtime's fused (contrib) operators in a graph, e.g. ``Attention``.

    :returns: operator type -> number of nodes, for the fused types ORTOptimizer reports.
    """
    from optimum.onnxruntime import ORTOptimizer

    return {k: int(v) for k, v in ORTOptimizer.get_fused_operators(str(onnx_file)).items() if v}


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
    rows = dataset[: min(n, len(dataset))]
    pairs = list(rows["text_pair"]) if "text_pair" in dataset.column_names else None
    return list(rows["text"]), pairs


def logits_pytorch(source: Path, task_type: str, batches: list[dict[str, "np.ndarray"]]) -> "np.ndarray":
    """Logits of the fp32 PyTorch model on CPU, concatenated over ``batches``.

    :returns: float32 array ``(n, num_labels)`` (``(n * tokens, vocab)`` for masked-lm).
    """
    import numpy as np
    import torch

    model = _torch_class(task_type).from_pretrained(str(source), dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for batch in batches:
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
            out.append(logits.float().numpy().reshape(-1, logits.shape[-1]))
    return np.concatenate(out)


def logits_onnx(onnx_file: Path, batches: list[dict[str, "np.ndarray"]]) -> "np.ndarray":
    """Logits of an ONNX graph with ONNX Runtime on CPU, concatenated over ``batches``.

    Only the inputs the graph declares are fed (a graph exported without
    ``token_type_ids`` ignores them).
    """
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    out_name = "logits" if "logits" in {o.name for o in session.get_outputs()} else None
    out = []
    for batch in batches:
        feed = {k: v for k, v in batch.items() if k in names}
        logits = session.run([out_name] if out_name else None, feed)[0]
        out.append(np.asarray(logits, dtype=np.float32).reshape(-1, logits.shape[-1]))
    return np.concatenate(out)


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
    """Compare the ONNX graph's logits with the PyTorch model's on the same token ids.

    :returns: ``{"max_abs_diff", "mean_abs_diff", "argmax_agreement", "n"}``: absolute
        differences of logits (same units as the logits), agreement as a fraction in [0, 1].
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
    ref = logits_pytorch(source, task_type, batches)
    got = logits_onnx(onnx_file, batches)
    if ref.shape != got.shape:
        raise StageError(
            f"the ONNX model returns logits of shape {got.shape}, PyTorch {ref.shape}"
        )
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "argmax_agreement": float((ref.argmax(-1) == got.argmax(-1)).mean()),
        "n": len(texts),
    }


def run_export(
    strategy: "Strategy", artifact: "Artifact", config: "ExportOnnxConfig", context: "StageContext"
) -> "Artifact":
    """Export, optionally optimise, check parity; see :class:`~.plugin.ExportOnnx`."""
    from transformers import AutoTokenizer

    source = Path(artifact.path)
    task_type = context.data.type
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise StageError(f"artifact {artifact.name!r} has no loadable tokenizer: {exc}") from exc
    texts, pairs = parity_texts(context, config.parity_split, config.parity_samples)

    scratch = Path(context.work_dir) / "onnx-export"
    shutil.rmtree(scratch, ignore_errors=True)
    context.logger.info("%s: exporting %s to ONNX", context.stage_name, artifact.name)
    model = export_model(source, scratch / "exported", task_type=task_type, opset=config.opset)
    onnx_file = scratch / "exported" / ONNX_FILE
    if config.optimization is not None:
        context.logger.info("%s: ONNX Runtime graph optimisation %s", context.stage_name, config.optimization)
        onnx_file = optimize_model(
            model, scratch / "optimized", level=config.optimization, for_gpu=config.for_gpu
        )
    del model

    out = Path(context.output_dir)
    shutil.copyfile(onnx_file, out / ONNX_FILE)
    for extra in onnx_file.parent.glob(f"{onnx_file.name}_data"):  # external weights, > 2 GB
        shutil.copyfile(extra, out / f"{ONNX_FILE}_data")
    shutil.copyfile(scratch / "exported" / "config.json", out / "config.json")
    tokenizer.save_pretrained(out)

    parity = check_parity(
        source,
        out / ONNX_FILE,
        tokenizer,
        texts,
        pairs,
        task_type=task_type,
        max_length=config.max_length,
        batch_size=config.parity_batch_size,
    )
    parity.update(
        tolerance=config.parity_tolerance, split=config.parity_split, max_length=config.max_length
    )
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
    import onnx

    opset = next(
        (o.version for o in onnx.load(str(out / ONNX_FILE), load_external_data=False).opset_import
         if o.domain in ("", "ai.onnx")),
        None,
    )
    extra = {
        "parity": parity,
        "optimization": config.optimization,
        "fused_operators": fused_operators(out / ONNX_FILE) if config.optimization else {},
        "opset": opset,
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return context.new_artifact(artifact, strategy.name, config, format="onnx", extra=extra)
