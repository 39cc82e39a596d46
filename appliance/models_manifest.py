"""models/manifest.toml: which model files the appliance uses, where from, and how to verify them.

Downloads are resumable (HTTP Range into a .part file), verified by size and sha256, and moved
into place only when they verify. Nothing here is imported by the call path at run time except
`resolve_model_value`, which maps a config value such as "base" to its path under models/.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

log = logging.getLogger(__name__)
MANIFEST = Path(__file__).resolve().parent.parent / "models" / "manifest.toml"


@dataclass(frozen=True)
class ModelFile:
    url: str
    path: str         # relative to the models directory
    size: int         # bytes
    sha256: str       # "" when unknown: then only the size is checked, and `verify` says so


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str                 # stt, tts, llm, embedding, turn
    path: str                 # what the setting points at, relative to the models directory
    aliases: tuple[str, ...]
    default: bool
    needed_for: str           # what will not work without it, in plain words
    why: str
    files: tuple[ModelFile, ...]
    license: str = ""
    commercial_use: bool = False
    language: str = ""        # voices: the language they speak (en, ru, he)

    def location(self, models_dir: Path) -> Path:
        return models_dir / self.path

    def size(self) -> int:
        return sum(f.size for f in self.files)


class ManifestError(Exception):
    pass


def load_manifest(path: Path = MANIFEST) -> list[ModelEntry]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    entries = []
    for raw in data.get("model", []):
        files = tuple(ModelFile(url=f["url"], path=f["path"], size=int(f["size"]),
                                sha256=f.get("sha256", "").lower()) for f in raw["files"])
        entries.append(ModelEntry(name=raw["name"], kind=raw["kind"], path=raw["path"],
                                  aliases=tuple(raw.get("aliases", ())),
                                  default=bool(raw.get("default", False)),
                                  needed_for=raw.get("needed_for", ""), why=raw.get("why", ""),
                                  files=files, license=raw.get("license", ""),
                                  commercial_use=bool(raw.get("commercial_use", False)),
                                  language=raw.get("language", "")))
        entry = entries[-1]
        if not entry.license:
            raise ManifestError(f"{path}: model {entry.name} does not name its licence")
        if entry.default and not entry.commercial_use:
            raise ManifestError(f"{path}: model {entry.name} may not be used commercially, so it "
                                "cannot be installed by default")
    return entries


def find(name: str, kind: str | None = None, entries: list[ModelEntry] | None = None,
         ) -> ModelEntry | None:
    for entry in entries if entries is not None else load_manifest():
        if (kind is None or entry.kind == kind) and (name == entry.name or name in entry.aliases):
            return entry
    return None


def resolve_model_value(kind: str, value: str, models_dir: Path) -> Path | None:
    """A config value that names a manifest model -> its path; anything else -> None (a path)."""
    if "/" in value or value.endswith((".onnx", ".gguf", ".bin")):
        return None
    entry = find(value, kind)
    return entry.location(models_dir) if entry else None


# ----------------------------------------------------------------------------------------------
# Download and verification

Progress = Callable[[str, int, int], None]  # (label, done bytes, total bytes)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(models_dir: Path, f: ModelFile) -> str | None:
    """None when the file is in place and verifies, else the reason in plain words."""
    target = models_dir / f.path
    if not target.is_file():
        return "not downloaded"
    size = target.stat().st_size
    if size != f.size:
        return f"size {size} bytes, expected {f.size}"
    if f.sha256 and sha256_of(target) != f.sha256:
        return "checksum mismatch"
    return None


def download_file(models_dir: Path, f: ModelFile, progress: Progress | None = None,
                  timeout_s: float = 30.0) -> None:
    """Fetch one file, resuming a previous .part; verify before moving it into place."""
    target = models_dir / f.path
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > f.size:
        part.unlink()
        have = 0
    request = urllib.request.Request(f.url, headers={"User-Agent": "appliance-installer/1"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        status = getattr(response, "status", 200)
        if have and status != 206:   # the server ignored Range: start again
            have = 0
        with part.open("ab" if have else "wb") as out:
            done = have
            while block := response.read(1 << 16):
                out.write(block)
                done += len(block)
                if progress:
                    progress(f.path, done, f.size)
    size = part.stat().st_size
    if size != f.size:
        raise ManifestError(f"{f.path}: got {size} bytes, expected {f.size}")
    if f.sha256:
        actual = sha256_of(part)
        if actual != f.sha256:
            part.unlink()
            raise ManifestError(f"{f.path}: checksum mismatch (got {actual[:12]}..., expected "
                                f"{f.sha256[:12]}...); the partial file was removed")
    os.replace(part, target)


class ProgressBar:
    """A plain one-line progress bar on a terminal; quiet lines when not a terminal."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream, self._last = stream, 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        mb = 1024 * 1024
        line = f"  {label[-40:]:40} [{bar:30}] {share:6.1%} {done / mb:7.1f}/{total / mb:.1f} MB"
        end = "\n" if done >= total else "\r"
        if self.stream.isatty() or end == "\n":
            self.stream.write(line + end)
            self.stream.flush()


def download(entries: list[ModelEntry], models_dir: Path, progress: Progress | None = None,
             ) -> dict[str, str | None]:
    """Download every file that is missing or wrong. Returns name -> None (ok) or the failure."""
    results: dict[str, str | None] = {}
    for entry in entries:
        failure = None
        for f in entry.files:
            if verify_file(models_dir, f) is None:
                continue
            try:
                download_file(models_dir, f, progress)
            except (OSError, urllib.error.URLError, ManifestError) as exc:
                failure = f"{f.path}: {exc}"
                break
        results[entry.name] = failure
    return results


def status(entry: ModelEntry, models_dir: Path, check_hash: bool = False) -> str | None:
    """None if every file is present (and verifies when check_hash), else the first problem."""
    for f in entry.files:
        if check_hash:
            problem = verify_file(models_dir, f)
        else:
            target = models_dir / f.path
            problem = None if target.is_file() and target.stat().st_size == f.size else (
                "not downloaded" if not target.exists() else "incomplete")
        if problem:
            return f"{f.path}: {problem}"
    return None
