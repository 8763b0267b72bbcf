"""The Chat protocol's front door (an OpenAI-compatible model endpoint inside every sandbox)."""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.chat.hub import ChatHub
from rock.admin.context import Ctx


def install(app: FastAPI, ctx: Ctx) -> None:
    """Mount the Chat routes on an admin (each endpoint starts with a sandbox's session; a proxy
    has none). The hub lives on ``app.state.chat`` and closes with the app (``shutdown``)."""
    from rock.admin.chat import routes

    if ctx.settings.role != "admin":
        return
    hub = ChatHub(ctx.settings.state_dir, ctx.sandboxes, ctx.settings.chat_proxy_urls,
                  open_proxy=not ctx.auth.enabled)
    if hasattr(ctx.worker, "listeners"):
        ctx.worker.listeners.append(hub)  # notices from `rock model-service ...` inside sandboxes
    app.state.chat = hub
    app.include_router(routes.router(ctx, hub))


async def shutdown(app: FastAPI) -> None:
    """Close the hub: held calls end, upstream connections close."""
    hub = getattr(app.state, "chat", None)
    if hub is not None:
        await hub.close()
