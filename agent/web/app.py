"""The dashboard's routes: pages (Jinja2), JSON endpoints, a server-sent event stream, and the
two writes (intents, health labels) that need the token."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from agent.web.access import COOKIE, HEADER, may_read, may_write
from agent.web.intents import IntentWaiters
from agent.web.views import Views, apply_label

if TYPE_CHECKING:
    from agent.service.runtime import Agent

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PAGES = {"overview": "Overview", "series": "Series", "decisions": "Decisions",
         "health": "Health", "intents": "Intents", "peers": "Peers and learning"}
STREAM_EVERY = 1.0  # seconds between two server-sent events
INTENT_WAIT = 60.0  # the llm engine on a small board can take this long

Handler = Callable[[Request], Awaitable[Response]]


def build_app(agent: Agent, token: str, loopback: bool, views: Views,
              waiters: IntentWaiters) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def given(request: Request) -> str | None:
        return request.headers.get(HEADER) or request.cookies.get(COOKIE)

    def reader(fn: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if not may_read(loopback, given(request), token):
                return JSONResponse({"error": "token required"}, status_code=401)
            return await fn(request)
        return guarded

    def writer(fn: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            # the header only, never the cookie alone: another site's form cannot act
            if not may_write(request.headers.get(HEADER), token):
                return JSONResponse({"error": "token required to act"}, status_code=403)
            return await fn(request)
        return guarded

    async def page(request: Request) -> Response:
        name = request.path_params.get("page", "overview")
        if name not in PAGES:
            return Response("no such page", status_code=404)
        offered = request.query_params.get("token")
        if offered is not None:  # a link with the token (the demo prints one): keep it, once
            response: Response = RedirectResponse(request.url.path, status_code=303)
            if may_write(offered, token):
                response.set_cookie(COOKIE, offered, httponly=False, samesite="strict",
                                    max_age=365 * 86400)
            return response
        return templates.TemplateResponse(request, "page.html", {
            "page": name, "pages": PAGES, "agent_id": agent.id,
            "nonce": secrets.token_hex(8)})

    async def access(request: Request) -> Response:
        g = given(request)
        return JSONResponse({"read": may_read(loopback, g, token),
                             "write": may_write(g, token), "loopback": loopback})

    async def overview(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(views.cached, ("overview",), views.overview))

    async def series_list(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(views.cached, ("series",), views.series_list))

    async def series(request: Request) -> Response:
        p, q = request.path_params, request.query_params
        window = _number(q.get("window"), 600.0)
        key = ("series", p["device"], p["quantity"], window)
        return JSONResponse(await run_in_threadpool(
            views.cached, key, lambda: views.series(p["device"], p["quantity"], window)))

    async def decisions(request: Request) -> Response:
        q = request.query_params
        filters = {k: q.get(k, "") for k in ("policy", "action", "verdict", "engine", "source")}
        limit = int(_number(q.get("limit"), 100))

        def read() -> list[dict[str, Any]]:  # a new decision is never hidden by the cache
            key = ("decisions", views.audit_last(), limit, *sorted(filters.items()))
            return views.cached(key, lambda: views.decisions(limit, **filters))

        return JSONResponse(await run_in_threadpool(read))

    async def health(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(views.health))

    async def peers(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(views.peers))

    async def stream(request: Request) -> Response:
        return StreamingResponse(_events(request, views), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def intent(request: Request) -> Response:
        body = await _json(request)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return JSONResponse({"error": "give {\"text\": \"...\"}"}, status_code=400)
        reply = await waiters.ask(text.strip(), INTENT_WAIT)
        return JSONResponse(reply, status_code=200 if reply.get("id") else 503)

    async def label(request: Request) -> Response:
        p = request.path_params
        if p["label"] not in ("confirm", "dismiss"):
            return JSONResponse({"error": "label is confirm or dismiss"}, status_code=400)
        result = await run_in_threadpool(apply_label, agent, p["kind"], p["key"], p["label"])
        return JSONResponse(result, status_code=200 if result["ok"] else 409)

    routes = [
        Route("/", page),
        Route("/api/access", access),
        Route("/api/overview", reader(overview)),
        Route("/api/series", reader(series_list)),
        Route("/api/series/{device}/{quantity}", reader(series)),
        Route("/api/decisions", reader(decisions)),
        Route("/api/health", reader(health)),
        Route("/api/peers", reader(peers)),
        Route("/api/stream", reader(stream)),
        Route("/api/intents", writer(intent), methods=["POST"]),
        Route("/api/health/{kind}/{key:path}/{label}", writer(label), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        Route("/{page}", page),
    ]
    return Starlette(routes=routes)


def _number(text: str | None, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value == value and abs(value) != float("inf") else default


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


async def _events(request: Request, views: Views) -> AsyncIterator[str]:
    """One ``overview`` event a second while the page is open; pages refetch what they show
    when it says something changed."""
    while not await request.is_disconnected():
        try:
            data = await run_in_threadpool(views.cached, ("overview",), views.overview)
        except Exception:  # a failing read must not end the stream; said once a second
            log.exception("dashboard: overview failed")
            data = {"error": "overview failed; see the agent's log"}
        yield f"event: overview\ndata: {json.dumps(data, default=str)}\n\n"
        await asyncio.sleep(STREAM_EVERY)
