"""The admin's one way to build an image: a caller's build context checked (rock.runtime.docker.
build_context: the Dockerfile the engine reads is the one checked, no fetches by the daemon, bases
pinned), then built by the engine under the admin's build limits and build network. ROCK's
``POST /images/build`` and E2B's template builds both come here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rock.admin.context import Ctx


async def checked_build(ctx: Ctx, context, dockerfile: str, image: str, owner: str,
                        say: Callable[[str], None], echo: Callable[[str], None] | None = None) -> str:
    """Build ``context`` (a seekable tar) as ``image``, labelled as ``owner``'s; each builder step
    goes to ``say``, the rest of its output (a RUN's) to ``echo``. Returns the image id; a refused
    context is a BadRequest, a failed build a SandboxStartError with the builder's words."""
    from rock.runtime.docker import build_context
    from rock.runtime.docker.images import MADE_BY, build_base, build_image
    from rock.worker.sizes import parse_memory

    # the engine builds our copy of the context: the Dockerfile it reads is the one checked
    checked, name = await asyncio.to_thread(build_context.prepare, context, dockerfile, build_base)
    # RUN steps run in the engine's build containers: held to the admin's build limits
    memory = parse_memory(ctx.settings.build_memory)
    limits = {"memory": memory, "memswap": memory} if memory else None
    with checked:
        return await asyncio.to_thread(build_image, checked, image, name, {MADE_BY: owner}, limits, say,
                                       ctx.settings.build_network, echo)
