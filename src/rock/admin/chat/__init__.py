"""The Chat protocol's front door (an OpenAI-compatible model endpoint inside every sandbox)."""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.chat.hub import ChatHub


def install(app: FastAPI, ctx) -> ChatHub:
    """Mount the routes; the hub lives on ``app.state.chat`` and closes with the app."""
    from rock.admin.chat import routes

    hub = ChatHub(ctx.settings.state_dir, ctx.sandboxes, ctx.settings.chat_proxy_urls,
                  open_proxy=not ctx.auth.enabled)
    if hasattr(ctx.worker, "listeners"):
        ctx.worker.listeners.append(hub)  # notices from `rock model-service ...` inside sandboxes
    app.state.chat = hub
    app.include_router(routes.router(ctx, hub))
    return hub
