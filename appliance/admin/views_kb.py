"""Knowledge base: the files in the kb folder, upload / replace / delete one, re-index with
progress, and a search box showing the passages the bot would get, with their scores."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from ..kb.index import scan
from ..kb.search import KnowledgeBase
from ..kb.sources import MAX_FILE_BYTES
from .context import ctx_of, session_of
from .html import Markup, csrf_field, join, local_time, t, table
from .kbjobs import UploadRefused, check_upload, safe_relative, write_atomically
from .layout import page


def _kb(request: web.Request) -> KnowledgeBase:
    rt = ctx_of(request).services
    return rt.kb if isinstance(rt.kb, KnowledgeBase) else KnowledgeBase(ctx_of(request).db,
                                                                          rt.embedder)


async def _search(request: web.Request, q: str) -> Markup:
    if not q.strip():
        return Markup("")
    hits = await asyncio.to_thread(_kb(request).search, q, 8)
    if not hits:
        return t('<p class="empty">No passage is close enough: the bot would say it does not '
                 'know.</p>')
    return join(t('<div class="passage"><div class="src">{cite} - score {s:.4f}{sim} - '
                  'words found {cov:.0%} - by {by}</div><b>{title}</b><div>{text}</div></div>',
                  cite=h.citation, s=h.score, cov=h.coverage, by=", ".join(h.found_by),
                  sim=f" - similarity {h.similarity:.2f}" if h.similarity is not None else "",
                  title=h.title, text=h.text) for h in hits)


async def kb_page(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    token = session_of(request).csrf_token
    directory = ctx.kb_jobs.directory
    present = await asyncio.to_thread(scan, directory) if directory.is_dir() else []
    indexed = {r["path"]: r for r in await ctx.db.fetchall("SELECT * FROM kb_files")}
    rows = []
    for rel in sorted(set(present) | set(indexed)):
        r = indexed.get(rel)
        state = ("deleted, still indexed" if rel not in present else
                 f"{r['passages']} passages" if r is not None else "not indexed yet")
        delete = t('<form method="post" action="/admin/kb/delete" data-confirm="Delete {n}?">'
                   '{f}<input type="hidden" name="name" value="{n}"><button type="submit" '
                   'class="secondary">Delete</button></form>', n=rel, f=csrf_field(token)) \
            if rel in present and "/" not in rel else ""
        rows.append((rel, state, r["warnings"] if r is not None else "",
                     local_time(r["indexed_at"], ctx.tz) if r is not None else "", delete))
    q = request.query.get("q", "")[:300]
    message = request.query.get("msg", "")
    kind = "problem" if request.query.get("bad") else "notice"
    body = t('{msg}<h2>Search</h2><form method="get" class="row"><label>Question '
             '<input type="search" name="q" value="{q}" size="40"></label>'
             '<button type="submit">Search</button></form>{hits}'
             '<h2>Files</h2>{files}'
             '<h2>Upload or replace a file</h2><p class="heard">CSV, TSV, Markdown or text, at '
             'most {mb} MB. A file with the same name is replaced.</p>'
             '<form method="post" action="/admin/kb/upload?csrf={tok}" '
             'enctype="multipart/form-data" class="row"><input type="file" name="file" '
             'required><button type="submit">Upload</button></form>'
             '<h2>Re-index</h2><div id="kb-progress"><progress max="1" value="0"></progress>'
             '<p class="status heard">{state}</p></div>'
             '<form method="post" action="/admin/kb/reindex">{f}<button type="submit">'
             'Re-index now</button></form>',
             msg=t('<p class="{k}">{m}</p>', k=kind, m=message) if message else "",
             q=q, hits=await _search(request, q),
             files=table(("File", "Indexed", "Warnings", "When", ""), rows,
                         empty=f"No files in {directory}."),
             mb=MAX_FILE_BYTES // 1_000_000, tok=token, state=ctx.kb_jobs.state.message,
             f=csrf_field(token))
    return page(request, "Knowledge base", body, "kb")


def _back(message: str, bad: bool = False) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/admin/kb?msg={quote(message)}" + ("&bad=1" if bad else ""))


async def _read_upload(request: web.Request) -> tuple[str, bytes]:
    reader = await request.multipart()
    async for part in reader:
        if getattr(part, "name", None) != "file":
            continue
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data.extend(chunk)
            if len(data) > MAX_FILE_BYTES:
                raise UploadRefused(f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB")
        return part.filename or "", bytes(data)
    raise UploadRefused("no file was chosen")


async def upload(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    try:
        name, data = await _read_upload(request)
        rel, passages = check_upload(name, data)
    except UploadRefused as exc:
        raise _back(f"Upload refused: {exc}. The knowledge base was not changed.", bad=True) \
            from None
    replaced = (ctx.kb_jobs.directory / rel).exists()
    await asyncio.to_thread(write_atomically, ctx.kb_jobs.directory, rel, data)
    started = ctx.kb_jobs.start_reindex()
    raise _back(f"{rel} {'replaced' if replaced else 'added'} ({passages} passages)."
                + (" Re-indexing..." if started else " A re-index is running; run it again "
                   "when it ends."))


async def delete(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    form = await request.post()
    try:
        rel = safe_relative(str(form.get("name", "")))
    except UploadRefused as exc:
        raise _back(str(exc), bad=True) from None
    path = ctx.kb_jobs.directory / rel
    if not path.is_file():
        raise _back(f"{rel} is not in the knowledge-base folder", bad=True)
    await asyncio.to_thread(path.unlink)
    ctx.kb_jobs.start_reindex()
    raise _back(f"{rel} deleted. Re-indexing...")


async def reindex(request: web.Request) -> web.Response:
    started = ctx_of(request).kb_jobs.start_reindex()
    raise _back("Re-indexing..." if started else "A re-index is already running.")


async def progress(request: web.Request) -> web.Response:
    return web.json_response(ctx_of(request).kb_jobs.state.as_json())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/kb", kb_page)
    app.router.add_post("/kb/upload", upload)
    app.router.add_post("/kb/delete", delete)
    app.router.add_post("/kb/reindex", reindex)
    app.router.add_get("/api/kb/progress", progress)
