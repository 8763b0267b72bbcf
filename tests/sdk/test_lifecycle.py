"""ROCK's lifecycle through our SDK, once per backend: stop keeps the files and restart brings
them back; commit makes an image a new sandbox starts from; archive and the timed transitions."""

from __future__ import annotations

import asyncio

import uuid

import docker
import pytest

from rock.actions import CreateBashSessionRequest
from rock.errors import BadRequest, Conflict, SandboxNotRunning
from tests.admin.harness import free_port
from rock.sdk.sandbox import Sandbox
from tests.sdk.test_sandbox import config, until


async def _state(sandbox: Sandbox, want: str):
    status = await sandbox.get_status(include_all_states=True)
    return status if status.lifecycle_state == want else None


async def test_stop_keeps_files_and_restart_brings_them_back(admin):
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    try:
        await sandbox.write_bytes("/root/kept.txt", b"still here")
        await sandbox.create_session(CreateBashSessionRequest(session="s"))
        await sandbox.arun("sleep 1000 & echo $! > /root/sleeper.pid", session="s")
        await sandbox.stop()
        status = await sandbox.get_status(include_all_states=True)
        assert status.state == "stopped" and not status.is_alive and status.stop_time
        assert status.auto_delete_time is not None  # the server's default retention
        with pytest.raises(SandboxNotRunning):
            await sandbox.arun("true")
        await sandbox.restart()
        assert (await sandbox.get_status()).is_alive
        assert await sandbox.read_bytes("/root/kept.txt") == b"still here"
        pid = (await sandbox.read_bytes("/root/sleeper.pid")).decode().strip()
        # processes did not survive the stop: the pid is not a sleep any more
        r = await sandbox.arun(f"cat /proc/{pid}/cmdline 2>/dev/null | tr '\\0' ' '")
        assert "sleep 1000" not in r.output
        await sandbox.restart()  # idempotent on a running sandbox
        events = [h.event for h in (await sandbox.get_status()).state_history]
        assert events[-4:] == ["stop", "restart", "restarted"][-4:] or events[-3:] == ["stop", "restart", "restarted"]
    finally:
        await sandbox.delete()
    assert (await sandbox.get_status(include_all_states=True)).lifecycle_state == "deleted"
    with pytest.raises(Conflict):
        await sandbox.restart()


async def test_commit_makes_an_image_a_new_sandbox_starts_from(admin):
    tag = f"rock-test-commit/{uuid.uuid4().hex[:10]}:v1"
    first = Sandbox(config(admin))
    await first.start()
    second = None
    try:
        await first.write_bytes("/opt/committed/data.bin", b"\x00\x01committed")
        await first.arun("rm -f /etc/issue")  # a deletion must carry over too (a whiteout on bwrap)
        status = await first.commit(tag, timeout=300)
        assert status.phase == "SUCCEEDED" and status.image_tag == tag, status
        assert (await first.get_commit_status()).phase == "SUCCEEDED"
        second = Sandbox(config(admin, image=tag))
        await second.start()
        assert await second.read_bytes("/opt/committed/data.bin") == b"\x00\x01committed"
        assert (await second.arun("test -e /etc/issue; echo $?")).output.strip() == "1"
        assert (await second.arun("python3 -c 'print(6*7)'")).output.strip() == "42"
        config_ = docker.from_env().api.inspect_image(tag)["Config"]
        assert not config_.get("Entrypoint") and config_.get("Cmd") == ["python3"]
        assert (config_.get("Labels") or {}).get("rock.managed") in (None, "")
    finally:
        await first.delete()
        if second is not None:
            await second.delete()
        docker.from_env().api.remove_image(tag, force=True)


async def test_commit_failure_is_reported_in_the_status(admin):
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    try:
        for bad in ("Bad Tag With Spaces", "UPPER/case:v1", "x@sha256:00"):
            with pytest.raises(BadRequest, match="not a valid image name"):
                await sandbox.commit_async(bad)
        with pytest.raises(Conflict, match="already exists"):  # nobody replaces the image others start from
            await sandbox.commit_async("python:3.11")
        tag = f"127.0.0.1:{free_port()}/rock-test/unreachable:v1"  # nothing listens there: the push fails
        try:
            status = await sandbox.commit(tag, "user", "secret", timeout=120)
        finally:
            docker.from_env().api.remove_image(tag, force=True)
        assert status.phase == "FAILED" and status.error_code == "PUSH_FAILED" and status.failed_stage == "push"
        assert "127.0.0.1" in status.error_message, status
    finally:
        await sandbox.delete()


async def test_archive_then_restart_and_timed_transitions(admin):
    sandbox = Sandbox(config(admin, auto_archive_seconds=0))
    await sandbox.start()
    try:
        await sandbox.write_bytes("/root/archived.txt", b"from the archive")
        await sandbox.stop()  # auto_archive_seconds=0: archived right away
        status = await until(lambda: _state(sandbox, "archived"), timeout=120)
        assert status.archive_time and status.state == "archived"
        await sandbox.restart()
        assert await sandbox.read_bytes("/root/archived.txt") == b"from the archive"
        image = status.metadata["archive_image"]
        assert docker.from_env().api.inspect_image(image)
    finally:
        await sandbox.delete()
    await until(lambda: _image_gone(image), timeout=30)  # the archive goes with the sandbox
    doomed = Sandbox(config(admin, auto_delete_seconds=0))
    await doomed.start()
    await doomed.stop()
    await until(lambda: _state(doomed, "deleted"), timeout=30)
    # The history line is written with the state; a read may see the state a moment before it.
    try:
        status = await until(lambda: _deleted_in_history(doomed), timeout=30)
    except AssertionError:
        history = (await doomed.get_status(include_all_states=True)).state_history
        row = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            admin.ctx.sandboxes.store.get(doomed.sandbox_id), admin.server.loop))
        raise AssertionError(f"no delete in the history: {[(h.to_state, h.event) for h in history]}; the store's "
                             f"row: {row and (row.state, row.deleted_at)}; the admin's log above says more") from None
    assert [h.event for h in status.state_history][-2:] == ["stop", "delete"], status.state_history


async def _deleted_in_history(sandbox: Sandbox):
    status = await sandbox.get_status(include_all_states=True)
    return status if status.state_history and status.state_history[-1].event == "delete" else None


async def _image_gone(image: str) -> bool:
    try:
        docker.from_env().api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return True
    return False


async def test_archive_needs_a_stopped_sandbox(admin):
    sandbox = Sandbox(config(admin))
    await sandbox.start()
    try:
        with pytest.raises(Conflict, match="stop it"):
            await sandbox.archive()
    finally:
        await sandbox.delete()
