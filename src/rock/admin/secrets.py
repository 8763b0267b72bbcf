"""The admin's secrets: per namespace, each bound to hosts, values write-only.

Kept in a file of their own beside the admin's state (``<state_dir>/secrets.json``, mode 0600),
never in the store whose records are exported and never in a sandbox's spec: a sandbox's record
names its secrets and their placeholders only, and the egress relay asks this vault for a value
at the moment it sends a request to a bound host (``rock.runtime.egress.broker``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from rock.actions.secrets import NAME_PATTERN, SecretCreate, SecretInfo, placeholder
from rock.errors import BadRequest, Conflict, SecretNotFound
from rock.runtime.egress.broker import bound_to

_NAME = re.compile(NAME_PATTERN)


class SecretVault:
    """Secrets by namespace (None, tokens off, is one namespace of its own)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict]] | None = None
        # Told (namespace, name) after a value changes or a secret is deleted: a cluster's admin
        # passes it on to the nodes that hold the value for their sandboxes' relays.
        self.on_change: Callable[[str | None, str], None] | None = None

    def _changed(self, owner: str | None, name: str) -> None:
        if self.on_change is not None:
            self.on_change(owner, name)

    # -- storage ------------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, dict]]:
        if self._data is None:
            try:
                self._data = json.loads(self.path.read_text())
            except FileNotFoundError:
                self._data = {}
        return self._data

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._data, f)
        os.replace(tmp, self.path)

    @staticmethod
    def _ns(owner: str | None) -> str:
        return owner or ""

    @staticmethod
    def info(item: dict) -> SecretInfo:
        return SecretInfo(name=item["name"], hosts=list(item["hosts"]), placeholder=placeholder(item["name"]),
                          created_at=item["created_at"], updated_at=item["updated_at"])

    # -- operations ----------------------------------------------------------------------------

    def create(self, owner: str | None, body: SecretCreate, allow_unbound: bool = False) -> dict:
        """Register a secret; 409 when the namespace has one of that name. ``allow_unbound``:
        E2B's door, whose secrets are bound to hosts by a sandbox's ``network.rules`` instead."""
        if not body.hosts and not allow_unbound:
            raise BadRequest(f"secret {body.name!r} is bound to no host; give the hosts it may be sent to")
        with self._lock:
            space = self._load().setdefault(self._ns(owner), {})
            if body.name in space:
                raise Conflict(f"secret {body.name!r} exists; delete it first or update its value")
            now = time.time()
            item = {"id": "sec_" + uuid.uuid4().hex[:20], "name": body.name, "value": body.value,
                    "hosts": list(dict.fromkeys(body.hosts)), "created_at": now, "updated_at": now, "version": 1,
                    "metadata": {}}
            space[body.name] = item
            self._save()
            return {k: v for k, v in item.items() if k != "value"}

    def _find(self, owner: str | None, key: str) -> dict:
        space = self._load().get(self._ns(owner), {})
        item = space.get(key.lower()) or next((i for i in space.values() if i["id"] == key), None)
        if item is None:
            raise SecretNotFound(f"secret {key!r} is missing")
        return item

    def get(self, owner: str | None, key: str) -> dict:
        """A secret's metadata (by name or id), never its value; 404 "missing" for another namespace's."""
        with self._lock:
            return {k: v for k, v in self._find(owner, key).items() if k != "value"}

    def list(self, owner: str | None) -> list[dict]:
        with self._lock:
            space = self._load().get(self._ns(owner), {})
            return [{k: v for k, v in i.items() if k != "value"} for i in sorted(space.values(), key=lambda i: i["name"])]

    def update(self, owner: str | None, key: str, value: str, metadata: dict | None = None) -> dict:
        """A new value (the next version); hosts stay."""
        with self._lock:
            item = self._find(owner, key)
            item.update(value=value, updated_at=time.time(), version=item["version"] + 1)
            if metadata is not None:
                item["metadata"] = metadata
            self._save()
            out = {k: v for k, v in item.items() if k != "value"}
        self._changed(owner, out["name"])
        return out

    def set_metadata(self, owner: str | None, key: str, metadata: dict) -> None:
        with self._lock:
            self._find(owner, key)["metadata"] = metadata
            self._save()

    def delete(self, owner: str | None, key: str) -> None:
        with self._lock:
            item = self._find(owner, key)
            del self._load()[self._ns(owner)][item["name"]]
            self._save()
        self._changed(owner, item["name"])

    def value_for(self, owner: str | None, name: str, host: str) -> str | None:
        """The value of ``owner``'s secret ``name`` if it may be sent to ``host`` (the relay's
        one question, asked per request: a deleted secret or a host it is not bound to is None)."""
        with self._lock:
            item = self._load().get(self._ns(owner), {}).get(name)
        if item is None or (item["hosts"] and not bound_to(item["hosts"], host)):
            return None
        return item["value"]

    def for_node(self, owner: str | None, name: str) -> dict:
        """What a cluster node's relay is given for ``owner``'s secret ``name``: its value (None
        when deleted) and hosts, for the node's memory only."""
        with self._lock:
            item = self._load().get(self._ns(owner), {}).get(name)
        return {"namespace": self._ns(owner), "name": name, "value": None if item is None else item["value"],
                "hosts": [] if item is None else list(item["hosts"])}

    def brokered(self, owner: str | None, wanted: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        """For a start's ``secrets`` (variable -> secret name): what the worker's relay is told
        (each secret's name, namespace, placeholder and hosts; never its value) and the variables
        the sandbox gets (placeholders). A missing or unbound secret is refused before anything starts."""
        brokered, env = [], {}
        with self._lock:
            space = self._load().get(self._ns(owner), {})
            for var, name in wanted.items():
                item = space.get(name) if isinstance(name, str) and _NAME.match(name) else None
                if item is None:
                    raise SecretNotFound(f"secrets: {var}: secret {name!r} is missing")
                if not item["hosts"]:
                    raise BadRequest(f"secrets: {var}: secret {name!r} is bound to no host; it can only be used "
                                     "by E2B's network.rules transforms, which name the host")
                env[var] = placeholder(name)
                if all(b["name"] != name for b in brokered):
                    brokered.append({"name": name, "namespace": owner, "placeholder": placeholder(name),
                                     "hosts": list(item["hosts"])})
        return brokered, env
