"""Isolation backends behind one interface (``base.Runtime``), chosen by name.

Backends are imported on first use: the docker SDK costs import time that a bwrap-only
worker should not pay.
"""

from __future__ import annotations

import importlib
import logging

from rock.errors import BadRequest
from rock.runtime.base import CAPABILITIES, ResourceStats, Runtime, RuntimeHandle, SandboxSpec

log = logging.getLogger("rock.runtime")

BACKENDS = {
    "docker": ("rock.runtime.docker", "DockerRuntime"),
    "bwrap": ("rock.runtime.bwrap", "BwrapRuntime"),
    "local": ("rock.runtime.local", "LocalRuntime"),
    "gvisor": ("rock.runtime.gvisor", "GvisorRuntime"),  # named only: auto never picks it
}
# What "auto" tries, best isolation and widest image support first.
AUTO_ORDER = ("docker", "bwrap", "local")

__all__ = ["BACKENDS", "CAPABILITIES", "ResourceStats", "Runtime", "RuntimeHandle", "SandboxSpec", "backends_with",
           "get_runtime_class", "pick_backend"]


def get_runtime_class(name: str) -> type[Runtime]:
    """The runtime class of backend ``name`` (its module imported only then); ``BadRequest`` naming the
    backends for an unknown one."""
    try:
        module, cls = BACKENDS[name]
    except KeyError:
        raise BadRequest(f"unknown runtime backend {name!r}; choose one of {', '.join(BACKENDS)} or auto") from None
    return getattr(importlib.import_module(module), cls)


def pick_backend(name: str = "auto") -> str:
    """Resolve a backend name: ``auto`` is docker if an engine answers, else bwrap, else local.

    A named backend that is not usable here raises BadRequest with the reason.
    """
    if name != "auto":
        reason = get_runtime_class(name).available()
        if reason:
            raise BadRequest(f"backend {name!r} is not available: {reason}")
        return name
    reasons = []
    for candidate in AUTO_ORDER:
        reason = get_runtime_class(candidate).available()
        if reason is None:
            log.info("backend auto -> %s%s", candidate, f" ({'; '.join(reasons)})" if reasons else "")
            return candidate
        reasons.append(f"{candidate}: {reason}")
    raise AssertionError("the local backend is always available")


def backends_with(capability: str) -> list[str]:
    """The backends that declare ``capability`` (one of ``CAPABILITIES``), for a refusal that names
    where to go instead; each backend's module is imported to ask it."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; one of {', '.join(CAPABILITIES)}")
    return [name for name in BACKENDS if capability in get_runtime_class(name).capabilities()]
