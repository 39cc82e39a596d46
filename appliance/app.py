"""The aiohttp application: /healthz plus the routes of each channel, on the composed Services."""

from __future__ import annotations

from aiohttp import web

from . import admin
from .actions import routes as calendar_routes
from .call import stream as media_stream_routes
from .call import voice as voice_routes
from .call import clips as clip_routes
from .call import gather_hooks as gather_routes
from .call import status as status_routes
from .call.clips import ClipSigner, ClipStore
from .call.gather import GatherTurns
from .call.gather_hints import ProductHints
from .call.gather_hooks import GatherDeps, GatherWebhooks
from .call.gather_voice import GatherVoice
from .call.status import CallStatusHook
from .call.stream import MediaStreamEndpoint
from .call.voice import VoiceWebhooks, fallback_twiml, public_url
from .compose import Health, Services
from .messaging import webhooks as messaging_routes
from .actions.handover import record_dial_result
from .actions.summary import after_call, after_dial
from .call import voicemail as voicemail_routes
from .call.voicemail import OnVoicemail, Voicemail
from .actions.services import ActionServices
from .call.voice import DialResult
from .telephony.guard import TwilioGuard
from .telephony.replay import ReplayCache
from .ops import tunnel as tunnel_probe_routes

SERVICES = web.AppKey("services", Services)
GATHER = web.AppKey("gather", GatherTurns)
CLIPS = web.AppKey("clips", ClipStore)


def build_gather(app: web.Application, s: Services) -> GatherWebhooks:
    """The <Gather> mode: its replies, their <Play> clips, and the webhooks."""
    settings = s.settings
    app[CLIPS] = clips = ClipStore(ClipSigner())
    voice = GatherVoice.from_settings(settings, s.speech)
    app[GATHER] = turns = GatherTurns(s.engine, clips, voice.reply, settings.business.language)
    clip_routes.add_routes(app, clips)

    async def close_clips(_app: web.Application) -> None:
        await clips.close()
    app.on_cleanup.append(close_clips)
    deps = GatherDeps(settings, TwilioGuard(settings), turns, clips, voice, ProductHints(s.db),
                      url=lambda path: public_url(settings, path),
                      fallback=lambda: fallback_twiml(settings))
    return GatherWebhooks(deps, s.call_store())


def build_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    s = services
    gather = build_gather(app, s)
    voicemail = Voicemail(s.settings, s.db, s.stt, s.settings.phrases, _summary(s.actions))
    voicemail_routes.add_routes(app, voicemail)
    voice = VoiceWebhooks(s.settings, s.call_store(), s.calls, gather, s.problems,
                          dial_result=_dial_result(s.actions), voicemail=voicemail)
    voice_routes.add_routes(app, voice)
    gather_routes.add_routes(app, gather)
    status_routes.add_routes(app, CallStatusHook(
        TwilioGuard(s.settings, ReplayCache()), gather.store_or_503, gather.turns.end,
        s.after_call_status if s.actions is not None else None))
    media_stream_routes.add_routes(app, MediaStreamEndpoint(
        s.call_deps(), s.calls, TwilioGuard(s.settings), s.problems))
    messaging_routes.add_routes(app, s.messaging)
    calendar_routes.add_routes(app, s.settings, s.db, s.actions)
    tunnel_probe_routes.add_routes(app, s.settings)
    admin.setup(app, s)
    return app


# cloudflared connects from loopback too: a request it forwarded carries one of these
FORWARDED_HEADERS = ("X-Forwarded-For", "Cf-Connecting-Ip", "Forwarded", "X-Real-Ip")
LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def is_local(request: web.Request) -> bool:
    """True for a request made on this box (doctor, bench), not one the tunnel forwarded."""
    return request.remote in LOOPBACK and \
        not any(h in request.headers for h in FORWARDED_HEADERS)


def health_details(services: Services) -> Health:
    """Everything /healthz knows (paths, errors, models, live calls): for loopback callers
    and for the dashboard behind its login."""
    return services.health()


async def healthz(request: web.Request) -> web.Response:
    """HTTP 200 only when the appliance can take a call. The public sees {"ready": bool};
    the details go to local callers only."""
    health = health_details(request.app[SERVICES])
    body = ({**health, "gather_pending": request.app[GATHER].pending_count(),
             "gather": gather_health(request.app)}
            if is_local(request) else {"ready": health["ready"]})
    return web.json_response(body, status=200 if health["ready"] else 503)


def gather_health(app: web.Application) -> Health:
    """<Gather> calls now: replies in progress, clips not served, speculative replies."""
    stats = app[GATHER].stats
    return {"pending": app[GATHER].pending_count(), "clips": app[CLIPS].pending(),
            "speculative": {"starts": stats.speculative_starts,
                            "released": stats.speculative_released,
                            "cancelled": stats.speculative_cancelled}}


def _summary(actions: ActionServices | None) -> OnVoicemail | None:
    """A voicemail was attached: the call's summary goes now (actions/summary.py)."""
    if actions is None:
        return None

    async def send(call_id: int) -> object:
        return await after_call(actions, call_id, final=True)
    return send


def _dial_result(actions: ActionServices | None) -> DialResult | None:
    if actions is None:
        return None

    async def record(call_id: int | None, customer_id: int | None, status: str) -> None:
        answered = await record_dial_result(actions, call_id, customer_id, status)
        await after_dial(actions, call_id, answered)     # answered: the summary goes now
    return record
