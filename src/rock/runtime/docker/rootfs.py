"""Docker images as root filesystems, for the backends without an engine (bwrap, gVisor).

An image is exported from the local engine once, unpacked into a folder keyed by its image id
(a rebuilt image is unpacked again), and the files Docker would add at run time are written in.
A tar file named by a host path is unpacked the same way. The backends mount the result
read-only as a sandbox's lower layer (``rock.runtime.image_root``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docker.errors import DockerException, ImageNotFound

from rock.errors import SandboxStartError
from rock.runtime.docker.engine import client
from rock.runtime.host_policy import is_host_path

log = logging.getLogger("rock.runtime.docker")


class ImageMissing(SandboxStartError):
    """The image is not in the local engine (a pull may bring it)."""


def inspect_image(image: str) -> tuple[str, dict[str, str]]:
    """The image's id and its environment variables; ImageMissing when it is not local."""
    try:
        info = client().inspect_image(image)
    except ImageNotFound:
        raise ImageMissing(f"{image!r} is neither a directory, a tar file nor a local Docker image") from None
    except DockerException as exc:
        raise SandboxStartError(f"cannot inspect image {image!r}: {exc}") from None
    env = dict(e.split("=", 1) for e in (info.get("Config") or {}).get("Env") or [] if "=" in e)
    return info["Id"], env


def export_image(image: str, write: Callable[[bytes], Any]) -> None:
    """Stream the image's root filesystem as a tar to ``write``, logging progress."""
    api = client()
    cid = api.create_container(image, command=["/bin/true"], labels={"rock.export": "1"})["Id"]
    try:
        total, next_report = 0, 64 << 20
        for chunk in api.export(cid):
            write(chunk)
            total += len(chunk)
            if total >= next_report:
                log.info("exporting %s: %d MiB", image, total >> 20)
                next_report += 64 << 20
        log.info("exported %s: %d MiB", image, total >> 20)
    finally:
        api.remove_container(cid, force=True)


_image_locks: dict[str, asyncio.Lock] = {}
_image_ids: dict[str, tuple[float, str, dict[str, str]]] = {}
IMAGE_ID_TTL = 30.0  # how long a tag -> image id answer is trusted before asking the engine again


async def image_rootfs(image: str, images_dir: Path) -> tuple[Path, dict[str, str]]:
    """An unpacked root filesystem for a tar file or a local Docker image, made once and cached
    under ``images_dir`` (keyed by the image id, so a rebuilt image is unpacked again)."""
    if is_host_path(image) and os.path.isfile(image):  # a relative name is an image name, never a file here
        st = os.stat(image)
        key = _safe(Path(image).name) + "-" + hashlib.sha256(f"{os.path.realpath(image)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        env: dict[str, str] = {}
    else:
        cached = _image_ids.get(image)
        if cached is None or time.monotonic() - cached[0] > IMAGE_ID_TTL:
            image_id, env = await asyncio.to_thread(inspect_image, image)
            _image_ids[image] = cached = (time.monotonic(), image_id, env)
        _, image_id, env = cached
        key = _safe(image) + "-" + image_id.split(":")[-1][:12]
    root = images_dir / key / "rootfs"
    if root.is_dir():
        return root, env
    async with _image_locks.setdefault(key, asyncio.Lock()):
        if not root.is_dir():
            await asyncio.to_thread(_unpack, image, root)
    return root, env


def _unpack(image: str, root: Path) -> None:
    """Unpack into a temporary sibling and rename it into place: readers never see half a tree."""
    t0 = time.perf_counter()
    tmp = root.parent / f".rootfs.{os.getpid()}.{time.monotonic_ns()}"
    tmp.mkdir(parents=True)
    try:
        tar = ["tar", "-x", "-p", "--numeric-owner", "-C", str(tmp), "-f"]
        if is_host_path(image) and os.path.isfile(image):
            log.info("unpacking %s into %s", image, root)
            subprocess.run([*tar, image], check=True, capture_output=True)
        else:
            log.info("exporting docker image %s into %s (once per image)", image, root)
            # tar's complaints go to a file: a full stderr pipe would stall the export.
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen([*tar, "-"], stdin=subprocess.PIPE, stderr=err)
                try:
                    export_image(image, proc.stdin.write)
                finally:
                    proc.stdin.close()
                    proc.wait()
                if proc.returncode:
                    err.seek(0)
                    raise SandboxStartError(f"unpacking image {image} failed: {err.read()[-500:].decode(errors='replace')}")
        _runtime_files(tmp)
        try:
            tmp.rename(root)
        except OSError:  # another worker finished first
            if not root.is_dir():
                raise
    except subprocess.CalledProcessError as exc:
        raise SandboxStartError(f"unpacking {image} failed: {exc.stderr.decode(errors='replace')[-500:]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("image %s ready at %s in %.1f s", image, root, time.perf_counter() - t0)


# What Docker writes into every container without a network (`docker run --network none`): an
# image carries an empty /etc/hosts (or none), and without these lines `localhost` does not
# resolve in a bwrap sandbox, where ROCK's own agent configs reach the model service at
# http://localhost:8080/v1.
ETC_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
             "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def _runtime_files(root: Path) -> None:
    """The files Docker provides at run time that an unpacked image lacks: /etc/hosts."""
    hosts = root / "etc" / "hosts"
    if (root / "etc").is_dir() and not hosts.is_symlink() and (not hosts.exists() or hosts.stat().st_size == 0):
        hosts.write_text(ETC_HOSTS)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:64]
