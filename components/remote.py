"""Remote inputs: `https://.../file#sha256=HEX` is downloaded once, verified and reused.

Nothing downloads unless the user wrote a URL into the config, and then only that URL. The
file lands in the download cache under its checksum, so a second run, or another workdir,
reads it from disk. Offline, or on a checksum mismatch, the run stops at once with the path
where the file can be placed by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pipeline.config import DataConfig

PATH_KEYS = (
    "path",
    "validation_path",
    "test_path",
    "source_path",
    "target_path",
    "validation_source_path",
    "validation_target_path",
    "test_source_path",
    "test_target_path",
)
_CHUNK = 1 << 20


class RemoteInputError(RuntimeError):
    """A remote input could not be fetched or did not match its checksum."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "translation-pipeline" / "downloads"


def is_remote(path: str) -> bool:
    return path.startswith(("https://", "http://"))


def split_checksum(url: str) -> tuple[str, str]:
    """(url without fragment, sha256 hex) of `url#sha256=HEX`; raises when it is missing."""
    base, _, fragment = url.partition("#")
    sha = urllib.parse.parse_qs(fragment).get("sha256", [""])[0].lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise RemoteInputError(f"{url}: a remote input needs '#sha256=<64 hex digits>' at its end")
    return base, sha


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(url: str, sha: str, cache_dir: Path) -> Path:
    """Where the file of `url` with checksum `sha` is kept (its name keeps the suffixes)."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    return cache_dir / sha / name


def fetch(url_with_checksum: str, cache_dir: Path, timeout: float = 60.0) -> Path:
    """The local, verified copy of a remote file, downloading it only if not cached."""
    url, sha = split_checksum(url_with_checksum)
    target = cached_path(url, sha, cache_dir)
    place_by_hand = f"place the file (sha256 {sha}) at {target}"
    if target.is_file():
        if file_sha256(target) == sha:
            return target
        target.unlink()  # a corrupted cache entry: fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, tmp, _CHUNK)
        except (urllib.error.URLError, OSError) as error:
            os.unlink(tmp.name)
            raise RemoteInputError(f"cannot download {url} ({error}); {place_by_hand}") from None
    actual = file_sha256(Path(tmp.name))
    if actual != sha:
        os.unlink(tmp.name)
        raise RemoteInputError(
            f"{url} has sha256 {actual}, not the configured {sha}; fix the checksum in the "
            f"config, or {place_by_hand}"
        )
    os.replace(tmp.name, target)  # whole files only: a killed download leaves no entry
    return target


def localize(cfg: DataConfig) -> DataConfig:
    """A copy of `cfg` whose remote paths are replaced by their verified local copies."""
    cache_dir = Path(cfg.download_dir) if cfg.download_dir else default_cache_dir()
    changes = {
        key: str(fetch(getattr(cfg, key), cache_dir))
        for key in PATH_KEYS
        if is_remote(getattr(cfg, key))
    }
    return dataclasses.replace(cfg, **changes) if changes else cfg
