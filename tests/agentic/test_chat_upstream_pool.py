"""Proxy mode's kept-alive connections to its upstream belong to the admin (its chat hub) that
made them, on that admin's event loop, and close when it stops: a process that runs one admin
after another (the test session's docker and bwrap admins) never hands the second one a
connection of the first."""

from __future__ import annotations

import json
import threading

import pytest

from rock.chat.hub import ChatHub
from rock.chat.upstream import _plain_target
from tests.client.loopback import JsonHandler, serving

uvloop = pytest.importorskip("uvloop")


def test_each_admins_upstream_connections_are_its_own_and_close_with_it(tmp_path):
    seen: dict[int, list[str]] = {}
    ended: dict[int, threading.Event] = {}

    class Upstream(JsonHandler):
        def setup(self) -> None:
            super().setup()
            ended[self.client_address[1]] = threading.Event()

        def answer(self, body: bytes):
            seen.setdefault(self.client_address[1], []).append(json.loads(body)["admin"])
            return 200, {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}, {}

        def finish(self) -> None:
            super().finish()
            ended[self.client_address[1]].set()  # the admin closed its end

    async def one_admin(name: str, url: str) -> list[int]:
        hub = ChatHub(tmp_path / name)
        target = _plain_target(url + "/v1/chat/completions")
        assert target is not None
        statuses = [(await hub.upstreams.post_whole(target, {"content-type": "application/json"},
                                                    json.dumps({"admin": name}).encode(), 10))[0]
                    for _ in range(2)]
        await hub.close()
        return statuses

    with serving(Upstream) as url:
        for name in ("first", "second"):
            loop = uvloop.new_event_loop()
            try:
                assert loop.run_until_complete(one_admin(name, url)) == [200, 200]
            finally:
                loop.close()
            (port,) = [port for port, names in seen.items() if names[0] == name]
            assert ended[port].wait(30), f"the {name} admin's connection is still open after it stopped"
    assert sorted(seen.values()) == [["first"] * 2, ["second"] * 2]
