"""Compute: FLOPs per sequence, the model's numeric precision, the machine's matmul peak.

- PyTorch models: ``torch.utils.flop_counter.FlopCounterMode`` around one forward call at
  batch 1 (matrix multiplies and attention: ``2 * M * N * K`` per product), with a formula
  added for CPU ``scaled_dot_product_attention`` (``aten._scaled_dot_product_flash_attention_
  for_cpu``), which torch 2.x does not count by itself.
- ONNX models: the graph with its inputs fixed to ``(1, sequence_length)``, shapes inferred
  by ONNX Runtime's ``SymbolicShapeInference`` (``onnx.shape_inference`` as a
  fallback), then ``2 * M * N * K`` summed over ``MatMul``,
  ``MatMulInteger``, ``QLinearMatMul``, ``Gemm`` and ORT's ``FusedMatMul``/
  ``MatMulIntegerToFloat``/``DynamicQuantizeMatMul`` nodes: the same products the PyTorch
  counter sees, so the two formats agree (tested). Element-wise work (softmax, GELU, layer
  norm) is not counted in either.
- Peak: ``torch.utils.benchmark.Timer(...).blocked_autorange`` of an ``n x n`` matrix
  product with the evaluation's thread count: ``torch.mm`` in fp32/bf16/fp16,
  ``torch._int_mm`` (int8 x int8 -> int32) for int8; GFLOP/s (GOP/s for int8) is
  ``2 n^3 / median time``. Measured once per run and cached in the run directory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..onnx_export import INT8_OPERATORS

if TYPE_CHECKING:  # pragma: no cover
    from .backends import Backend

#: Matrix side of the peak calibration (fp32: 2.1 GFLOP per product).
CALIBRATION_N = 1024
CALIBRATION_FILE = "calibration.json"

_MATMUL_OPS = {
    "MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
}


def _sdpa_cpu_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


def pytorch_flops(model: Any, batch: Any) -> int:
    """FLOPs of one forward call of a PyTorch model on ``batch``.

    :param model: a ``torch.nn.Module`` in eval mode.
    :param batch: keyword inputs (tensors of shape ``(batch, tokens)``).
    :returns: floating-point operations (multiply and add counted separately).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _sdpa_cpu_flop
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(**batch)
    return int(counter.get_total_flops())


def onnx_flops(onnx_path: str | Path, *, batch_size: int, sequence_length: int) -> int:
    """Multiply-accumulate FLOPs (``2 * M * N * K``) of one run of an ONNX encoder graph.

    :param onnx_path: the ``.onnx`` file (external weight data is not needed).
    :param batch_size: value of every graph input's first dimension.
    :param sequence_length: value of every graph input's second dimension.
    :returns: FLOPs of the matrix products of one run.
    :raises ValueError: when a product's operand shapes cannot be inferred.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        for i, value in enumerate((batch_size, sequence_length)):
            if i < len(dims):
                dims[i].ClearField("dim_param")
                dims[i].dim_value = value
    try:  # ONNX Runtime's symbolic inference resolves the Shape -> Reshape chains of exports
        import os
        import tempfile

        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        # On failure the tool saves 'sym_shape_infer_temp.onnx' (+ data) into the working
        # directory: run it from a scratch folder so the user's folder stays clean.
        cwd = os.getcwd()
        with tempfile.TemporaryDirectory(prefix="compressor-shape-") as scratch:
            os.chdir(scratch)
            try:
                inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
            finally:
                os.chdir(cwd)
    except Exception:  # noqa: BLE001 - any failure: fall back to onnx's own inference
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)

    total = 0
    for node in inferred.graph.node:
        if node.op_type not in _MATMUL_OPS and node.op_type != "Gemm":
            continue
        if node.op_type == "QLinearMatMul":  # a, a_scale, a_zp, b, b_scale, b_zp, ...
            a_name, b_name = node.input[0], node.input[3]
        else:
            a_name, b_name = node.input[0], node.input[1]
        a, b = shapes.get(a_name), shapes.get(b_name)
        if a is None or b is None:
            raise ValueError(
                f"cannot infer the operand shapes of {node.op_type} node {node.name!r}"
            )
        if node.op_type == "Gemm":
            attrs = {x.name: x.i for x in node.attribute if x.name in ("transA", "transB")}
            m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
            n = b[0] if attrs.get("transB") else b[1]
            total += 2 * m * n * k
            continue
        k = a[-1]
        n = b[-1] if len(b) >= 2 else 1
        m = a[-2] if len(a) >= 2 else 1
        batch = max(math.prod(a[:-2]) if len(a) > 2 else 1, math.prod(b[:-2]) if len(b) > 2 else 1)
        total += 2 * batch * m * n * k
    return int(total)


def onnx_precision(onnx_path: str | Path) -> str:
    """The numeric precision an ONNX graph computes its matrix products in.

    :returns: ``"int8"`` (integer or QDQ operators, :data:`compressor.onnx_export.INT8_OPERATORS`),
        ``"fp16"`` (fp16 initializers) or ``"fp32"``.
    """
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    if any(n.op_type in INT8_OPERATORS for n in proto.graph.node):
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer):
        return "fp16"
    return "fp32"


def torch_precision(model: Any) -> str:
    """The numeric precision a PyTorch model computes its matrix products in.

    :returns: ``"int8"`` (quantized modules), else the dtype of its first floating-point
        weights: ``"fp16"``, ``"bf16"`` or ``"fp32"``.
    """
    import torch

    for module in model.modules():
        if "quantized" in type(module).__module__:
            return "int8"
    for p in model.parameters():
        if p.is_floating_point():
            return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(p.dtype, "fp32")
    return "fp32"


def model_precision(backend: "Backend") -> str:
    """The numeric precision of a loaded model: :meth:`Backend.precision
    <compressor.evaluate.backends.Backend.precision>`, which knows its format."""
    return backend.precision()


def flops_per_sequence(backend: "Backend", batch: Any, *, sequence_length: int) -> int:
    """FLOPs of one sequence of ``sequence_length`` tokens: :meth:`Backend.flops_per_sequence
    <compressor.evaluate.backends.Backend.flops_per_sequence>`, which knows its format."""
    return backend.flops_per_sequence(batch, sequence_length=sequence_length)


def matmul_peak(precision: str, *, threads: int, device: str = "cpu", min_run_time_s: float = 0.5,
                n: int = CALIBRATION_N) -> dict[str, Any]:
    """Measured throughput of an ``n x n x n`` matrix product at ``precision``.

    :param precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"``.
    :param threads: intra-op threads (``Timer(num_threads=...)``).
    :param device: ``"cpu"`` or ``"cuda"``.
    :param min_run_time_s: seconds ``blocked_autorange`` spends (at least).
    :param n: matrix side.
    :returns: ``{"precision", "device", "threads", "n", "median_s", "gflops"}``; ``gflops`` is
        ``2 n^3 / median_s / 1e9`` (integer operations for int8).
    :raises ValueError: for an unknown precision.
    """
    import torch
    from torch.utils import benchmark

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(dtypes)}")
    gen = torch.Generator().manual_seed(0)
    if precision == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen).to(device)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen).to(device)
        stmt = "torch._int_mm(a, b)"
    else:
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtypes[precision])
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtypes[precision])
        stmt = "torch.mm(a, b)"
    timer = benchmark.Timer(stmt=stmt, globals={"a": a, "b": b, "torch": torch}, num_threads=threads)
    timer.timeit(2)  # warm-up (lazy init, CUDA kernels)
    m = timer.blocked_autorange(min_run_time=min_run_time_s)
    return {
        "precision": precision,
        "device": device,
        "threads": threads,
        "n": n,
        "median_s": float(m.median),
        "gflops": float(2 * n**3 / m.median / 1e9),
    }


def calibration_key(precision: str, *, threads: int, device: str) -> str:
    """Cache key of one calibration: CPU model, torch version, device, threads, precision."""
    import torch

    from ..manifest import cpu_model

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else ""
    return "|".join([cpu_model(), gpu, torch.__version__, device, str(threads), precision])


def cached_peaks(
    precisions: list[str], *, threads: int, device: str, cache_dir: Path | None,
    min_run_time_s: float = 0.5, progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`matmul_peak` for each precision, read from / written to
    ``cache_dir/calibration.json`` when ``cache_dir`` is given.

    A precision the device cannot run (e.g. int8 products on a CUDA GPU without them) is
    recorded with ``"gflops": None`` and the error.

    :returns: precision -> calibration dict (``"cached": True`` when read from the file).
    """
    from tqdm.auto import tqdm

    path = Path(cache_dir) / CALIBRATION_FILE if cache_dir is not None else None
    cache: dict[str, Any] = {}
    if path is not None and path.is_file():
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            cache = {}
    out: dict[str, dict[str, Any]] = {}
    todo = []
    for precision in dict.fromkeys(precisions):
        key = calibration_key(precision, threads=threads, device=device)
        if key in cache:
            out[precision] = {**cache[key], "cached": True}
        else:
            todo.append((precision, key))
    for precision, key in tqdm(todo, desc="matmul peak calibration", unit="precision",
                               disable=not progress or not todo, leave=False):
        try:
            value = matmul_peak(precision, threads=threads, device=device,
                                min_run_time_s=min_run_time_s)
        except (RuntimeError, NotImplementedError) as exc:
            value = {"precision": precision, "device": device, "threads": threads,
                     "gflops": None, "error": f"{type(exc).__name__}: {exc}"}
        cache[key] = value
        out[precision] = {**value, "cached": False}
    if path is not None and todo:
        from ..artifact import write_json_atomic

        write_json_atomic(path, cache)
    return out
