"""Knowledge-base work started from the dashboard: checking an upload, and one re-index at a
time in a worker thread, with its progress readable while it runs.

An upload is parsed (kb/sources.py) before it is written: a file that cannot be used is
refused with the parser's reason and never reaches the kb folder, so the index in use is
untouched. A good file is written atomically (temp file + rename).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..kb.index import Indexer, IngestProgress, IngestReport, KbError
from ..kb.sources import KINDS, MAX_FILE_BYTES, SourceSkipped, parse_source
from ..store.db import Database

log = logging.getLogger(__name__)
SAFE_NAME = re.compile(r"^[\w][\w .-]{0,120}$")


class UploadRefused(ValueError):
    """The uploaded file is not usable; the message says why, for the owner."""


def safe_relative(name: str) -> str:
    """A file name the owner may create or delete: one path segment, no tricks."""
    base = PurePosixPath(name.replace("\\", "/")).name
    if not SAFE_NAME.match(base) or base.startswith("."):
        raise UploadRefused(f"{name!r} is not an acceptable file name (letters, digits, spaces, "
                            "dots, dashes and underscores only)")
    return base


def check_upload(name: str, data: bytes) -> tuple[str, int]:
    """(file name, passages) for a usable upload; UploadRefused otherwise."""
    rel = safe_relative(name)
    if PurePosixPath(rel).suffix.lower() not in KINDS:
        raise UploadRefused(f"{rel}: only {', '.join(sorted(KINDS))} files can be used")
    try:
        parsed = parse_source(rel, data, MAX_FILE_BYTES)
    except SourceSkipped as exc:
        raise UploadRefused(f"{rel} was not saved: {exc}") from None
    if not parsed.passages:
        raise UploadRefused(f"{rel} was not saved: it holds no text the bot could use")
    return rel, len(parsed.passages)


def write_atomically(directory: Path, rel: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, directory / rel)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class JobState:
    running: bool = False
    files_done: int = 0
    files_total: int = 0
    path: str = ""
    message: str = "Not re-indexed since the dashboard started."
    report: IngestReport | None = None
    error: str = ""

    def as_json(self) -> dict[str, object]:
        return {"running": self.running, "files_done": self.files_done,
                "files_total": self.files_total, "path": self.path, "message": self.message,
                "error": self.error}


@dataclass
class KbJobs:
    db: Database
    directory: Path
    embedder: object | None            # appliance.kb.embed.Embedder (TextEmbedder)
    state: JobState = field(default_factory=JobState)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _task: asyncio.Task | None = None

    def start_reindex(self) -> bool:
        """Start a re-index unless one runs; False when one was already running."""
        with self._lock:
            if self.state.running:
                return False
            self.state = JobState(running=True, message="Starting...")
        self._task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self._run), name="admin-kb-reindex")
        return True

    async def wait(self) -> JobState:
        if self._task is not None:
            await self._task
        return self.state

    def _progress(self, p: IngestProgress) -> None:
        self.state.files_done, self.state.files_total, self.state.path = (
            p.files_done, p.files_total, p.path)
        self.state.message = (f"Indexing {p.path} ({p.files_done + 1} of {p.files_total})"
                              if p.path else "Finishing...")

    def _run(self) -> None:
        try:
            report = Indexer(self.db, self.embedder).ingest(  # type: ignore[arg-type]
                self.directory, self._progress)
        except (KbError, OSError) as exc:
            self.state.error = str(exc)
            self.state.message = f"Re-index failed: {exc}"
            log.error("admin: kb re-index failed: %s", exc)
        else:
            self.state.report = report
            skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
            self.state.message = (f"Done in {report.seconds:.1f} s: {len(report.added)} added, "
                                  f"{len(report.updated)} updated, {len(report.removed)} "
                                  f"removed{skipped}; {report.passages_total} passages.")
        finally:
            self.state.running = False
