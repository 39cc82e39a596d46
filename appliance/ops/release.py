"""A release tarball as an upgrade source: `appliance upgrade appliance-X.tar.gz [--sha256 HEX]`
or `appliance upgrade https://host/appliance-X.tar.gz --sha256 HEX`.

The tarball (what `git archive --prefix=appliance-X/ -o appliance-X.tar.gz HEAD` makes) is
checked, unpacked safely and recorded as a commit on top of the installed checkout's HEAD. From
there the upgrade is the same as from git: reset to the new commit, migrate, restart, and on any
failure reset back to the previous commit. An install that is not a git checkout (unpacked from a
tarball) gets a repository recording its current files first, so there is always a way back.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

MAX_BYTES = 512 * 1024 * 1024             # a release is a few MB; refuse anything absurd
SHA256 = re.compile(r"^[0-9a-f]{64}$")
IDENTITY = {"GIT_AUTHOR_NAME": "appliance upgrade", "GIT_AUTHOR_EMAIL": "appliance@localhost",
            "GIT_COMMITTER_NAME": "appliance upgrade", "GIT_COMMITTER_EMAIL": "appliance@localhost"}


class ReleaseError(Exception):
    pass


def is_tarball(source: str) -> bool:
    return source.lower().split("?", 1)[0].endswith((".tar.gz", ".tgz"))


def is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def check_sha256(source: str, sha256: str) -> str:
    """The expected digest, normalised; a URL without one is refused (nothing else vouches
    for what the network hands us)."""
    digest = sha256.strip().lower()
    if digest and not SHA256.match(digest):
        raise ReleaseError(f"--sha256 {sha256!r} is not 64 hex digits")
    if is_url(source) and not digest:
        raise ReleaseError("a tarball URL needs --sha256 HEX (the digest published with it)")
    return digest


def fetch(source: str, folder: Path, timeout_s: float = 60.0) -> Path:
    """The tarball as a local file (downloaded into `folder` when `source` is a URL)."""
    if not is_url(source):
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise ReleaseError(f"{path}: no such file")
        return path
    target = folder / "release.tar.gz"
    size = 0
    try:
        with urllib.request.urlopen(source, timeout=timeout_s) as resp, target.open("wb") as out:
            while chunk := resp.read(1 << 20):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise ReleaseError(f"{source}: larger than {MAX_BYTES >> 20} MB; not a release")
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise ReleaseError(f"cannot download {source}: {exc}") from exc
    return target


def verify(path: Path, digest: str) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    actual = h.hexdigest()
    if digest and actual != digest:
        raise ReleaseError(f"{path.name}: sha256 {actual} does not match the expected {digest}; "
                           "the file is damaged or not the release you meant")
    return actual


def unpack(path: Path, into: Path) -> Path:
    """Extract regular files and folders only (no links, devices, absolute or `..` paths), with
    plain modes; returns the release's root (its single top folder, if it has one)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            for member in members:
                target = into.joinpath(*PurePosixPath(member.name).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None          # a regular file (checked above)
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                target.chmod(0o755 if member.mode & stat.S_IXUSR else 0o644)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ReleaseError(f"{path.name}: not a readable .tar.gz ({exc})") from exc
    entries = list(into.iterdir())
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else into
    if not (root / "pyproject.toml").is_file() or not (root / "appliance").is_dir():
        raise ReleaseError(f"{path.name}: not an appliance release (no pyproject.toml and "
                           "appliance/ at its top)")
    return root


def _check_member(member: tarfile.TarInfo) -> None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith("/") or ".." in parts or not parts:
        raise ReleaseError(f"unsafe path in the tarball: {member.name!r}")
    if not (member.isfile() or member.isdir()) and member.type != tarfile.XGLTYPE:
        raise ReleaseError(f"the tarball holds a link or device ({member.name!r}); refused")


def _git(repo: Path, *args: str, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> str:
    where = [] if cwd is not None else ["-C", str(repo)]
    done = subprocess.run(["git", *where, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **IDENTITY, **(env or {})}, check=False)
    if done.returncode:
        raise ReleaseError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def ensure_repository(repo: Path) -> None:
    """An install unpacked from a tarball has no .git: record its files as the current version."""
    if (repo / ".git").exists():
        return
    _git(repo, "init", "--quiet")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "the installed version (before the first upgrade)")


def commit_release(repo: Path, root: Path, message: str) -> str:
    """A commit on top of HEAD whose files are exactly the release's (not checked out yet)."""
    git_dir = _git(repo, "rev-parse", "--absolute-git-dir")
    with tempfile.TemporaryDirectory(prefix="appliance-index-") as tmp:
        env = {"GIT_DIR": git_dir, "GIT_WORK_TREE": str(root),
               "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "add", "-A", ".", env=env, cwd=root)
        tree = _git(repo, "write-tree", env=env, cwd=root)
    if tree == _git(repo, "rev-parse", "HEAD^{tree}"):
        return _git(repo, "rev-parse", "HEAD")           # the same files: nothing to do
    return _git(repo, "commit-tree", tree, "-p", "HEAD", "-m", message)


def import_tarball(repo: Path, source: str, sha256: str = "") -> str:
    """Fetch, verify and unpack `source`; returns the commit holding it."""
    digest = check_sha256(source, sha256)
    ensure_repository(repo)
    with tempfile.TemporaryDirectory(prefix="appliance-release-") as tmp:
        path = fetch(source, Path(tmp))
        actual = verify(path, digest)
        unpacked = Path(tmp) / "unpacked"
        unpacked.mkdir()
        root = unpack(path, unpacked)
        name = source.rstrip("/").rsplit("/", 1)[-1]
        return commit_release(repo, root, f"release {name}\n\nsha256 {actual}\n")
