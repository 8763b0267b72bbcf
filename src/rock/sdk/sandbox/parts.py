"""How the SDK's ``Sandbox`` is put together: composed parts, as e2b's SDK composes ``files``,
``commands`` and ``pty``.

Each part (``sandbox.files``, ``sandbox.commands``, ``sandbox.lifecycle``, ``sandbox.snapshots``,
``sandbox.nohup``) holds the one ``SandboxContext`` of its sandbox: the config, the pooled HTTP
client and the sandbox's id and host, which ``start()``/``attach()`` set and every part reads. A
part knows its context and the parts it builds on, never the ``Sandbox`` itself. ``Delegate``
makes a part's method callable on the ``Sandbox`` too (``sandbox.read_file`` is
``sandbox.files.read_file``), with the part's signature and docstring."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Concatenate, Generic, ParamSpec, TypeVar, overload
from urllib.parse import quote

from rock.client.http import Http
from rock.errors import BadRequest

if TYPE_CHECKING:
    import httpx

    from rock.sdk.sandbox.config import SandboxConfig

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
NOT_STARTED = "this Sandbox has not been started or attached yet; call start() or attach(id)"


class SandboxContext:
    """What every part of one ``Sandbox`` shares: its ``config``, the admin's sandbox API ``url``, the
    pooled HTTP client (``http``: made on first use over ``transport``, closed by ``aclose()``), and
    the sandbox's id and host once ``start()`` or ``attach()`` bound them."""

    def __init__(self, config: SandboxConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.transport = transport
        self.url = f"{config.base_url.rstrip('/')}/apis/envs/sandbox/v1"
        self.sandbox_id: str | None = None
        self.host_name: str | None = None
        self.host_ip: str | None = None
        self._http: Http | None = None

    @property
    def http(self) -> Http:
        """The pooled HTTP client to the admin (one per sandbox object; made again after ``aclose()``)."""
        if self._http is None:
            self._http = Http.for_config(self.config, self.transport)
        return self._http

    def need_id(self) -> str:
        """The sandbox's id; a clear ``BadRequest`` before ``start()`` or ``attach()``."""
        if not self.sandbox_id:
            raise BadRequest(NOT_STARTED)
        return self.sandbox_id

    def at(self, what: str) -> str:
        """The route of ``what`` under this sandbox: ``/sandboxes/{id}/{what}``."""
        return f"/sandboxes/{quote(self.need_id(), safe='')}/{what}"

    def bind(self, sandbox_id: str | None, host_name: str | None = None, host_ip: str | None = None) -> None:
        """Name the sandbox these parts act on, and the machine it runs on."""
        self.sandbox_id, self.host_name, self.host_ip = sandbox_id, host_name, host_ip

    def placed(self, reply: dict[str, Any]) -> None:
        """Take the machine the sandbox runs on from an admin's reply (start, restart)."""
        self.host_name, self.host_ip = reply.get("host_name"), reply.get("host_ip")

    async def aclose(self) -> None:
        """Close the HTTP client's connections, if one was made (the sandbox keeps running)."""
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()


class FromContext(Generic[T]):
    """A ``Sandbox`` attribute that is its shared context's (``sandbox_id = FromContext("sandbox_id", ...)``):
    read there and, where ``settable``, written there, so every part sees the same value."""

    def __init__(self, name: str, doc: str, settable: bool = False) -> None:
        self.name, self.settable, self.__doc__ = name, settable, doc

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> FromContext[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> T | FromContext[T]:
        if obj is None:
            return self
        value: T = getattr(obj._context, self.name)  # type: ignore[attr-defined]
        return value

    def __set__(self, obj: object, value: T) -> None:
        if not self.settable:
            raise AttributeError(f"{self.name} is read-only (start() or attach() sets it)")
        setattr(obj._context, self.name, value)  # type: ignore[attr-defined]


class SandboxPart:
    """A part of a ``Sandbox`` that talks to the admin itself, through the sandbox's shared context."""

    def __init__(self, context: SandboxContext) -> None:
        self._context = context


class Delegate(Generic[P, R]):
    """A ``Sandbox`` method that is one of its parts' methods, e.g. ``read_file = Delegate("files",
    Files.read_file)``: on a sandbox it is the part's bound method (``sandbox.files.read_file``), on
    the class it is the part's function, so its signature, docstring and behaviour are the part's."""

    def __init__(self, part: str, function: Callable[Concatenate[Any, P], R]) -> None:
        self.part, self.function = part, function
        self.__doc__, self.__wrapped__ = function.__doc__, function

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Callable[Concatenate[Any, P], R]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Callable[..., R]:
        if obj is None:
            return self.function
        bound: Callable[P, R] = getattr(getattr(obj, self.part), self.function.__name__)
        return bound
