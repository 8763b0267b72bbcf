"""What a start request asks for that this machine cannot give is refused here, naming the field.

rl-rock sends every SandboxConfig field on every start; the ones with a meaning here either take
effect or get a 400 that says which field and why, never a silent no-op.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from rock.actions.images import image_ref_problem
from rock.actions.sandbox import SandboxStartRequest
from rock.errors import BadRequest
from rock.runtime import backends_with, get_runtime_class
from rock.runtime.host_policy import host_path_refused, is_host_path

if TYPE_CHECKING:
    from rock.worker.protocol import WorkerOps


@functools.lru_cache(maxsize=1)
def _engine_runtimes() -> tuple[str, ...]:
    from rock.runtime.docker.engine import client

    try:
        return tuple(sorted((client().info().get("Runtimes") or {}).keys()))
    except Exception:  # noqa: BLE001 - no engine: no runtimes
        return ()


def kata_runtime() -> str | None:
    """The Docker engine's kata runtime's name, if one is installed."""
    return next((name for name in _engine_runtimes() if "kata" in name), None)


def check_start_request(req: SandboxStartRequest, on: WorkerOps | str, settings=None) -> None:
    """What a start asks that this admin can never give, refused before anything is recorded:
    ``settings``' limits, and what the backends a start could land on cannot do, as they declare it
    (``on``: the worker, whose ``capabilities()`` say it, or one backend's name)."""
    caps = [get_runtime_class(on).capabilities()] if isinstance(on, str) else on.capabilities()

    def backend() -> str:  # for a message: the backends that run here
        if isinstance(on, str):
            return on
        return "/".join(on.node_backends()[0]) or on.backend_name

    if settings is not None:
        _check_limits(req, settings)
    if req.image_os.strip().lower() != "linux":
        raise BadRequest(f"image_os={req.image_os!r}: this server runs Linux sandboxes only")
    # num_gpus and accelerator_type: the worker's admission (Worker.check, the cluster's placement)
    if req.use_kata_runtime:
        if not caps or not all("kata" in c for c in caps):
            raise BadRequest(f"use_kata_runtime: kata containers need the {' or '.join(backends_with('kata'))} "
                             f"backend; this admin runs {backend()}")
        if kata_runtime() is None:
            raise BadRequest("use_kata_runtime: no kata runtime is installed in the Docker engine (its runtimes: "
                             f"{', '.join(_engine_runtimes()) or 'none'})")
    if req.auto_archive_seconds is not None and req.auto_delete_seconds is not None:
        # ROCK resolves this by ignoring auto_delete_seconds; say so instead of doing it silently.
        raise BadRequest("auto_archive_seconds and auto_delete_seconds are exclusive: a stopped sandbox is either "
                         "archived after a while or deleted after a while; set one")
    if bool(req.registry_username) != bool(req.registry_password):
        raise BadRequest("registry_username and registry_password go together: set both to log in, or neither")
    if req.image and not is_host_path(req.image) and (why := image_ref_problem(req.image)) is not None:
        raise BadRequest(why)  # before any registry is asked for it (pull_policy "always" pulls first)
    if is_host_path(req.image) and settings is not None and not settings.allow_host_paths:
        raise host_path_refused(req.image)  # before any look at the host's files (isdir below)
    if is_host_path(req.image) and os.path.isdir(req.image) and caps and not any("directory_images" in c for c in caps):
        raise BadRequest(f"image {req.image!r} is a directory: a root filesystem directory is an image of the "
                         f"{', '.join(backends_with('directory_images'))} backends; the {backend()} backend needs an "
                         "image name")


def _check_limits(req: SandboxStartRequest, settings) -> None:
    """ROCK's max_allowed_spec: what one sandbox may ask for on this admin."""
    from rock.actions.sandbox import parse_memory

    cpus = req.limit_cpus or req.cpus
    if settings.max_cpus is not None and cpus is not None and cpus > settings.max_cpus:
        raise BadRequest(f"cpus={cpus:g}: this admin allows at most {settings.max_cpus:g} cpus per sandbox")
    most = parse_memory(settings.max_memory)
    if most is not None and req.memory and parse_memory(req.memory) > most:
        raise BadRequest(f"memory={req.memory}: this admin allows at most {settings.max_memory} per sandbox")


def spec_extras(req: SandboxStartRequest) -> dict:
    """The runtime spec's fields for what ``check_start_request`` let through."""
    auth = {"username": req.registry_username, "password": req.registry_password} if req.registry_username else None
    return {"pull_policy": req.pull_policy, "registry_auth": auth,
            "runtime": kata_runtime() if req.use_kata_runtime else None}
