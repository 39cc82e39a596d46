"""`appliance upgrade [SOURCE]`: a new version from git, with the database migrated and a way back.

1. the checkout must be clean; the current commit and a backup of the database are kept;
2. the new commit comes from the checkout's upstream (`git fetch` + fast-forward), or from SOURCE:
   any git source `git fetch` takes (a path, a URL, a bundle file: works offline), or a release
   tarball (a .tar.gz path or URL, checked against --sha256; see release.py);
3. the venv is re-installed when pyproject.toml changed (`pip install -e .`);
4. the service is stopped, the new code migrates the database (in a child process, as the owner
   of the data directory), the service is started and /healthz must say 200 within a limit;
5. on any failure after 2: the service is stopped, the previous commit checked out (and
   re-installed), the database restored from the backup of step 1, the service started again.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..store import backup as backups
from . import release

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


class UpgradeError(Exception):
    pass


@dataclass(frozen=True)
class Plan:
    repo: Path
    config: Path
    database: Path
    health_url: str
    source: str = ""                          # "" = the checkout's upstream
    sha256: str = ""                          # a tarball SOURCE's expected digest
    stop: tuple[str, ...] = ()                # commands; () = nothing to stop/start
    start: tuple[str, ...] = ()
    health_timeout_s: float = 120.0
    python: str = sys.executable


@dataclass
class Outcome:
    ok: bool
    previous: str
    new: str = ""
    steps: list[str] = field(default_factory=list)
    error: str = ""


def systemd_commands(unit: str = "appliance.service") -> tuple[tuple[str, ...], tuple[str, ...]]:
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        return (f"systemctl stop {unit}",), (f"systemctl start {unit}",)
    return (), ()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise UpgradeError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def fetch_new(plan: Plan) -> str:
    """The commit to upgrade to (fetched, not yet checked out)."""
    if plan.source and release.is_tarball(plan.source):
        try:
            return release.import_tarball(plan.repo, plan.source, plan.sha256)
        except release.ReleaseError as exc:
            raise UpgradeError(str(exc)) from exc
    if plan.source:
        git(plan.repo, "fetch", "--quiet", plan.source, "HEAD")
        return git(plan.repo, "rev-parse", "FETCH_HEAD")
    git(plan.repo, "fetch", "--quiet")
    return git(plan.repo, "rev-parse", "@{upstream}")


def run_commands(commands: tuple[str, ...]) -> None:
    for command in commands:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
        if done.returncode:
            raise UpgradeError(f"`{command}` failed: {done.stderr.strip()[-300:]}")


def reinstall_if_needed(plan: Plan, old: str, new: str) -> bool:
    if not git(plan.repo, "diff", "--name-only", old, new, "--", "pyproject.toml"):
        return False
    done = subprocess.run([plan.python, "-m", "pip", "install", "--quiet", "-e", str(plan.repo)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise UpgradeError(f"pip install failed: {done.stderr.strip()[-500:]}")
    return True


def migrate(plan: Plan) -> None:
    """Open the database with the checked-out code: applies (and backs up before) migrations."""
    command = [plan.python, "-c", "import sys; from appliance.store.db import Database; "
               "Database.open_sync(sys.argv[1]).close()", str(plan.database)]
    if os.geteuid() == 0:
        owner = pwd.getpwuid(plan.database.parent.stat().st_uid).pw_name
        if owner != "root":
            command = ["runuser", "-u", owner, "--", *command]
    env = {**os.environ, "PYTHONPATH": str(plan.repo)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=plan.repo, env=env,
                          check=False)
    if done.returncode:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise UpgradeError(f"migration failed: {lines[-1] if lines else done.returncode}")


def wait_healthy(url: str, timeout_s: float) -> None:
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(1.0)
    raise UpgradeError(f"health check {url} failed after {timeout_s:.0f} s: {last}")


def upgrade(plan: Plan) -> Outcome:
    if plan.source and release.is_tarball(plan.source):
        try:
            release.ensure_repository(plan.repo)
        except release.ReleaseError as exc:
            raise UpgradeError(str(exc)) from exc
    if git(plan.repo, "status", "--porcelain", "--untracked-files=no"):
        raise UpgradeError(f"{plan.repo} has local changes; commit or discard them first")
    outcome = Outcome(ok=False, previous=git(plan.repo, "rev-parse", "HEAD"))
    outcome.new = fetch_new(plan)
    if outcome.new == outcome.previous:
        outcome.ok, outcome.steps = True, ["already at " + outcome.new[:12]]
        return outcome
    saved = (backups.backup(plan.database, label="pre-upgrade")
             if plan.database.is_file() else None)
    outcome.steps.append(f"backup {saved}" if saved else "no database yet")
    try:
        _apply(plan, outcome)
    except UpgradeError as exc:
        outcome.error = str(exc)
        log.error("upgrade to %s failed: %s; rolling back", outcome.new[:12], exc)
        _roll_back(plan, outcome, saved)
        return outcome
    outcome.ok = True
    return outcome


def _apply(plan: Plan, outcome: Outcome) -> None:
    git(plan.repo, "reset", "--quiet", "--hard", outcome.new)
    outcome.steps.append(f"checked out {outcome.new[:12]}")
    if reinstall_if_needed(plan, outcome.previous, outcome.new):
        outcome.steps.append("re-installed (pyproject.toml changed)")
    run_commands(plan.stop)
    migrate(plan)
    outcome.steps.append("database migrated")
    if plan.start:
        run_commands(plan.start)
        wait_healthy(plan.health_url, plan.health_timeout_s)
        outcome.steps.append("restarted and healthy")


def _roll_back(plan: Plan, outcome: Outcome, saved: Path | None) -> None:
    steps = outcome.steps
    try:
        run_commands(plan.stop)
        git(plan.repo, "reset", "--quiet", "--hard", outcome.previous)
        steps.append(f"rolled back to {outcome.previous[:12]}")
        if reinstall_if_needed(plan, outcome.new, outcome.previous):
            steps.append("re-installed the previous version")
        if saved is not None:
            backups.restore(saved, plan.database)
            steps.append(f"database restored from {saved.name}")
        run_commands(plan.start)
        if plan.start:
            wait_healthy(plan.health_url, plan.health_timeout_s)
            steps.append("previous version running and healthy")
    except (UpgradeError, backups.BackupError, OSError) as exc:
        steps.append(f"ROLLBACK INCOMPLETE: {exc}")
