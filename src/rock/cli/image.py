"""``rock image build PATH``: build an image from a Dockerfile and its context on the admin's node."""

from __future__ import annotations

import asyncio

from rock.cli import admin_commands
from rock.cli.output import Out


def add_parser(sub) -> None:
    """Register ``rock image build`` on the ``rock`` parser ``sub``."""
    s = admin_commands(sub, "image", "images for sandboxes")
    b = s.add_parser("build", help="build an image from a build context directory (with its Dockerfile)")
    b.add_argument("context", help="the build context directory")
    b.add_argument("-t", "--tag", help="the image name (default: rock-build/<content hash>:latest)")
    b.add_argument("-f", "--file", dest="dockerfile", default="Dockerfile",
                   help="the Dockerfile's path inside the context")
    b.set_defaults(func=cmd_build)


def cmd_build(args, out: Out) -> int:
    """``rock image build``: send the build context to the admin, which builds the image on its node;
    prints each step and the image's name."""
    from rock.client.http import Http
    from rock.sdk.sandbox.images import build

    async def go():
        headers = {**args.extra_headers, **({"Authorization": f"Bearer {args.token}"} if args.token else {})}
        http = Http(args.url, headers, None)
        try:
            return await build(http, args.context, tag=args.tag, dockerfile_name=args.dockerfile)
        finally:
            await http.aclose()

    result = asyncio.run(go())
    lines = [*result["steps"], f"{'cached' if result['cached'] else 'built'} {result['image']} ({result['image_id'][:19]})"]
    out.record(result, lines=lines)
    return 0
