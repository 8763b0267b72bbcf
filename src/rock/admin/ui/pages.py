"""The UI's pages and the fragments the live pages fetch again when something changes."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, Form, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from rock.admin.context import PREFIX, Ctx
from rock.admin.errors import error_response
from rock.admin.openapi import CATALOG_PROBE
from rock.admin.store import SandboxRecord
from rock.admin.ui import access, views
from rock.envs.gym.sessions import catalog_entries
from rock.errors import RockError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["ago"] = views.ago
templates.env.filters["size"] = views.size
templates.env.filters["clock"] = views.clock
VENDOR = HERE / "static" / "vendor"
HTML = {"response_class": HTMLResponse, "tags": ["ui"]}


def render(request: Request, name: str, code: int = 200, **data) -> HTMLResponse:
    ctx: Ctx = request.app.state.rock
    data.setdefault("auth", ctx.auth.enabled)
    data.setdefault("api", PREFIX)
    data.setdefault("assets_built", (VENDOR / "xterm.js").exists())
    return templates.TemplateResponse(request, name, data, status_code=code)


def router(ctx: Ctx, rate) -> APIRouter:
    """``rate()`` gives the admin's recent requests per second (from the metrics)."""
    api = APIRouter()
    sampler = views.StatsSampler(ctx)
    choices = views.FilterOptions(ctx)

    async def record(request: Request, sandbox_id: str) -> SandboxRecord:
        return await access.record(ctx, request, sandbox_id)

    def table_query(request: Request) -> views.TableQuery:
        q = views.TableQuery.of(request.query_params)
        if q.state is not None and q.state not in views.STATES:
            raise access.PageError(400, f"unknown state {q.state!r}; one of {', '.join(views.STATES)}")
        return q

    # -- login -----------------------------------------------------------------------------

    @api.get("/ui/login", **HTML)
    async def login_page(request: Request, next: str = "/"):
        """The token form (only useful when the admin has tokens)."""
        return render(request, "login.html", next=access.safe_next(next), error=None)

    @api.post("/ui/login", **HTML, responses={303: {"description": "logged in; back to `next`"},
                                               401: {"description": "unknown token"}})
    async def login(request: Request, token: str = Form(min_length=1, max_length=512), next: str = Form("/")):
        """Check the token and keep it in an HttpOnly cookie."""
        access.same_origin(request)
        try:
            ctx.auth.principal({"authorization": f"Bearer {token.strip()}"})
        except RockError:
            return render(request, "login.html", 401, next=access.safe_next(next), error="unknown token")
        response = RedirectResponse(access.safe_next(next), status_code=303)
        if ctx.auth.enabled:  # without tokens there is nothing to remember (any text "logs in")
            access.set_token(response, token.strip(), request.url.scheme == "https")
        return response

    @api.post("/ui/logout", **HTML, responses={303: {"description": "logged out; to the login page"}})
    async def logout(request: Request):
        access.same_origin(request)
        response = RedirectResponse("/ui/login", status_code=303)
        access.set_token(response, None, False)
        return response

    # -- overview --------------------------------------------------------------------------

    @api.get("/", **HTML)
    async def overview_page(request: Request):
        """Nodes, sandboxes by state and backend, warm pools, env hosts, request rate."""
        owner = access.principal(ctx, request)
        return render(request, "overview.html", nav="overview", **await views.overview(ctx, request.app, owner, rate()))

    @api.get("/ui/fragments/overview", **HTML)
    async def overview_fragment(request: Request):
        owner = access.principal(ctx, request)
        return render(request, "_overview.html", **await views.overview(ctx, request.app, owner, rate()))

    # -- sandboxes -------------------------------------------------------------------------

    table_params = {"state": Query(None, description="one of " + ", ".join(views.STATES)),
                    "page": Query(1, ge=1), "page_size": Query(50, ge=1, le=500)}

    @api.get("/ui/sandboxes", **HTML)
    async def sandboxes_page(request: Request, state: str | None = table_params["state"], image: str | None = None,
                             user_id: str | None = None, experiment_id: str | None = None,
                             namespace: str | None = None, page: int = table_params["page"],
                             page_size: int = table_params["page_size"]):
        """The sandboxes table, filtered by exact values and paged; newest first."""
        owner = access.principal(ctx, request)
        data = await views.table(ctx, request.app, owner, table_query(request), sampler, choices)
        return render(request, "sandboxes.html", nav="sandboxes", **data)

    @api.get("/ui/fragments/sandboxes", **HTML)
    async def sandboxes_fragment(request: Request, state: str | None = table_params["state"],
                                 image: str | None = None, user_id: str | None = None,
                                 experiment_id: str | None = None, namespace: str | None = None,
                                 page: int = table_params["page"], page_size: int = table_params["page_size"]):
        owner = access.principal(ctx, request)
        data = await views.table(ctx, request.app, owner, table_query(request), sampler, choices)
        return render(request, "_table.html", **data)

    @api.get("/ui/sandboxes/{sandbox_id}", **HTML)
    async def sandbox_page(request: Request, sandbox_id: str, path: str = "/"):
        """One sandbox: config, state history, sessions, commands, live stats, files, terminal."""
        r = await record(request, sandbox_id)
        book = ctx.jobs
        rollout = book.rollout_of(r.owner, r.sandbox_id) if book is not None else None  # the rollout it ran
        return render(request, "sandbox.html", nav="sandboxes", path=path, rollout=rollout,
                      **await views.detail(ctx, request.app, r))

    @api.get("/ui/fragments/sandbox/{sandbox_id}", **HTML)
    async def sandbox_fragment(request: Request, sandbox_id: str):
        r = await record(request, sandbox_id)
        return render(request, "_sandbox_status.html", **await views.detail(ctx, request.app, r))

    @api.post("/ui/sandboxes/{sandbox_id}/stop", **HTML, responses={303: {"description": "back to the sandbox"}})
    async def stop(request: Request, sandbox_id: str):
        access.same_origin(request)
        r = await record(request, sandbox_id)
        await ctx.sandboxes.stop(r.sandbox_id, r.owner)
        return RedirectResponse(f"/ui/sandboxes/{sandbox_id}", status_code=303)

    @api.post("/ui/sandboxes/{sandbox_id}/delete", **HTML, responses={303: {"description": "to the table"}})
    async def delete(request: Request, sandbox_id: str):
        access.same_origin(request)
        r = await record(request, sandbox_id)
        await ctx.sandboxes.delete(r.sandbox_id, r.owner)
        return RedirectResponse("/ui/sandboxes", status_code=303)

    # -- environments ----------------------------------------------------------------------

    @api.get("/ui/envs", **HTML)
    async def envs_page(request: Request):
        """The env catalog (loaded by a fragment: the first probe starts a sandbox) and who hosts what."""
        owner = access.principal(ctx, request)
        hosted = {sid: envs for sid, envs in ctx.envs.envs_by_sandbox().items()
                  if ctx.sandboxes.held.holds(sid, owner)}  # env hosts run
        return render(request, "envs.html", nav="envs", hosted=hosted, now=time.time())

    @api.get("/ui/fragments/catalog", **HTML, openapi_extra=CATALOG_PROBE)  # GEM's catalog: as long
    async def catalog_fragment(request: Request):
        access.principal(ctx, request)
        try:
            entries = await catalog_entries(ctx.envs, ctx.gym, ctx.owner(request), deep=True)
        except RockError as exc:
            return render(request, "_catalog.html", entries=[], error=exc.message or type(exc).__name__)
        return render(request, "_catalog.html", entries=sorted(entries, key=lambda e: (not e.available, e.id)),
                      error=None)

    return api


async def error_page(request: Request, exc: access.PageError) -> Response:
    return render(request, "error.html", exc.status, status=exc.status, message=exc.message)


def login_needed(path: str, query: str = "", exc: Exception | None = None) -> Response:
    """A page without a valid token: the browser goes to the login form (also the token gate's answer)."""
    if path.startswith(("/ui/fragments/", "/ui/events")):
        # fetched by a script (ui.js), which sends the browser to the login page
        return error_response(401, "log in again: missing or unknown API token", "Unauthorized")
    return RedirectResponse(access.login_url(path + (f"?{query}" if query else "")), status_code=303)


async def login_redirect(request: Request, exc: access.LoginNeeded) -> Response:
    return login_needed(request.url.path, request.url.query)
