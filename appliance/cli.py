"""The `appliance` command: serve, doctor, models, and the commands other modules register.

Each feature module exports `register(subparsers)`, adding its command with
`handler(args, settings) -> int`; this file only parses, loads the settings once and dispatches.
Commands that must work without a valid configuration (doctor, models) set `needs_settings=False`;
offline ones that need no Twilio settings (kb) set `needs_twilio=False`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import ConfigError, Settings, load_settings

def default_config_path() -> str:
    return os.environ.get("APPLIANCE_CONFIG", "config.ini")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="config file (default: $APPLIANCE_CONFIG or ./config.ini)")
    parser = argparse.ArgumentParser(prog="appliance", parents=[common],
                                     description="A phone and messaging receptionist on your box.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.common = common  # type: ignore[attr-defined]  # for register() functions

    serve = sub.add_parser("serve", parents=[common], help="run the server")
    serve.set_defaults(handler=_serve)

    doctor = sub.add_parser("doctor", parents=[common],
                            help="check this box and the configuration, and say how to fix things")
    doctor.set_defaults(handler=_doctor, needs_settings=False)

    models = sub.add_parser("models", parents=[common], help="list, download or verify models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    for name, helptext in (("list", "models in the manifest and whether they are here"),
                           ("download", "download missing models (resumable, verified)"),
                           ("verify", "check sizes and sha256 of downloaded models")):
        p = msub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("names", nargs="*", help="model names (default: the default set)")
        p.set_defaults(handler=_models, needs_settings=False)

    from .actions import commands as customer_commands
    from . import simulate_cli as simulate
    from .admin import commands as admin_commands
    from .conversation import commands as chat_commands
    from .kb import commands as kb_commands
    from .ops import commands as ops_commands

    for module in (kb_commands, chat_commands, simulate, customer_commands, ops_commands,
                   admin_commands):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = getattr(args, "config", None) or default_config_path()
    args.config = config
    settings: Settings | None = None
    if getattr(args, "needs_settings", True):
        try:
            settings = load_settings(config, require_twilio=getattr(args, "needs_twilio", True))
        except ConfigError as exc:
            print(f"appliance: {exc}", file=sys.stderr)
            print("appliance: nothing was started. `appliance doctor` checks the whole set-up.",
                  file=sys.stderr)
            return 2
    return int(args.handler(args, settings) or 0)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from .server import run_server

    return run_server(settings)


def _doctor(args: argparse.Namespace, settings: Settings | None) -> int:
    from .doctor import run_doctor

    return run_doctor(Path(args.config))


def _models(args: argparse.Namespace, settings: Settings | None) -> int:
    from . import models_manifest as mm

    models_dir = _models_dir(args.config)
    entries = mm.load_manifest()
    chosen = [e for e in entries if (e.name in args.names or set(e.aliases) & set(args.names))
              ] if args.names else [e for e in entries if e.default]
    unknown = set(args.names) - {n for e in entries for n in (e.name, *e.aliases)}
    if unknown:
        print(f"unknown model(s): {', '.join(sorted(unknown))}; see `appliance models list`",
              file=sys.stderr)
        return 2
    if args.models_command == "list":
        for e in entries:
            problem = mm.status(e, models_dir)
            state = "ready" if problem is None else problem
            mark = "*" if e.default else " "
            print(f"{mark} {e.name:32} {e.kind:9} {e.size() / 1e6:8.1f} MB  {state}")
            print(f"    for: {e.needed_for}")
        print("(* = installed by default)")
        return 0
    if args.models_command == "verify":
        bad = 0
        for e in chosen:
            for f in e.files:
                problem = mm.verify_file(models_dir, f)
                note = "" if f.sha256 else " (size only: no sha256 in the manifest)"
                print(f"{'ok ' if problem is None else 'BAD'} {f.path}{note}"
                      f"{'' if problem is None else ': ' + problem}")
                bad += problem is not None
        return 1 if bad else 0
    print(f"downloading into {models_dir}", file=sys.stderr)
    results = mm.download(chosen, models_dir, mm.ProgressBar())
    failed = {name: why for name, why in results.items() if why}
    for entry in chosen:
        if entry.name in failed:
            print(f"MISSING {entry.name}: {failed[entry.name]}\n"
                  f"        without it: {entry.needed_for}", file=sys.stderr)
        else:
            print(f"ready   {entry.name}", file=sys.stderr)
    if failed:
        print("Re-run `appliance models download` when the network is back; downloads resume.",
              file=sys.stderr)
    return 1 if failed else 0


def _models_dir(config: str) -> Path:
    """The models directory from config.ini if readable, else ./models (no full validation)."""
    import configparser

    path = Path(config)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read(path, encoding="utf-8")
        value = parser.get("models", "directory", fallback="models")
    except configparser.Error:
        value = "models"
    candidate = Path(value)
    return candidate if candidate.is_absolute() else path.resolve().parent / candidate


if __name__ == "__main__":
    sys.exit(main())
