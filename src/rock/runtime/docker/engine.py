"""The connection to the Docker engine that every docker module shares: one low-level client per
process, and the threads its blocking calls run on.

Its own module so that the runtime, the kept containers, the images and the network (each of
which calls the engine) import it without importing one another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any

import docker

LABEL = "rock.managed"  # on every container ROCK starts: how the death watch and the sweep find ours

# Docker calls block; they get their own threads so that a burst of creates cannot starve
# the event loop's default executor (6 threads on a 2-core machine).
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="rock-docker")


@functools.cache
def client() -> docker.APIClient:
    """The engine's low-level API client, made once (it reads DOCKER_HOST like the CLI does)."""
    # version="auto" costs one round trip, once per process.
    return docker.from_env(version="auto", timeout=120).api


async def call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking engine call (``fn(*args, **kwargs)``) on the docker threads."""
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args, **kwargs))
