"""docs/plugin-guide.md works as printed: its files are written to an empty folder, its
commands are run, and a recipe using the new strategy runs in a subprocess.

Two substitutions keep the test offline, fast and the environment untouched:
``pip install -e PKG`` becomes ``pip install --target SITE PKG`` (SITE on ``PYTHONPATH``),
and the guide's recipe runs on a tiny random BERT and a tiny CSV task instead of the
packaged MiniLM and mr-snippets (same stages and strategy configs).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from compressor import testing

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugin-guide.md"

_BLOCK = re.compile(r"<!-- (file: (?P<path>\S+)|run) -->\n```[a-z]*\n(?P<body>.*?)```", re.S)


def guide_steps() -> list[tuple[str, str, str]]:
    """``("file", path, text)`` and ``("run", "", commands)`` in the order the guide gives."""
    steps = []
    for m in _BLOCK.finditer(GUIDE.read_text(encoding="utf-8")):
        steps.append(("file", m.group("path"), m.group("body")) if m.group("path") else ("run", "", m.group("body")))
    return steps


def test_guide_has_the_steps_this_test_follows() -> None:
    steps = guide_steps()
    files = [p for kind, p, _ in steps if kind == "file"]
    assert "compressor-shrink/pyproject.toml" in files and "shrink.yaml" in files
    commands = [c for kind, _, body in steps if kind == "run" for c in body.splitlines() if c.strip()]
    assert commands[0].startswith("pip install -e ")
    assert any(c.startswith("compressor plugins") for c in commands)
    assert any("pytest" in c for c in commands)


def _command(line: str, site: Path) -> list[str]:
    args = shlex.split(line)
    if args[:3] == ["pip", "install", "-e"]:
        return [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                "--target", str(site), args[3]]
    if args[0] == "compressor":
        return [sys.executable, "-m", "compressor", *args[1:]]
    if args[:3] == ["python", "-m", "pytest"]:
        return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args[3:]]
    raise AssertionError(f"the guide runs a command this test does not know: {line}")


def test_following_the_guide_creates_installs_and_runs_a_plugin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    work = tmp_path / "work"
    work.mkdir()
    outputs: dict[str, str] = {}
    for kind, path, body in guide_steps():
        if kind == "file":
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
            continue
        for line in filter(str.strip, body.splitlines()):
            proc = subprocess.run(_command(line, site), cwd=work, env=env, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"guide step {line!r} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            outputs[line] = proc.stdout

    listing = next(v for k, v in outputs.items() if k.startswith("compressor plugins"))
    row = next(ln for ln in listing.splitlines() if ln.startswith("shrink "))
    assert "compressor-shrink" in row and "0.1.0" in row and "shrink.magnitude-round" in row
    assert "register_strategies" in row and row.rstrip().endswith("ok")
    schema = json.loads(next(v for k, v in outputs.items() if k.startswith("compressor schema")))
    assert schema["properties"]["threshold"]["exclusiveMinimum"] == 0
    assert re.search(r"\d+ passed", next(v for k, v in outputs.items() if "pytest" in k))

    # the guide's recipe, on a tiny model and task so that it runs in seconds
    recipe = yaml.safe_load((work / "shrink.yaml").read_text())
    recipe["model"] = {"name": str(testing.tiny_model("bert", tmp_path / "tiny")), "source": "local"}
    recipe["task"] = {"data": {"files": testing.write_tiny_task_files(work)}}
    recipe["evaluation"] = {**recipe.get("evaluation", {}), "sequence_length": 16, "latency": False}
    for stage in recipe["stages"]:
        if stage["strategy"] == "finetune":
            stage["config"].update(batch_size=16, max_length=32)
    (work / "shrink-tiny.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "compressor", "run", "shrink-tiny.yaml", "--run-dir", "run", "--no-progress"],
        cwd=work, env=env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lineage = json.loads((work / "run" / "artifacts" / "02-pruned" / "lineage.json").read_text())
    assert lineage["lineage"]["strategy"] == "shrink.magnitude-round"
    assert 0.0 < lineage["lineage"]["extra"]["sparsity"] < 1.0
    results = json.loads((work / "run" / "results.json").read_text())
    assert [r["model"] for r in results] == ["teacher", "pruned"]
