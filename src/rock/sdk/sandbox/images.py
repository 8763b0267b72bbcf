"""Images from Dockerfiles for the SDK and the CLI: the build context goes to the admin as a tar
(``POST /images/build``), whose Docker engine builds it; the result is an image name to start from."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rock.errors import BadRequest

if TYPE_CHECKING:
    from rock.sdk.sandbox.http import Http


def context_tar(context: str | Path | None = None, dockerfile: str | None = None,
                dockerfile_name: str = "Dockerfile") -> bytes:
    """A build context as tar bytes: a directory (with its Dockerfile), or only a Dockerfile's
    text, or a directory plus Dockerfile text that replaces its own."""
    if context is None and dockerfile is None:
        raise BadRequest("give a build context directory or the text of a Dockerfile")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if context is not None:
            root = Path(context).expanduser()
            if not root.is_dir():
                raise BadRequest(f"build context {root} is not a directory")
            if dockerfile is None and not (root / dockerfile_name).is_file():
                raise BadRequest(f"build context {root} has no {dockerfile_name}")
            for child in sorted(root.iterdir()):
                if dockerfile is not None and child.name == dockerfile_name:
                    continue
                tar.add(child, arcname=child.name)
        if dockerfile is not None:
            data = dockerfile.encode()
            info = tarfile.TarInfo(dockerfile_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def build(http: Http, context: str | Path | None = None, dockerfile: str | None = None, tag: str | None = None,
                dockerfile_name: str = "Dockerfile") -> dict[str, Any]:
    """Have the admin build the image; returns {image, image_id, cached, steps}."""
    from rock.sdk.sandbox.http import unwrap

    params = {"dockerfile": dockerfile_name, **({"tag": tag} if tag else {})}
    response = await http.client.post("/images/build", params=params, timeout=None,
                                      content=context_tar(context, dockerfile, dockerfile_name),
                                      headers={"content-type": "application/x-tar"})
    built: dict[str, Any] = unwrap(response)
    return built
