"""``POST /images/build``: an image from a Dockerfile and its build context, built by the node's
Docker engine; every backend runs it (bwrap unpacks it like any engine image)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.requests import Request

from rock.actions.response import RockResponse
from rock.admin.builds import checked_build
from rock.admin.context import Ctx, ok
from rock.admin.openapi import tar_body
from rock.errors import BadRequest

log = logging.getLogger("rock.admin.images")
BUILD_REPO = "rock-build"
ERRORS = {400: {"model": RockResponse[dict], "description": "an empty or unreadable context, or a bad tag"},
          409: {"model": RockResponse[dict], "description": "the tag names an image this namespace did not make"},
          503: {"model": RockResponse[dict], "description": "the build failed: the builder's own words"}}


class BuildResult(BaseModel):
    image: str
    image_id: str
    cached: bool
    steps: list[str]


def router(ctx: Ctx) -> APIRouter:
    api = APIRouter(tags=["images"])

    @api.post("/images/build", response_model=RockResponse[BuildResult], responses=ERRORS,
              summary="Build an image from a build context (a tar with a Dockerfile) in the request body",
              openapi_extra={"requestBody": tar_body("the build context: a tar with the Dockerfile")})
    async def build(request: Request,
                    tag: str | None = Query(default=None, description="the image name; default: rock-build/<hash of "
                                            "the context>:latest, built once per content"),
                    dockerfile: str = Query(default="Dockerfile", max_length=1024, pattern=r"^[^/\x00][^\x00]*$",
                                            description="the Dockerfile's path in the context (relative, no '..')")):
        from rock.admin.claims import claim_tag
        from rock.runtime.docker.images import present, split_tag

        owner = ctx.owner(request) or ""
        if tag is not None:
            split_tag(tag)
            await claim_tag(ctx.sandboxes.store, tag, owner)
        digest = hashlib.sha256(dockerfile.encode() + b"\0")
        with tempfile.SpooledTemporaryFile(max_size=16 << 20) as context:
            async for chunk in request.stream():
                digest.update(chunk)
                context.write(chunk)
            if context.tell() == 0:
                raise BadRequest("the request body is empty: send the build context as a tar with a Dockerfile")
            image = tag or f"{BUILD_REPO}/{digest.hexdigest()[:16]}:latest"
            if tag is None and await asyncio.to_thread(present, image):  # same content, same image
                from rock.runtime.docker.engine import client

                image_id = (await asyncio.to_thread(client().inspect_image, image))["Id"]
                return ok(BuildResult(image=image, image_id=image_id, cached=True, steps=[]).model_dump())
            steps: list[str] = []

            def say(text: str) -> None:
                steps.append(text)
                log.info("building %s: %s", image, text)

            image_id = await checked_build(ctx, context, dockerfile, image, owner, say)
        return ok(BuildResult(image=image, image_id=image_id, cached=False, steps=steps).model_dump())

    return api
