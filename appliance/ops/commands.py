"""`appliance backup | restore FILE | upgrade [SOURCE] | tunnel`: running the box."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from ..config import Settings
from ..store import backup as backups
from . import tunnel, upgrade


def register(subparsers: argparse._SubParsersAction) -> None:
    common = getattr(subparsers, "common", None)
    parents = [common] if common is not None else []

    p = subparsers.add_parser("backup", parents=parents,
                              help="an online copy of the database (the service keeps running)")
    p.add_argument("--dir", type=Path, help="where (default: backups/ beside the database)")
    p.add_argument("--keep", type=int, default=backups.DEFAULT_KEEP,
                   help="keep the newest N backups (default: %(default)s)")
    p.set_defaults(handler=run_backup)

    p = subparsers.add_parser("restore", parents=parents,
                              help="replace the database with a backup (stop the service first)")
    p.add_argument("file", type=Path)
    p.add_argument("--force", action="store_true", help="even if the server seems to be running")
    p.set_defaults(handler=run_restore)

    p = subparsers.add_parser("upgrade", parents=parents,
                              help="install a new version (git or a release tarball); rolls back "
                                   "if it fails")
    p.add_argument("source", nargs="?", default="",
                   help="a git path, URL or bundle, or a release .tar.gz (path or URL; "
                        "default: the checkout's upstream)")
    p.add_argument("--sha256", default="", metavar="HEX",
                   help="the tarball's expected sha256 (required for a URL)")
    p.add_argument("--no-restart", action="store_true", help="do not stop/start the service")
    p.add_argument("--health-timeout", type=float, default=120.0, metavar="S")
    p.set_defaults(handler=run_upgrade)

    p = subparsers.add_parser("tunnel", parents=parents,
                              help="write cloudflared's config.yml for the named tunnel")
    p.add_argument("--tunnel", required=True, help="the named tunnel's UUID or name")
    p.add_argument("--credentials-file", type=Path, required=True,
                   help="the JSON file `cloudflared tunnel create` wrote")
    p.add_argument("--out", type=Path, default=None,
                   help="default: /etc/cloudflared/config.yml as root, else ~/.cloudflared/")
    p.add_argument("--check", action="store_true",
                   help="then check that the public URL reaches this (running) appliance")
    p.set_defaults(handler=run_tunnel)


def run_backup(args: argparse.Namespace, settings: Settings) -> int:
    try:
        path = backups.backup(settings.storage.database, args.dir, keep=args.keep)
    except (backups.BackupError, OSError) as exc:
        print(f"appliance backup: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _listening(settings: Settings) -> bool:
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "") else settings.server.host
    try:
        socket.create_connection((host, settings.server.port), timeout=1).close()
    except OSError:
        return False
    return True


def run_restore(args: argparse.Namespace, settings: Settings) -> int:
    if _listening(settings) and not args.force:
        print("appliance restore: the server is running; stop it first "
              "(sudo systemctl stop appliance), or pass --force", file=sys.stderr)
        return 1
    try:
        safety = backups.restore(args.file, settings.storage.database)
    except (backups.BackupError, OSError) as exc:
        print(f"appliance restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {settings.storage.database} from {args.file}")
    if safety:
        print(f"the database it replaced is kept in {safety}")
    return 0


def run_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    stop, start = ((), ()) if args.no_restart else upgrade.systemd_commands()
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "") else settings.server.host
    plan = upgrade.Plan(repo=upgrade.REPO, config=settings.path,
                        database=settings.storage.database,
                        health_url=f"http://{host}:{settings.server.port}/healthz",
                        source=args.source, sha256=args.sha256, stop=stop, start=start,
                        health_timeout_s=args.health_timeout)
    try:
        outcome = upgrade.upgrade(plan)
    except (upgrade.UpgradeError, backups.BackupError) as exc:
        print(f"appliance upgrade: nothing changed: {exc}", file=sys.stderr)
        return 1
    for step in outcome.steps:
        print(f"  {step}")
    if outcome.ok:
        print(f"upgraded {outcome.previous[:12]} -> {outcome.new[:12]}")
        return 0
    print(f"appliance upgrade FAILED: {outcome.error}", file=sys.stderr)
    return 1


def run_tunnel(args: argparse.Namespace, settings: Settings) -> int:
    out = args.out or (Path("/etc/cloudflared/config.yml") if os.geteuid() == 0
                       else Path.home() / ".cloudflared" / "config.yml")
    try:
        cfg = tunnel.tunnel_config(settings, args.tunnel, args.credentials_file.resolve())
    except ValueError as exc:
        print(f"appliance tunnel: {exc}", file=sys.stderr)
        return 2
    tunnel.write_config(cfg, out)
    print(f"wrote {out} (ingress: the appliance's routes on {cfg.hostname}; all else 404)")
    print(f"next: cloudflared tunnel route dns {args.tunnel} {cfg.hostname}\n"
          f"      cloudflared tunnel --config {out} ingress validate\n"
          f"      sudo cloudflared --config {out} service install")
    if args.check:
        result = tunnel.probe_public_url(settings)
        print(("ok   " if result.ok else "FAIL ") + result.detail)
        return 0 if result.ok else 1
    return 0
