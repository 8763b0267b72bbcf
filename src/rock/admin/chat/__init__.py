"""The Chat protocol's front door (an OpenAI-compatible model endpoint inside every sandbox)."""

from __future__ import annotations

from fastapi import FastAPI

from rock.admin.chat.hub import ChatHub


def install(app: FastAPI, ctx) -> ChatHub:
    """Mount the routes; the hub lives on ``app.state.chat`` and closes with the app."""
    from rock.admin.chat import routes

    def touch(sandbox_id: str) -> None:
        record = ctx.sandboxes.records.get(sandbox_id)
        if record is not None:
            ctx.sandboxes.touch(record)  # a model call is a use: it refreshes the idle TTL

    hub = ChatHub(ctx.settings.state_dir, touch)
    app.state.chat = hub
    app.include_router(routes.router(ctx, hub))
    return hub
