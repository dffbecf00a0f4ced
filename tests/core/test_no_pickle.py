"""Nothing is unpickled: no pickle-family loader in the code, every ``torch.load`` restricted
to ``weights_only=True``, and training writes safetensors and resumes without unrestricted
unpickling."""

from __future__ import annotations

import ast
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["compressor", "plugins", "docs/examples/compressor-lowrank", "benchmarks"]
BANNED_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else ``None``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _is_true(call: ast.Call, keyword: str) -> bool | None:
    """``True``/``False`` for a literal ``keyword=True/False``, ``None`` when absent or not
    a literal (which the scan treats as not restricted)."""
    for kw in call.keywords:
        if kw.arg == keyword and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, bool):
            return kw.value.value
    return None


def scan_source(source: str, filename: str = "<string>") -> tuple[list[str], int]:
    """Unpickling calls in one Python source.

    :returns: ``(violations, torch_load_calls)``: a ``file:line: what`` per violation, and
        how many ``torch.load`` calls were seen (restricted or not).
    """
    tree = ast.parse(source, filename)
    # local names bound to torch (or torch.serialization) and to torch.load itself
    modules = {"torch": "torch"}
    loaders: set[str] = set()
    bad: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED_MODULES:
                    bad.append(f"{filename}:{node.lineno}: imports {alias.name}")
                if alias.name in ("torch", "torch.serialization"):
                    local = alias.asname or alias.name.split(".")[0]
                    modules[local] = alias.name if alias.asname else "torch"
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in BANNED_MODULES:
                bad.append(f"{filename}:{node.lineno}: imports from {node.module}")
            for alias in node.names:
                local = alias.asname or alias.name
                if node.module in ("torch", "torch.serialization") and alias.name == "load":
                    loaders.add(local)
                elif node.module == "torch" and alias.name == "serialization":
                    modules[local] = "torch.serialization"
                elif node.module.startswith("pandas") and alias.name == "read_pickle":
                    bad.append(f"{filename}:{node.lineno}: imports pandas.read_pickle")
    torch_loads = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        full = modules.get(head, head) + ("." + rest if rest else "")
        where = f"{filename}:{node.lineno}"
        if full in ("torch.load", "torch.serialization.load") or name in loaders:
            torch_loads += 1
            if _is_true(node, "weights_only") is not True:
                bad.append(f"{where}: {name}(...) without weights_only=True")
        elif full == "torch.jit.load":
            bad.append(f"{where}: torch.jit.load runs serialised TorchScript")
        elif name.endswith(".read_pickle") or name == "read_pickle":
            bad.append(f"{where}: {name} unpickles")
        if _is_true(node, "weights_only") is False:
            bad.append(f"{where}: {name}(..., weights_only=False)")
        if _is_true(node, "allow_pickle") is True:
            bad.append(f"{where}: {name}(..., allow_pickle=True)")
    return bad, torch_loads


@pytest.mark.parametrize(
    "source,found",
    [
        ("import torch\ntorch.load(f)", "without weights_only=True"),
        ("import torch\ntorch.load(f, weights_only=False)", "without weights_only=True"),
        ("import torch\ntorch.load(f, **kw)", "without weights_only=True"),
        ("import torch as t\nt.load(f)", "t.load(...) without"),
        ("from torch import load as L\nL(f)", "L(...) without"),
        ("from torch import serialization as s\ns.load(f)", "s.load(...) without"),
        ("import torch.serialization\ntorch.serialization.load(f)", "without weights_only=True"),
        ("import pickle\npickle.loads(b)", "imports pickle"),
        ("from joblib import load", "imports from joblib"),
        ("import dill.settings", "imports dill.settings"),
        ("import pandas as pd\npd.read_pickle(p)", "pd.read_pickle unpickles"),
        ("import numpy as np\nnp.load(p, allow_pickle=True)", "allow_pickle=True"),
        ("from transformers import AutoModel\nAutoModel.from_pretrained(p, weights_only=False)", "weights_only=False"),
        ("import torch\ntorch.jit.load(p)", "TorchScript"),
    ],
)
def test_scan_catches(source: str, found: str) -> None:
    bad, _ = scan_source(source)
    assert any(found in b for b in bad), bad


def test_scan_accepts_restricted_loads() -> None:
    bad, loads = scan_source(
        "import torch\nfrom torch import load\n"
        "torch.load(f, map_location='cpu', weights_only=True)\nload(f, weights_only=True)\n"
        "import numpy as np\nnp.load(p)\nmodel.load_state_dict(s)\n"
    )
    assert bad == [] and loads == 2


def test_no_unpickling_in_the_code() -> None:
    files = [
        f for d in SCANNED for f in (ROOT / d).rglob("*.py")
        if "egg-info" not in str(f) and "__pycache__" not in f.parts
    ]
    assert len(files) > 50
    bad: list[str] = []
    loads = 0
    for f in files:
        found, n = scan_source(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))
        bad += found
        loads += n
    assert bad == []
    assert loads >= 1  # the dynamic-int8 backend's state dict: the scan does see torch.load


# --- a trained artifact ------------------------------------------------------------------

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TRAINER_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "training_args.bin"}


def is_pickle(path: Path) -> bool:
    """Whether ``path`` is in a pickle format, by name or by content (raw pickle, or a
    ``torch.save`` zip holding ``data.pkl``); a safetensors file is recognised first."""
    if path.name.lower().endswith(PICKLE_SUFFIXES):
        return True
    head = path.read_bytes()[:16]
    if len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return False  # safetensors: 8-byte header length, then a JSON header
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True  # pickle protocol 2-5
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith(".pkl") for n in zf.namelist())
    return False


def test_is_pickle(tmp_path: Path) -> None:
    import pickle  # noqa: F401 - only to write a sample; the scan covers the shipped code
    import torch
    from safetensors.torch import save_file

    torch.save({"w": torch.ones(2)}, tmp_path / "state")
    (tmp_path / "raw").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    save_file({"w": torch.ones(2)}, str(tmp_path / "weights"))
    (tmp_path / "config").write_text("{}")
    assert [is_pickle(tmp_path / n) for n in ("state", "raw", "weights", "config")] == [True, True, False, False]


def test_training_writes_safetensors_and_resumes_with_weights_only(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``finetune`` strategy on a tiny BERT: the artifact holds no pickle file, the
    checkpoint's weights are safetensors, and resuming from that checkpoint reads the
    Trainer's state files only through ``torch.load(weights_only=True)``."""
    import datasets
    import torch

    from compressor.artifact import Artifact
    from compressor.strategy import StageContext
    from compressor.task import TaskData
    from compressor_finetune.plugin import FineTune, FineTuneConfig

    words = ["good", "bad", "the", "movie", "was", "very"]
    rows = {"text": [f"the movie was {words[i % 2]}" for i in range(16)], "label": [1 - i % 2 for i in range(16)]}
    data = TaskData(
        type="text-classification",
        splits={"train": datasets.Dataset.from_dict(rows)},
        label_names=["negative", "positive"],
        name="tiny",
    )
    work = tmp_path / "work"

    def finetune(epochs: int, out: str) -> Artifact:
        context = StageContext(
            stage_name="finetune", output_dir=tmp_path / out, work_dir=work, data=data, seed=0,
            progress=False, device="cpu",
        )
        context.output_dir.mkdir()
        work.mkdir(exist_ok=True)
        config = FineTuneConfig(epochs=epochs, learning_rate=1e-3, batch_size=8, max_length=16, logging_steps=1)
        torch.set_num_threads(1)
        return FineTune().apply(Artifact(name="baseline", path=tiny_bert_dir), config, context)

    threads = torch.get_num_threads()
    try:
        first = finetune(1, "first")
        checkpoints = sorted(work.glob("checkpoint-*"))
        assert len(checkpoints) == 1
        ckpt = checkpoints[0]
        assert (ckpt / "model.safetensors").is_file() and not (ckpt / "pytorch_model.bin").exists()
        assert {p.name for p in ckpt.iterdir() if is_pickle(p)} <= TRAINER_STATE

        calls: list[dict[str, Any]] = []
        real_load = torch.load

        def spy(*args: Any, **kwargs: Any) -> Any:
            calls.append({"file": Path(str(args[0])).name if args else None, **kwargs})
            return real_load(*args, **kwargs)

        monkeypatch.setattr(torch, "load", spy)
        second = finetune(2, "second")
    finally:
        torch.set_num_threads(threads)
    assert second.lineage.extra["resumed_from_checkpoint"] == ckpt.name
    assert {"optimizer.pt", "rng_state.pth"} <= {c["file"] for c in calls}
    assert all(c.get("weights_only") is True for c in calls), calls
    for artifact in (first, second):
        files = [p for p in Path(artifact.path).rglob("*") if p.is_file()]
        assert any(p.name == "model.safetensors" for p in files)
        assert [p.name for p in files if is_pickle(p)] == []
