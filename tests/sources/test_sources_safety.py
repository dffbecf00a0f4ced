"""Model folders that would run code, fetch hub kernels or unpickle are refused unless trusted.

Each case is a tiny BERT saved with ``save_pretrained`` (the session's ``tiny_bert_dir``,
copied) with one file edited; the check sits in ``resolve_model``, so it covers every source.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

from compressor.errors import CompressorError, SourceError
from compressor.safety import check_model_folder, scan_model_folder
from compressor.sources.models import LocalModelSource, resolve_model


@pytest.fixture
def model_copy(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    """A fresh copy of the tiny BERT (config, safetensors weights, tokenizer) to edit."""
    return Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))


def edit_json(file: Path, **changes: Any) -> None:
    data = json.loads(file.read_text(encoding="utf-8")) if file.exists() else {}
    data.update(changes)
    file.write_text(json.dumps(data, indent=2), encoding="utf-8")


def local(path: Path, *, trust: bool = False) -> Path:
    return resolve_model(
        str(path), "local", sources={"local": LocalModelSource()}, cache_dir=path.parent,
        trust_remote_code=trust,
    )


def _pickle_only(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


# (case id, edit, file at fault, key in the message, text in the message)
REFUSED: list[tuple[str, Callable[[Path], None], str, str, str]] = [
    (
        "auto_map",
        lambda d: edit_json(d / "config.json", auto_map={"AutoModel": "modeling_evil.EvilModel"}),
        "config.json", "auto_map", "modeling_evil.EvilModel",
    ),
    (
        "tokenizer-auto_map",
        lambda d: edit_json(d / "tokenizer_config.json", auto_map={"AutoTokenizer": ["tok_evil.Evil", None]}),
        "tokenizer_config.json", "auto_map", "tok_evil.Evil",
    ),
    (
        "internal-attn",
        lambda d: edit_json(d / "config.json", _attn_implementation_internal="sdpa"),
        "config.json", "_attn_implementation_internal", "only a crafted file",
    ),
    (
        "hub-kernel",
        lambda d: edit_json(d / "config.json", attn_implementation="kernels-community/flash-attn2"),
        "config.json", "attn_implementation", "hub kernel repository 'kernels-community/flash-attn2'",
    ),
    (
        "private-attn-kernel",
        lambda d: edit_json(d / "config.json", _attn_implementation="someone/evil-kernel@main:attn"),
        "config.json", "_attn_implementation", "someone/evil-kernel@main:attn",
    ),
    (
        "kernel-per-subconfig",
        lambda d: edit_json(d / "config.json", attn_implementation={"": "sdpa", "text_config": "org/kernel"}),
        "config.json", "attn_implementation", "'org/kernel'",
    ),
    (
        "nested-kernel",
        lambda d: edit_json(d / "config.json", text_config={"attn_implementation": "org/kernel"}),
        "config.json", "text_config.attn_implementation", "'org/kernel'",
    ),
    (
        "flash-fallback",
        lambda d: edit_json(d / "config.json", attn_implementation="flash_attention_2"),
        "config.json", "attn_implementation", "kernels-community/flash-attn",
    ),
    (
        "experts-kernel",
        lambda d: edit_json(d / "config.json", experts_implementation="sonicmoe"),
        "config.json", "experts_implementation", "sonicmoe",
    ),
    (
        "use_kernels",
        lambda d: edit_json(d / "config.json", use_kernels=True),
        "config.json", "use_kernels", "hub kernels",
    ),
    (
        "quantized",
        lambda d: edit_json(d / "config.json", quantization_config={"quant_method": "mxfp4"}),
        "config.json", "quantization_config", "mxfp4",
    ),
    ("pickle-only", _pickle_only, "", "pytorch_model.bin", "and no *.safetensors"),
]


@pytest.mark.parametrize(
    "edit,file,key,text", [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
)
def test_refused_without_opt_in_and_passes_with_it(
    model_copy: Path, edit: Callable[[Path], None], file: str, key: str, text: str
) -> None:
    assert local(model_copy) == model_copy  # as saved: loads without opting in
    edit(model_copy)
    with pytest.raises(SourceError) as err:
        local(model_copy)
    e = err.value
    at_fault = model_copy / file if file else model_copy
    assert e.key == "model.trust_remote_code" and e.where == str(at_fault)
    assert f"{at_fault}: {key}" in e.message and text in e.message
    assert "set `model.trust_remote_code: true` in the recipe" in e.hint
    assert "model.trust_remote_code: true" in str(e)  # the CLI prints str(e)
    # the recipe's opt-in lets the same folder through
    assert local(model_copy, trust=True) == model_copy


def test_every_finding_is_listed_and_opt_in_warns(model_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    edit_json(model_copy / "config.json", auto_map={"AutoModel": "m.M"}, attn_implementation="org/k")
    _pickle_only(model_copy)
    found = scan_model_folder(model_copy)
    assert [(f.file.name, f.key) for f in found] == [
        ("config.json", "auto_map"), ("config.json", "attn_implementation"), ("model", ""),
    ]
    with pytest.raises(SourceError) as err:
        check_model_folder(model_copy)
    assert all(f.describe() in err.value.message for f in found)
    with caplog.at_level("WARNING", logger="compressor.safety"):
        assert check_model_folder(model_copy, trust_remote_code=True) == found
    assert "trusts it (model.trust_remote_code: true)" in caplog.text and "auto_map" in caplog.text


@pytest.mark.parametrize(
    "changes",
    [
        {"attn_implementation": "eager"},
        {"attn_implementation": "sdpa", "experts_implementation": "grouped_mm"},
        {"_attn_implementation": "paged|eager"},
        {"use_kernels": False, "auto_mapping_notes": "not auto_map"},
    ],
    ids=["eager", "sdpa", "paged-eager", "falsy-switch"],
)
def test_built_in_implementations_pass(model_copy: Path, changes: dict[str, Any]) -> None:
    edit_json(model_copy / "config.json", **changes)
    assert scan_model_folder(model_copy) == []


def test_pickles_beside_safetensors_and_unparsable_files_pass(model_copy: Path) -> None:
    (model_copy / "training_args.bin").write_bytes(b"\x80\x04N.")  # a pickle, but weights are safetensors
    (model_copy / "preprocessor_config.json").write_text("not json")  # transformers fails on it too
    (model_copy / "processor_config.json").write_text("[" * 100_000 + "]" * 100_000)  # json: RecursionError
    assert scan_model_folder(model_copy) == []
    assert scan_model_folder(model_copy / "config.json") == []  # not a folder: nothing to say


def test_check_runs_for_every_source_after_it_resolves(model_copy: Path) -> None:
    """A plugin-registered source gets the same check: it sits in resolve_model."""
    edit_json(model_copy / "config.json", auto_map={"AutoModel": "m.M"})

    class PluginSource:
        name = "my-store"

        def known_models(self) -> list[str]:
            return ["bert-tiny"]

        def resolve(self, name: str, *, cache_dir: Path, revision: str | None = None,
                    trust_remote_code: bool = False) -> str:
            return str(model_copy)  # a str, as a careless plugin may return

    sources = {"my-store": PluginSource()}
    with pytest.raises(SourceError, match="auto_map"):
        resolve_model("bert-tiny", "my-store", sources=sources, cache_dir=model_copy.parent)
    assert resolve_model(
        "bert-tiny", "my-store", sources=sources, cache_dir=model_copy.parent, trust_remote_code=True
    ) == str(model_copy)


def _transformers_release() -> tuple[int, int]:
    import transformers
    from packaging.version import Version

    major, minor = Version(transformers.__version__).release[:2]
    return major, minor


#: the attention keys of config.json: (key, whether the installed transformers acts on it)
ATTENTION_KEY_READ = [
    ("attn_implementation", lambda version: True),
    # private spelling: read as the public key up to 5.24; 5.25 adds it to PreTrainedConfig's
    # ignored_keys. Refused by safety.py either way (PRIVATE_IMPLEMENTATION_KEYS).
    ("_attn_implementation", lambda version: version < (5, 25)),
    ("_attn_implementation_internal", lambda version: False),
]
EXPERTS_KEY_READ = [
    ("experts_implementation", lambda version: True),
    ("_experts_implementation", lambda version: version < (5, 25)),
    ("_experts_implementation_internal", lambda version: False),
]


@pytest.mark.parametrize("key,reads", [pytest.param(k, r, id=k) for k, r in ATTENTION_KEY_READ])
def test_transformers_acts_on_the_keys_that_are_refused(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch, key: str, reads: Callable[[tuple[int, int]], bool]
) -> None:
    """Pins what the installed transformers does with a hub-kernel name under each attention
    key of config.json, down to the kernel download that ``from_pretrained`` starts (stubbed
    here: ``load_and_register_attn_kernel`` fetches the repository with ``get_kernel``). When
    this fails, transformers changed how it reads the key: follow it in compressor/safety.py
    (a key that is read must be refused; one that no supported version reads may go)."""
    from transformers import AutoConfig, AutoModel
    from transformers.integrations import hub_kernels

    assert key in scan_keys(model_copy, {key: "org/k"})  # safety.py refuses it

    fetched: list[str] = []

    class KernelFetched(Exception):
        pass

    def fetch(name: str, *args: Any, **kwargs: Any) -> None:
        fetched.append(name)
        raise KernelFetched(name)

    monkeypatch.setattr(hub_kernels, "load_and_register_attn_kernel", fetch)
    edit_json(model_copy / "config.json", **{key: "org/k"})
    if reads(_transformers_release()):
        assert AutoConfig.from_pretrained(model_copy)._attn_implementation == "org/k"
        with pytest.raises(KernelFetched):
            AutoModel.from_pretrained(model_copy)
        assert fetched == ["org/k"]
    else:
        assert AutoConfig.from_pretrained(model_copy)._attn_implementation is None
        AutoModel.from_pretrained(model_copy)  # loads with a built-in attention
        assert fetched == []


@pytest.mark.parametrize("key,reads", [pytest.param(k, r, id=k) for k, r in EXPERTS_KEY_READ])
def test_transformers_reads_the_experts_keys_that_are_refused(
    model_copy: Path, key: str, reads: Callable[[tuple[int, int]], bool]
) -> None:
    """The same for the experts keys, as far as the config (BERT has no experts layers)."""
    from transformers import AutoConfig

    assert key in scan_keys(model_copy, {key: "sonicmoe"})
    edit_json(model_copy / "config.json", **{key: "sonicmoe"})
    expected = "sonicmoe" if reads(_transformers_release()) else None
    assert AutoConfig.from_pretrained(model_copy)._experts_implementation == expected


def test_transformers_turns_flash_attention_into_a_hub_kernel(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flash_attention_2`` without the flash_attn package becomes the
    kernels-community/flash-attn2 hub kernel where ``kernels`` is usable (transformers 5.25
    depends on it), which is why safety.py refuses it."""
    from transformers import AutoModel
    from transformers.integrations import hub_kernels
    from transformers.utils import is_flash_attn_2_available, is_kernels_available

    assert "attn_implementation" in scan_keys(model_copy, {"attn_implementation": "flash_attention_2"})
    if is_flash_attn_2_available() or not is_kernels_available():
        pytest.skip("the fallback needs kernels and no flash_attn package")
    fetched: list[str] = []

    def fetch(name: str, *args: Any, **kwargs: Any) -> None:
        fetched.append(name)
        raise ImportError(name)

    monkeypatch.setattr(hub_kernels, "load_and_register_attn_kernel", fetch)
    edit_json(model_copy / "config.json", attn_implementation="flash_attention_2")
    with pytest.raises(ImportError):
        AutoModel.from_pretrained(model_copy)
    assert fetched == ["kernels-community/flash-attn2"]


def scan_keys(model_copy: Path, changes: dict[str, Any]) -> list[str]:
    """The keys safety.py refuses in a copy of ``model_copy`` with ``changes`` in its config."""
    probe = Path(shutil.copytree(model_copy, model_copy.with_name(model_copy.name + "-probe")))
    try:
        edit_json(probe / "config.json", **changes)
        return [f.key for f in scan_model_folder(probe)]
    finally:
        shutil.rmtree(probe)


def test_trusted_pickle_weights_load_with_weights_only(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the opt-in, transformers 5 still unpickles only with ``weights_only=True``."""
    import torch
    from transformers import BertForSequenceClassification

    _pickle_only(model_copy)
    with pytest.raises(SourceError, match="pickle-only weights"):
        local(model_copy)
    calls: list[dict[str, Any]] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    BertForSequenceClassification.from_pretrained(local(model_copy, trust=True))
    assert calls and all(c.get("weights_only") is True for c in calls)


RECIPE = """\
version: 1
name: refused
model:
  name: {model}
  source: local{trust}
task:
  data:
    name: tiny-sentiment
stages:
  - name: copy
    strategy: copy.model
"""


@pytest.mark.parametrize("trust", [False, True])
def test_the_run_checks_the_recipes_model_before_loading_anything(
    tmp_path: Path, model_copy: Path, fake_plugins: Any, monkeypatch: pytest.MonkeyPatch, trust: bool
) -> None:
    from compressor import pipeline
    from compressor.sources import datasets as data_sources

    edit_json(model_copy / "config.json", auto_map={"AutoModel": "m.M"})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(textwrap.dedent(RECIPE.format(
        model=model_copy, trust="\n  trust_remote_code: true" if trust else ""
    )))

    def data_reached(*args: Any, **kwargs: Any) -> None:
        raise CompressorError("data reached")

    monkeypatch.setattr(data_sources, "load_task_data", data_reached)
    with pytest.raises(CompressorError) as err:
        pipeline.run(recipe, run_dir=tmp_path / "run", plugins=fake_plugins, progress=False)
    if trust:
        assert err.value.message == "data reached"
        return
    e = err.value
    assert isinstance(e, SourceError) and e.key == "model.trust_remote_code"
    assert e.where == f"{recipe}:3"  # the recipe's model block, where the opt-in goes
    assert f"{model_copy / 'config.json'}: auto_map" in e.message


def test_importing_compressor_turns_hub_kernels_off_unless_the_user_opts_in(tmp_path) -> None:
    """transformers 5.25 kernelizes models with hub code by default; compressor's import turns
    that off (USE_HUB_KERNELS=NO) and respects a user's explicit choice."""
    import os
    import subprocess
    import sys

    from compressor.testing import tiny_model

    folder = tiny_model("bert", tmp_path / "m")
    code = (
        "import compressor, transformers, sys;"
        f"m = transformers.AutoModelForSequenceClassification.from_pretrained({str(folder)!r});"
        "print(m.use_kernels)"
    )
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip().splitlines()[-1] == "False", off.stdout + off.stderr
    # a user's own setting is kept (setdefault), so USE_HUB_KERNELS=YES opts in
    opted = subprocess.run([sys.executable, "-c", "import os; os.environ['USE_HUB_KERNELS'] = 'YES'; "
                            "import compressor; print(os.environ['USE_HUB_KERNELS'])"],
                           env=env, capture_output=True, text=True, check=True)
    assert opted.stdout.strip() == "YES"
