"""The SDK's ``Sandbox`` is composed of parts (``files``, ``commands``, ``lifecycle``, ``snapshots``,
``nohup``) over one shared context, and every part method rl-rock calls on the sandbox is the
part's own: same function, so the same signature and docstring. No admin is needed: a call
before ``start()`` fails on the context before anything is sent."""

from __future__ import annotations

import inspect

import pytest

from rock.errors import BadRequest
from rock.sdk.sandbox import Sandbox, SandboxConfig, SyncSandbox
from rock.sdk.sandbox.commands import Commands
from rock.sdk.sandbox.files import Files
from rock.sdk.sandbox.lifecycle import Lifecycle
from rock.sdk.sandbox.nohup import Nohup
from rock.sdk.sandbox.parts import Delegate
from rock.sdk.sandbox.snapshots import Snapshots

PARTS = {"files": Files, "commands": Commands, "lifecycle": Lifecycle, "snapshots": Snapshots, "nohup": Nohup}
# what rl-rock's Sandbox offers and ours keeps on the sandbox, by part
RL_ROCK = {"files": ["read_file", "write_file", "write_file_by_path", "upload", "upload_by_path"],
           "commands": ["execute", "create_session", "close_session", "run_in_session", "arun"],
           "lifecycle": ["restart", "archive", "commit_async", "get_commit_status"],
           "nohup": ["start_nohup_process", "wait_for_process_completion", "handle_nohup_output"]}


def delegated() -> dict[str, Delegate]:
    return {name: value for name, value in vars(Sandbox).items() if isinstance(value, Delegate)}


def test_each_delegated_method_is_its_parts_function_and_binds_to_the_part():
    sandbox = Sandbox(SandboxConfig(base_url="http://127.0.0.1:9"))
    methods = delegated()
    assert len(methods) > 30
    for name, delegate in methods.items():
        part = PARTS[delegate.part]
        assert getattr(Sandbox, name) is getattr(part, name), name
        bound = getattr(sandbox, name)
        assert bound.__self__ is getattr(sandbox, delegate.part), name
        assert inspect.signature(bound) == inspect.signature(getattr(getattr(sandbox, delegate.part), name))
        assert inspect.iscoroutinefunction(bound) and bound.__doc__, name
    for part, names in RL_ROCK.items():
        assert {n: methods[n].part for n in names} == {n: part for n in names}


def test_the_parts_share_one_context_that_start_and_attach_bind():
    sandbox = Sandbox(SandboxConfig(base_url="http://127.0.0.1:9"))
    contexts = {id(getattr(sandbox, name)._context) for name in ("files", "commands", "lifecycle", "snapshots")}
    assert contexts == {id(sandbox._context)}
    sandbox._context.bind("sb-1", "node-a", "10.0.0.1")
    assert (sandbox.sandbox_id, sandbox.host_name, sandbox.host_ip) == ("sb-1", "node-a", "10.0.0.1")
    assert sandbox.snapshots._context.at("pause") == "/sandboxes/sb-1/pause"
    sandbox._sandbox_id = "sb-2"  # as rl-rock's job executor binds a known id
    assert sandbox.commands._context.need_id() == "sb-2" and sandbox.sandbox_id == "sb-2"


async def test_a_part_called_before_start_says_to_start_first():
    sandbox = Sandbox(SandboxConfig(base_url="http://127.0.0.1:9"))
    for call in (sandbox.files.read_bytes("/etc/hostname"), sandbox.read_bytes("/etc/hostname"),
                 sandbox.nohup.read_file_by_line_range("/etc/hostname"), sandbox.snapshots.pause()):
        with pytest.raises(BadRequest, match="not been started or attached"):
            await call
    await sandbox.aclose()


def test_a_sync_sandboxs_parts_block():
    sandbox = SyncSandbox(SandboxConfig(base_url="http://127.0.0.1:9"))
    assert set(PARTS) <= set(vars(sandbox))
    with pytest.raises(BadRequest, match="not been started or attached"):
        sandbox.files.read_bytes("/etc/hostname")  # run to its end here, not a coroutine handed back
    with pytest.raises(BadRequest, match="not been started or attached"):
        sandbox.snapshots.fork(2)
