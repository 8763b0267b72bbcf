"""Who is looking at the UI, and the token login that puts a token into a cookie.

The cookie is the same token the API takes (``rock.admin.auth.COOKIE``): with it, the page's
own links to the API (downloads, the terminal's WebSocket) work without a header. It is
HttpOnly (scripts cannot read it) and SameSite=Strict (another site's page cannot make the
browser send it). Form posts are also refused when the browser says they came from elsewhere,
which covers the loopback admin without tokens too.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request

from rock.admin.auth import COOKIE
from rock.admin.context import Ctx
from rock.admin.store import SandboxRecord
from rock.errors import SandboxNotFound, Unauthorized

COOKIE_MAX_AGE = 7 * 24 * 3600


class PageError(Exception):
    """An error shown as an HTML page (the API's errors stay JSON)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class LoginNeeded(Exception):
    def __init__(self, next_url: str):
        super().__init__(next_url)
        self.next_url = next_url


def principal(ctx: Ctx, request: Request) -> str | None:
    """The viewer's namespace (None when auth is off); a page without a valid token goes to login."""
    try:
        return ctx.auth.principal(request.headers)
    except Unauthorized:
        raise LoginNeeded(request.url.path + (f"?{request.url.query}" if request.url.query else "")) from None


async def record(ctx: Ctx, request: Request, sandbox_id: str) -> SandboxRecord:
    """The viewer's sandbox; another namespace's is a 404 page like a missing one."""
    try:
        return await ctx.sandboxes.lookup(sandbox_id, principal(ctx, request))
    except SandboxNotFound:
        raise PageError(404, f"sandbox {sandbox_id} not found") from None


def same_origin(request: Request) -> None:
    """Refuse a form post that a page of another site made the browser send."""
    site = request.headers.get("sec-fetch-site")
    if site not in (None, "same-origin", "none"):
        raise PageError(403, "this action must come from the admin's own pages")


def login_url(next_url: str) -> str:
    return "/ui/login?next=" + quote(next_url, safe="")


def safe_next(next_url: str | None) -> str:
    """Only a path on this admin (never another host) is a place to return to after login."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//") or "\\" in next_url:
        return "/"
    return next_url


def set_token(response, token: str | None, secure: bool) -> None:
    if token is None:
        response.delete_cookie(COOKIE, path="/")
    else:
        response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="strict",
                            secure=secure)
