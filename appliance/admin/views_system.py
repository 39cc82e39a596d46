"""Health (components, models, versions, disk, last errors) and Settings (read-only, secrets
hidden)."""

from __future__ import annotations

import dataclasses
import platform
import sqlite3
import time
from importlib import metadata
from pathlib import Path

from aiohttp import web

from . import problems
from .context import ctx_of
from .html import Markup, badge, join, kv, t, table
from .layout import page

PACKAGES = ("appliance", "aiohttp", "faster-whisper", "ctranslate2", "piper-tts",
            "llama-cpp-python", "google-genai", "sqlite-vec", "twilio", "onnxruntime", "numpy")
SECRET_NAMES = {"auth_token", "api_key", "password", "token", "secret"}
SECRET_ENDINGS = ("_token", "_password", "_api_key", "_secret")


def versions() -> list[tuple[str, str]]:
    out = [("python", platform.python_version()), ("sqlite", sqlite3.sqlite_version)]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return out


def _ok(flag: bool) -> Markup:
    return badge("ok", "ok") if flag else badge("problem", "bad")


async def health(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    rt = ctx.services
    h = rt.health()
    components = table(("Component", "State", "Detail", "Load time"), [
        (name, _ok(c["ok"]), c["detail"], f"{c['load_ms']:.0f} ms")
        for name, c in h["components"].items()])
    models = table(("Setting", "Model", "Present"), [
        (ref.setting, str(ref.path), _ok(ref.present)) for ref in rt.settings.model_refs()])
    llm = h["llm"]
    gemini = llm.get("gemini", {}) if isinstance(llm, dict) else {}
    disk = problems.disk_use(ctx.db.path)
    disk_html = kv([("Folder", disk.path), ("Free", f"{disk.free / 1e9:.1f} GB"),
                    ("Total", f"{disk.total / 1e9:.1f} GB"),
                    ("State", badge("low", "bad") if disk.low else badge("ok", "ok"))]) \
        if disk is not None else t('<p class="problem">Disk usage unknown.</p>')
    errors = table(("When", "Stage", "Message"), [
        (time.strftime("%d %b %H:%M:%S", time.localtime(e.at)), e.stage, e.message)
        for e in ctx.errors.recent], empty="No errors since the server started.")
    migrations = await ctx.db.fetchall("SELECT number, name, applied_at FROM schema_migrations "
                                       "ORDER BY number")
    issues = await problems.current(ctx)
    body = t('{state}<h2>Components</h2>{comp}<h2>Language model</h2>{llm}<h2>Models</h2>{mod}'
             '<h2>Disk</h2>{disk}<h2>Last errors</h2>{err}<h2>Versions</h2>{ver}'
             '<h2>Database</h2>{db}',
             state=join([t('<p class="fine">Ready to take calls.</p>') if rt.can_take_calls()
                         else t('<p class="problem">NOT ready to take calls.</p>'),
                         join(t('<p class="problem">{p}</p>', p=p) for p in issues)]),
             comp=components,
             llm=kv([("Mode", llm.get("mode", "none")),
                     ("Gemini", "configured" if gemini.get("configured") else "not configured"),
                     ("Gemini healthy", str(gemini.get("healthy", ""))),
                     ("Last Gemini error", gemini.get("last_error") or ""),
                     ("Local model", str((llm.get("local") or {}).get("model") or "not loaded")),
                     ("Active calls", h["active_calls"])]),
             mod=models, disk=disk_html, err=errors, ver=kv(versions()),
             db=kv([("File", str(ctx.db.path))] + [
                 (f"migration {m['number']:03d}", f"{m['name']} ({m['applied_at']})")
                 for m in migrations]))
    return page(request, "Health", body, "health")


def _is_secret(name: str, f: dataclasses.Field | None) -> bool:
    return (f is not None and not f.repr) or name in SECRET_NAMES or name.endswith(
        SECRET_ENDINGS)


def flatten(obj: object, prefix: str = "") -> list[tuple[str, str]]:
    """Every setting as (dotted name, shown value); secrets as 'set' / 'not set'."""
    out: list[tuple[str, str]] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if hasattr(value, "setting") and hasattr(value, "path"):       # a ModelRef
            out.append((name, str(value.path)))
        elif _is_secret(f.name, f) and isinstance(value, str):
            out.append((name, "(secret, set)" if value else "(secret, not set)"))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.extend(flatten(value, name + "."))
        elif isinstance(value, dict):
            out.extend((f"{name}.{k or 'default'}", str(getattr(v, "path", v)))
                       for k, v in value.items())
        else:
            out.append((name, str(getattr(value, "path", value))
                        if not isinstance(value, (tuple, list)) else ", ".join(map(str, value))))
    return out


async def settings(request: web.Request) -> web.Response:
    s = ctx_of(request).services.settings
    rows = [(k, v) for k, v in flatten(s) if k not in ("path", "root")]
    body = t('<p class="heard">Read-only. Change {p} on the box and restart the service; '
             'secrets live in the secrets file and are never shown here.</p>{x}',
             p=str(Path(s.path)), x=table(("Setting", "Value"), rows))
    return page(request, "Settings", body, "settings")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/settings", settings)
