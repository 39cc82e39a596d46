"""`appliance upgrade` in a temporary copy of this repository, offline: a new version whose
migration fails is rolled back (code and database); one that passes is kept; one that fails its
health check after the restart is rolled back too."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import socket
import sqlite3
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.ops import release, upgrade
from appliance.store import backup as backups
from appliance.store.db import Database
from tests.support.fixtures import write_ini

REPO = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


@pytest.fixture
def box(tmp_path: Path):
    """An installed checkout (a clone of this repo's HEAD) with a database holding a customer,
    and a source repository to upgrade from."""
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                      capture_output=True, check=False).returncode:
        pytest.skip("not a git checkout")
    installed, source = tmp_path / "installed", tmp_path / "source"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(installed)], check=True)
    subprocess.run(["git", "clone", "--quiet", str(installed), str(source)], check=True)
    ini = write_ini(tmp_path / "config.ini", None)
    db_path = tmp_path / "appliance.db"
    db = Database.open_sync(db_path)
    db.write_sync(lambda c: c.execute("INSERT INTO customers (phone) VALUES ('+15550000001')"))
    db.close()
    return installed, source, ini, db_path


def new_version(source: Path, migrations: dict[str, str]) -> str:
    folder = source / "appliance" / "store" / "migrations"
    for name, sql in migrations.items():
        (folder / name).write_text(sql)
    git(source, "add", "-A")
    git(source, "commit", "-qm", "new version")
    return git(source, "rev-parse", "HEAD")


GOOD = {"098_upgraded.sql": "CREATE TABLE upgraded_ok (x INTEGER);\n"}
BROKEN = {**GOOD, "099_broken.sql": "CREATE TABLE half (x INTEGER);\n"
                                    "INSERT INTO no_such_table VALUES (1);\n"}


def run_upgrade(installed: Path, ini: Path, source: Path) -> subprocess.CompletedProcess:
    return run_upgrade_args(installed, ini, str(source))


@pytest.mark.parametrize("kind", ["git", "tarball"])
def test_a_failing_migration_rolls_back_code_and_database(box, tmp_path, kind) -> None:
    installed, source, ini, db_path = box
    before = git(installed, "rev-parse", "HEAD")
    new_version(source, BROKEN)
    if kind == "git":
        done = run_upgrade(installed, ini, source)
    else:                                        # a release tarball, checked by its sha256
        tarball, digest = release_tarball(source, tmp_path / "appliance-next.tar.gz")
        done = run_upgrade_args(installed, ini, str(tarball), "--sha256", digest)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "migration failed" in done.stderr and "099_broken" in done.stderr
    assert "rolled back to" in done.stdout and "database restored" in done.stdout
    assert git(installed, "rev-parse", "HEAD") == before
    assert not (installed / "appliance/store/migrations/099_broken.sql").exists()
    assert "upgraded_ok" not in tables(db_path) and "half" not in tables(db_path)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 1
    conn.close()
    Database.open_sync(db_path).close()             # the old version still opens it
    names = [p.name for p in backups.list_backups(db_path.parent / "backups")]
    assert any("pre-upgrade" in n for n in names) and any("pre-migration" in n for n in names)


def test_a_good_version_is_kept_and_migrated(box) -> None:
    installed, source, ini, db_path = box
    new = new_version(source, GOOD)
    done = run_upgrade(installed, ini, source)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(installed, "rev-parse", "HEAD") == new
    assert "upgraded_ok" in tables(db_path)
    again = run_upgrade(installed, ini, source)
    assert again.returncode == 0 and "already at" in again.stdout


def test_a_failed_health_check_after_the_restart_rolls_back(box, tmp_path) -> None:
    installed, source, ini, db_path = box
    before = git(installed, "rev-parse", "HEAD")
    new_version(source, GOOD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]                    # nothing listens there afterwards
    started = tmp_path / "started"
    plan = upgrade.Plan(repo=installed, config=ini, database=db_path,
                        health_url=f"http://127.0.0.1:{closed}/healthz", source=str(source),
                        stop=("true",), start=(f"echo start >> {started}",),
                        health_timeout_s=2.0)
    outcome = upgrade.upgrade(plan)
    assert not outcome.ok and "health check" in outcome.error
    assert git(installed, "rev-parse", "HEAD") == before
    assert "upgraded_ok" not in tables(db_path)
    assert started.read_text().count("start") == 2     # the new version, then the old one
    assert any("ROLLBACK INCOMPLETE" in s for s in outcome.steps)  # the old one is down too


def test_local_changes_stop_an_upgrade_before_anything_happens(box) -> None:
    installed, source, ini, _ = box
    (installed / "README.md").write_text("edited on the box\n")
    new_version(source, GOOD)
    done = run_upgrade(installed, ini, source)
    assert done.returncode == 1 and "local changes" in done.stderr
    assert "nothing changed" in done.stderr


# --- release tarballs ---------------------------------------------------------------------------

def release_tarball(source: Path, out: Path) -> tuple[Path, str]:
    """What a release is: `git archive` of a commit under one top folder; and its sha256."""
    git(source, "archive", "--format=tar.gz", "--prefix=appliance-next/", "-o", str(out), "HEAD")
    return out, hashlib.sha256(out.read_bytes()).hexdigest()


def run_upgrade_args(installed: Path, ini: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([sys.executable, "-m", "appliance", "--config", str(ini), "upgrade",
                           *args, "--no-restart"], cwd=installed, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_tarball_from_a_url_is_checked_then_installed(box, tmp_path) -> None:
    installed, source, ini, db_path = box
    before = git(installed, "rev-parse", "HEAD")
    new_version(source, GOOD)
    tarball, digest = release_tarball(source, tmp_path / "appliance-next.tar.gz")
    with serving(tmp_path) as base:
        url = f"{base}/{tarball.name}"
        unsigned = run_upgrade_args(installed, ini, url)
        wrong = run_upgrade_args(installed, ini, url, "--sha256", "0" * 64)
        assert git(installed, "rev-parse", "HEAD") == before
        done = run_upgrade_args(installed, ini, url, "--sha256", digest)
    assert unsigned.returncode == 1 and "needs --sha256" in unsigned.stderr
    assert wrong.returncode == 1 and "does not match" in wrong.stderr
    assert "nothing changed" in wrong.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(installed, "rev-parse", "HEAD^") == before            # on top of the old version
    assert git(installed, "rev-parse", "HEAD^{tree}") == git(source, "rev-parse", "HEAD^{tree}")
    assert "upgraded_ok" in tables(db_path)
    assert not git(installed, "status", "--porcelain", "--untracked-files=no")


def test_an_install_from_a_tarball_can_be_upgraded_and_rolled_back(box, tmp_path) -> None:
    """No .git at all (unpacked from a release): its files become the version to go back to."""
    _, source, ini, db_path = box
    old, _ = release_tarball(source, tmp_path / "old.tar.gz")
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["tar", "-C", str(plain), "--strip-components=1", "-xzf", str(old)], check=True)
    new_version(source, BROKEN)
    broken, _ = release_tarball(source, tmp_path / "broken.tar.gz")
    done = run_upgrade_args(plain, ini, str(broken))
    assert done.returncode == 1 and "rolled back to" in done.stdout, done.stdout + done.stderr
    assert (plain / ".git").is_dir() and not (plain / "appliance/store/migrations/099_broken.sql").exists()
    assert "half" not in tables(db_path)


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/evil", "link"])
def test_a_tarball_with_unsafe_members_is_refused(tmp_path, member) -> None:
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "out").mkdir()
    with pytest.raises(release.ReleaseError, match="unsafe path|link or device"):
        release.unpack(bad, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir()) and not (tmp_path / "escape.txt").exists()


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """A loopback HTTP server for `folder` (where a release would be downloaded from)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
