"""The training clients (sync and async); one request per method, on the SDK's lean keep-alive
HTTP (the env clients' ``SyncHttp`` / ``AsyncHttp``): httpx's request and response objects cost
the client more CPU per call than the admin's whole step."""

from __future__ import annotations

from typing import Any, cast

from rock.client.envelope import loads
from rock.client.http import AsyncHttp, SyncHttp
from rock.errors import TrainingError
from rock.sdk.closing import AsyncClosing, Closing

BASE = "/apis/v1/training"


Json = dict[str, Any]  # a JSON object as the training routes send and take it

def _result(status: int, raw: bytes) -> Any:
    try:
        body = loads(raw)
    except ValueError:
        body = None
    if status >= 400:
        result = body.get("result") if isinstance(body, dict) else None
        kind = (result or {}).get("error_type") or "BadRequest"
        message = (body or {}).get("message") if isinstance(body, dict) else None
        err = TrainingError(message or raw[:500].decode(errors="replace") or f"HTTP {status}", kind)
        err.status_code = status
        raise err
    return body


def _requests(method: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, body) of each SDK method: one table for both clients."""
    if method == "get_env_profile":
        return "/profile", {"env_type": args["env_type"], "split": args.get("split") or "train",
                            "params": args.get("params") or {}}
    if method == "create_instance":
        body = {"env_type": args["env_type"], "task_id": args["task_id"], "params": args.get("params") or {}}
        if args.get("instance_id"):
            body["instance_id"] = args["instance_id"]
        return "/create", body
    if method == "step":
        return "/step", {"instance_id": args["instance_id"], "action": args.get("action") or {},
                         "params": args.get("params") or {}}
    if method == "evaluate":
        messages = args.get("messages")
        return "/evaluate", {"instance_id": args["instance_id"], "params": args.get("params") or {},
                             "messages": messages if isinstance(messages, list) else None}
    if method == "get_info":
        return "/info", {"instance_id": args["instance_id"]}
    if method == "release_instance":
        return "/release", {"instance_id": args["instance_id"]}
    raise AttributeError(method)


def _shape(method: str, body: Any) -> Any:
    if method == "get_env_profile":
        return body["task_ids"]
    if method == "evaluate":
        return body["details"] if body.get("details") is not None else body["reward"]
    if method == "release_instance":
        return bool(body["released"])
    return body


class TrainingSandbox(Closing):
    """Sync client; a context manager (its exit closes the connection, not the instances)."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 600.0):
        self.http = SyncHttp(base_url, token, routes=BASE, timeout=timeout)
        self.base_url = self.http.base

    def _call(self, method: str, **args: Any) -> Any:
        path, body = _requests(method, args)
        return _shape(method, _result(*self.http.exchange(path, body)))

    def get_env_profile(self, env_type: str, split: str = "train", params: Json | None = None) -> list[str]:
        """The task ids of a suite's ``split`` (train, val or all)."""
        return cast("list[str]", self._call("get_env_profile", env_type=env_type, split=split, params=params))

    def create_instance(self, env_type: str, task_id: str, instance_id: str | None = None,
                        params: Json | None = None) -> Json:
        """A new instance of ``task_id``: its first messages; ``info.instance_id`` names it."""
        return cast("Json", self._call("create_instance", env_type=env_type, task_id=task_id,
                                       instance_id=instance_id, params=params))

    def step(self, instance_id: str, action: Json | None = None, params: Json | None = None) -> Json:
        """One assistant message in; the environment's answer, the reward and whether it ended."""
        return cast("Json", self._call("step", instance_id=instance_id, action=action, params=params))

    def evaluate(self, instance_id: str, messages: list[Any] | Json | None = None, params: Json | None = None) -> Any:
        """The instance's reward by the suite's own grader (a dict of details with ``params={"details": True}``)."""
        return self._call("evaluate", instance_id=instance_id, messages=messages, params=params)

    def get_info(self, instance_id: str, messages: Any = None, params: Json | None = None) -> Any:
        """The task's tools and facts."""
        return self._call("get_info", instance_id=instance_id)

    def release_instance(self, instance_id: str) -> bool:
        """Release an instance (its sandbox goes); False if it was released already."""
        return cast("bool", self._call("release_instance", instance_id=instance_id))

    def close(self) -> None:
        """Close the connection (the instances stay until released or idle)."""
        self.http.close()



class AsyncTrainingSandbox(AsyncClosing):
    """The async twin: the same methods, awaited."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 600.0,
                 max_connections: int = 256):
        self.http = AsyncHttp(base_url, token, routes=BASE, max_connections=max_connections)
        self.base_url = self.http.base
        self.timeout = timeout

    async def _call(self, method: str, **args: Any) -> Any:
        path, body = _requests(method, args)
        return _shape(method, _result(*await self.http.exchange(path, body, self.timeout)))

    async def get_env_profile(self, env_type: str, split: str = "train", params: Json | None = None) -> list[str]:
        """The task ids of a suite's ``split`` (train, val or all)."""
        return cast("list[str]", await self._call("get_env_profile", env_type=env_type, split=split, params=params))

    async def create_instance(self, env_type: str, task_id: str, instance_id: str | None = None,
                              params: Json | None = None) -> Json:
        """A new instance of ``task_id``: its first messages; ``info.instance_id`` names it."""
        return cast("Json", await self._call("create_instance", env_type=env_type, task_id=task_id,
                                             instance_id=instance_id, params=params))

    async def step(self, instance_id: str, action: Json | None = None, params: Json | None = None) -> Json:
        """One assistant message in; the environment's answer, the reward and whether it ended."""
        return cast("Json", await self._call("step", instance_id=instance_id, action=action, params=params))

    async def evaluate(self, instance_id: str, messages: list[Any] | Json | None = None,
                       params: Json | None = None) -> Any:
        """The instance's reward by the suite's own grader (a dict of details with ``params={"details": True}``)."""
        return await self._call("evaluate", instance_id=instance_id, messages=messages, params=params)

    async def get_info(self, instance_id: str, messages: Any = None, params: Json | None = None) -> Any:
        """The task's tools and facts."""
        return await self._call("get_info", instance_id=instance_id)

    async def release_instance(self, instance_id: str) -> bool:
        """Release an instance (its sandbox goes); False if it was released already."""
        return cast("bool", await self._call("release_instance", instance_id=instance_id))

    async def close(self) -> None:
        """Close the connection (the instances stay until released or idle)."""
        await self.http.aclose()

    aclose = close  # what ``async with`` calls
