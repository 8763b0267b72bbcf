"""The management UI at the admin's ``/``: pages rendered here (Jinja2), kept live by
server-sent events; the browser-side packages (xterm.js, Pico CSS) come from npm
(web/, copied by web/build.sh into static/vendor).

Adding a page or a fragment: its route in ``pages.py``, what it shows in ``views.py`` (read from
the admin's memory, not the store, where it can), its template in ``templates/``; an action on a
sandbox beside its kind (``files.py``, ``snapshots.py``); rollout jobs: ``jobs.py``; login and who is looking: ``access.py``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from rock.admin.context import Ctx
from rock.admin.front import FrontDoor, Refusal
from rock.admin.ui import access, files, jobs, live, pages, snapshots

log = logging.getLogger("rock.admin")
# The login form answers without a token, the static assets are past the gate; a page without a
# token sends the browser to the login form (an admin's: a proxy has no pages).
FRONT = FrontDoor(roles=("admin",), public=frozenset({("GET", "/ui/login"), ("POST", "/ui/login"), ("POST", "/ui/logout")}),
                  open_paths=("/ui/static/",),
                  refusals=(Refusal("/", pages.login_needed, ("admin",)), Refusal("/ui/", pages.login_needed, ("admin",))),
                  errors=((access.PageError, pages.error_page), (access.LoginNeeded, pages.login_redirect)))


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount the management UI's pages, fragments and static assets, on an admin only. The
    overview's request rate is the metrics' (``ctx.metrics``, installed after the doors as the
    outermost middleware), read when a page renders."""
    if ctx.settings.role != "admin":
        return
    if not (pages.VENDOR / "xterm.js").exists():
        log.warning("the admin UI's browser assets are not built (run web/build.sh or scripts/setup-host.sh): "
                    "pages work, the terminal does not")
    app.mount("/ui/static", StaticFiles(directory=str(pages.HERE / "static"), check_dir=False), name="ui-static")
    app.include_router(pages.router(ctx, lambda: ctx.metrics.request_rate()))
    app.include_router(files.router(ctx))
    app.include_router(snapshots.router(ctx))
    app.include_router(live.router(ctx))
    app.include_router(jobs.router(ctx))
    _declare_errors(app)


# A page's refusals: an error page (HTML) for a browser, the error envelope for the data fragments.
_UI_ERRORS = {400: "a bad filter or form field", 403: "a cross-site form post", 404: "no such sandbox, file, job or rollout",
              409: "the sandbox is not running (or paused), or the snapshot name is taken"}


def _declare_errors(app: FastAPI) -> None:
    from rock.admin.openapi import api_routes

    for path, route in api_routes(app.routes):
        if path == "/" or path.startswith("/ui/"):
            for code, why in _UI_ERRORS.items():
                route.responses.setdefault(code, {"description": why})
            if not path.startswith(("/ui/fragments/", "/ui/events", "/ui/login", "/ui/logout")):
                route.responses.setdefault(303, {"description": "no token (tokens on): to the login form"})
