"""E2B's template build through ROCK against ``docker build`` of the same Dockerfile, in
alternating blocks, on one admin process (the build is the engine's on every backend, so one
backend is measured: docker):

e2b_template_build_ms   Template.build(Template().from_dockerfile(D)) with the newest e2b SDK (its
                        venv, bench/e2b_client.py): request, the COPY's upload (by hash: sent
                        once, then present), the checked build, the status polls until ready.
                        floor: the engine's own build of D and its context (docker-py, the same
                        build network none and memory limit as the admin's builds).

D has a RUN whose text changes every time (a nonce), so each build runs it; the base and the
COPY's layer are the engine's cache for both.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from bench.admin import AdminProcess
from bench.e2b import _Client, against_floor, each_backend
from bench.report import record
from rock.config import Settings

DOCKERFILE = """FROM {image}
ENV APP_MODE=bench
WORKDIR /opt/app
COPY data.txt /opt/app/
RUN echo NONCE > /opt/app/nonce && python3 -c "print(sum(range(10**6)))"
"""


def _docker_build(context: Path) -> float:
    """The floor: one docker build of the context (nonce replaced), the image removed untimed."""
    from rock.runtime.docker.images import _build_client, remove_image

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("Dockerfile", "data.txt"):
            data = (context / name).read_bytes()
            if name == "Dockerfile":
                data = data.replace(b"NONCE", uuid.uuid4().hex.encode())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    tag = f"rock-bench-docker-build:{uuid.uuid4().hex[:12]}"
    t0 = time.perf_counter()
    for chunk in _build_client().build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True,
                                       network_mode="none", container_limits={"memory": 4 << 30, "memswap": 4 << 30}):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
    took = time.perf_counter() - t0
    remove_image(tag)
    return took


async def _backend(ctx, backend: str, python) -> list[dict]:
    admin = AdminProcess(backend, prefix="rock-bench-e2b-tpl-")
    url = admin.start()
    context = Path(tempfile.mkdtemp(prefix="rock-bench-tpl-"))
    (context / "Dockerfile").write_text(DOCKERFILE.format(image=Settings.model_fields["default_image"].default))
    (context / "data.txt").write_text("bench data\n" * 1000)
    os.environ["BENCH_CONTEXT"] = str(context)  # the client's environment is made from ours
    client = _Client(python, url)
    try:
        client.ask("tbuild", 1)  # warm-up: imports, the base image, the upload
        await asyncio.to_thread(_docker_build, context)
        n, block = ctx.n(6, 20), 2
        ctx.progress(f"e2b templates {backend}: Template.build x{n} (floor: docker build of the same Dockerfile)")
        builds, floors = await against_floor(client, "tbuild", lambda: asyncio.to_thread(_docker_build, context), n,
                                             block)
        return [record("e2b_template_build_ms", backend, builds, floor_s=floors)]
    finally:
        client.close()
        admin.stop()
        os.environ.pop("BENCH_CONTEXT", None)


async def run(ctx) -> list[dict]:
    return await each_backend(ctx, "e2b_templates", _backend, ["docker"] if "docker" in ctx.backends else [])
