"""Who may write an image tag: claimed once, atomically, in the store, before a commit or build
starts, and kept.

The engine's label on an existing image (``rock.made_by``) says who made it, but only once the
image exists: two commits (or a commit and a build) accepted to one new tag both saw no image, and
the later one replaced the earlier namespace's image under its feet. A claim in the store is taken
in one statement, so of two namespaces asking for a new tag exactly one gets it, for good; the
engine's label still refuses names that existed before (``python:3.11``, images of an older admin).
"""

from __future__ import annotations

import asyncio

from rock.admin.store import Store
from rock.errors import Conflict


def tag_key(image_tag: str) -> str:
    """One key per image the engine would write: 'x' and 'docker.io/library/x:latest' are one."""
    from rock.runtime.docker.images import split_tag

    repo, tag = split_tag(image_tag)
    for prefix in ("docker.io/", "index.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            repo = repo[len("library/"):] if repo.startswith("library/") and repo.count("/") == 1 else repo
    return f"image:{repo}:{tag}"


async def claim_tag(store: Store, image_tag: str, owner: str | None) -> None:
    """Take ``image_tag`` for ``owner``'s commit or build, or raise Conflict (409) when another
    namespace holds it or the engine has an image of that name that this namespace did not make."""
    from rock.runtime.docker.images import claim_tag as engine_allows

    owner = owner or ""
    await asyncio.to_thread(engine_allows, image_tag, owner)
    if await store.claim(tag_key(image_tag), owner) != owner:
        raise Conflict(f"image {image_tag} already exists on this node and was not made by your commits or builds; "
                       "choose another tag")
