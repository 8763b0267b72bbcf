"""Making images from sandboxes (ROCK's commit and archive) through the Docker engine.

A docker sandbox is committed with the engine's own commit; a bwrap sandbox's root (its
overlay's upper layer over its lower layer) is streamed as a tar into an import. Either way
the image gets the configuration of the image the sandbox started from, never the sandbox's
own (its agent entrypoint, its rock labels and variables), so it runs like any image.
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
import time

from docker.errors import APIError, DockerException, ImageNotFound

from rock.actions.images import REPO_COMPONENT
from rock.errors import BadRequest, SandboxStartError
from rock.runtime.docker.engine import LABEL, client

log = logging.getLogger("rock.runtime.docker.images")

# Labels a sandbox's container carries; an image made from it must not, or our reaper would
# take a plain `docker run` of it for a leftover sandbox.
_OUR_LABELS = (LABEL, "rock.sandbox_id", "rock.owner", "rock.state_dir", "rock.namespace")


# Docker's reference grammar (distribution/reference), without digests.
_REFERENCE = re.compile(rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{REPO_COMPONENT}(?:/{REPO_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?$")


def split_tag(image_tag: str) -> tuple[str, str]:
    """'reg:5000/a/b:v1' -> ('reg:5000/a/b', 'v1'); no tag -> 'latest'."""
    m = _REFERENCE.match(image_tag or "")
    # A first part without '.', ':' or 'localhost' is a path component, not a registry: lower case only.
    bad_first = m and not has_registry(image_tag) and image_tag.split("/", 1)[0] != image_tag.split("/", 1)[0].lower()
    if not m or bad_first or len(image_tag) > 255:
        raise BadRequest(f"image tag {image_tag!r} is not a valid image name: use '[registry[:port]/]repository[:tag]' "
                         "with a lower-case repository")
    name, _, tag = image_tag.rpartition(":")
    if not name or "/" in tag:
        return image_tag, "latest"
    return name, tag


def base_config(image: str | None) -> dict:
    """Entrypoint, Cmd, Env, WorkingDir of the image a sandbox started from ({} if unknown)."""
    if not image:
        return {}
    try:
        return client().inspect_image(image).get("Config") or {}
    except (ImageNotFound, DockerException):
        return {}


MADE_BY = "rock.made_by"  # the namespace whose commit or build made an image (see claim_tag)


def claim_tag(image_tag: str, made_by: str) -> None:
    """Refuse a commit or build under a name that exists and is not the same namespace's own work:
    one tenant must not replace an image (python:3.11, another's commit) that others start from."""
    from rock.errors import Conflict

    try:
        labels = (client().inspect_image(image_tag).get("Config") or {}).get("Labels") or {}
    except ImageNotFound:
        return
    if labels.get(MADE_BY) != made_by:
        raise Conflict(f"image {image_tag} already exists on this node and was not made by your commits or builds; "
                       "choose another tag")


def _changes(config: dict, made_by: str = "") -> list[str]:
    """Dockerfile instructions that give a committed or imported image its base image's config."""
    import json

    out = [f"ENTRYPOINT {json.dumps(config.get('Entrypoint') or [])}"]
    if config.get("Cmd") is not None:
        out.append(f"CMD {json.dumps(config['Cmd'])}")
    for env in config.get("Env") or []:
        key, _, value = env.partition("=")
        out.append(f"ENV {key}={json.dumps(value)}")
    if config.get("WorkingDir"):
        out.append(f"WORKDIR {config['WorkingDir']}")
    out.append("LABEL " + " ".join(f'{k}=""' for k in _OUR_LABELS) + f" {MADE_BY}={json.dumps(made_by)}")
    return out


def commit_container(container_id: str, image_tag: str, base_image: str | None, made_by: str = "") -> str:
    """A container's filesystem as image ``image_tag``, with the base image's config (not the sandbox's
    agent entrypoint); its id."""
    repo, tag = split_tag(image_tag)
    t0 = time.perf_counter()
    config = base_config(base_image)
    try:
        image_id = client().commit(container_id, repository=repo, tag=tag, changes=_changes(config, made_by))["Id"]
        if not config.get("Entrypoint"):
            image_id = _clear_entrypoint(image_id, image_tag, config)
    except APIError as exc:
        raise SandboxStartError(f"docker commit to {image_tag} failed: {exc.explanation or exc}") from None
    log.info("committed container %s as %s in %.1f s", container_id[:12], image_tag, time.perf_counter() - t0)
    return image_id


def _clear_entrypoint(image_id: str, image_tag: str, config: dict) -> str:
    """A commit merges an empty ENTRYPOINT with the container's (our agent's); only a build step
    clears it. It adds no layer, just a new config."""
    import io
    import json
    import tarfile

    dockerfile = f"FROM {image_id}\nENTRYPOINT []\n"
    if config.get("Cmd") is not None:
        dockerfile += f"CMD {json.dumps(config['Cmd'])}\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    context.seek(0)
    return build_image(context, image_tag)


def build_base(name: str) -> tuple[str, list[str]]:
    """A build's base image, pulled if missing: its id and its ONBUILD triggers (what
    rock.runtime.docker.build_context checks and pins)."""
    if not _REFERENCE.match(name) and not re.match(r"^sha256:[0-9a-f]{64}$", name):
        raise BadRequest(f"the base image {name!r} is not a valid image name")
    ensure_image(name, "missing")
    info = client().inspect_image(name)
    return info["Id"], list((info.get("Config") or {}).get("OnBuild") or [])


@functools.cache
def _build_client():
    # A build step may print nothing for a long time (a large COPY, a quiet RUN): no 120 s read limit.
    import docker

    return docker.from_env(version="auto", timeout=3600).api


def build_image(context, tag: str, dockerfile: str = "Dockerfile", labels: dict | None = None,
                limits: dict | None = None, say=None, network: str | None = None, echo=None) -> str:
    """``docker build`` of a build context (a tar stream) as ``tag``; each step goes to ``say`` (or
    the log), every other line the builder prints (a RUN's output) to ``echo`` when given.
    ``network``: the network of its RUN steps (the engine's default when None). Returns the image
    id; a failure raises SandboxStartError with the builder's words."""
    say = say or (lambda text: log.info("building %s: %s", tag, text))
    t0 = time.perf_counter()
    try:
        for chunk in _build_client().build(fileobj=context, custom_context=True, tag=tag, dockerfile=dockerfile,
                                           labels=labels, rm=True, forcerm=True, decode=True,
                                           container_limits=limits, network_mode=network):
            if "error" in chunk:
                raise SandboxStartError(f"docker build of {tag} failed: {chunk['error'].strip()}")
            text = (chunk.get("stream") or "").strip()
            if text.startswith("Step "):
                say(text)
            elif text and echo is not None:
                echo(text)
    except APIError as exc:
        raise SandboxStartError(f"docker build of {tag} failed: {exc.explanation or exc}") from None
    image_id = client().inspect_image(tag)["Id"]
    log.info("built %s (%s) in %.1f s", tag, image_id[:19], time.perf_counter() - t0)
    return image_id


def import_tree(root: str, image_tag: str, base_image: str | None, exclude: tuple[str, ...] = (),
                made_by: str = "") -> str:
    """Import the directory tree at ``root`` as the image ``image_tag`` (tar streamed, not staged)."""
    repo, tag = split_tag(image_tag)
    t0 = time.perf_counter()
    argv = ["tar", "-C", root, "--numeric-owner", "--xattrs", "-cf", "-"]
    argv += [f"--exclude=./{p.strip('/')}" for p in exclude] + ["."]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = client().import_image(src=proc.stdout, repository=repo, tag=tag, changes=_changes(base_config(base_image), made_by),
                                    stream_src=True)
    except APIError as exc:
        raise SandboxStartError(f"docker import to {image_tag} failed: {exc.explanation or exc}") from None
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.wait()
    if proc.returncode not in (0, 1):  # 1: a file changed while read (the sandbox may be running)
        raise SandboxStartError(f"reading the sandbox's files for {image_tag} failed: {err[-500:]}")
    image_id = client().inspect_image(image_tag)["Id"]
    log.info("imported %s as %s (%s) in %.1f s", root, image_tag, image_id[:19], time.perf_counter() - t0)
    del out
    return image_id


def has_registry(image: str) -> bool:
    """Whether an image name starts with a registry host (docker's rule: a '.' or ':' or 'localhost')."""
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def push(image_tag: str, username: str | None, password: str | None) -> None:
    """Push ``image_tag`` to its registry, logged in when credentials are given."""
    repo, tag = split_tag(image_tag)
    auth = {"username": username, "password": password} if username else None
    registry = repo.split("/", 1)[0]
    try:
        for line in client().push(repo, tag=tag, auth_config=auth, stream=True, decode=True):
            if "error" in line or "errorDetail" in line:
                reason = (line.get("errorDetail") or {}).get("message") or line.get("error")
                raise SandboxStartError(f"pushing {image_tag} to registry {registry} failed: {reason}")
    except APIError as exc:
        raise SandboxStartError(f"pushing {image_tag} to registry {registry} failed: {exc.explanation or exc}") from None
    log.info("pushed %s to %s", image_tag, registry)


def remove_image(image_tag: str) -> None:
    """Remove image ``image_tag`` if it exists."""
    try:
        client().remove_image(image_tag, force=True)
    except (ImageNotFound, APIError):
        pass


# -- getting images: pull policy, registry logins, progress --------------------------------------

PULL_POLICIES = ("missing", "always", "never")
PROGRESS_EVERY = 2.0  # seconds between progress lines of one pull


def registry_of(image: str) -> str:
    """The registry an image name pulls from (``docker.io`` when it names none)."""
    return image.split("/", 1)[0] if has_registry(image) else "docker.io"


def present(image: str) -> bool:
    """Whether the engine has image ``image`` locally."""
    try:
        client().inspect_image(image)
        return True
    except ImageNotFound:
        return False


def ensure_image(image: str, policy: str = "missing", username: str | None = None, password: str | None = None) -> None:
    """Make ``image`` present in the engine as ``policy`` says: ``missing`` pulls only when it is
    not there, ``always`` pulls every time, ``never`` only checks."""
    if policy not in PULL_POLICIES:
        raise BadRequest(f"pull_policy must be one of {', '.join(PULL_POLICIES)}, not {policy!r}")
    if policy == "always" or not present(image):
        if policy == "never":
            raise SandboxStartError(f"image {image} is not in the local Docker engine and pull_policy is 'never'")
        pull(image, username, password)


def pull(image: str, username: str | None = None, password: str | None = None) -> None:
    """Pull through the engine, logging progress; a failure names the registry and the reason."""
    repo, tag = split_pull_ref(image)
    registry = registry_of(image)
    auth = {"username": username, "password": password, "serveraddress": registry} if username else None
    t0 = last = time.perf_counter()
    layers: dict[str, tuple[int, int]] = {}  # layer id -> (bytes done, bytes total)
    done: set[str] = set()
    log.info("pulling %s from %s%s", image, registry, " (logged in as %s)" % username if username else "")
    try:
        for line in client().pull(repo, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in line or "errorDetail" in line:
                reason = (line.get("errorDetail") or {}).get("message") or line.get("error")
                raise SandboxStartError(f"pulling {image} from registry {registry} failed: {reason}")
            layer, status = line.get("id"), line.get("status", "")
            detail = line.get("progressDetail") or {}
            if layer and detail.get("total"):
                layers[layer] = (detail.get("current", 0), detail["total"])
            if layer and status in ("Pull complete", "Already exists"):
                done.add(layer)
            if time.perf_counter() - last >= PROGRESS_EVERY:
                last = time.perf_counter()
                got, total = sum(c for c, _ in layers.values()), sum(t for _, t in layers.values())
                log.info("pulling %s: %d layers done, %.1f of %.1f MiB", image, len(done), got / 2**20, total / 2**20)
    except APIError as exc:
        raise SandboxStartError(f"pulling {image} from registry {registry} failed: {exc.explanation or exc}") from None
    except DockerException as exc:
        raise SandboxStartError(f"pulling {image} from registry {registry} failed: {exc}") from None
    log.info("pulled %s (%d layers) in %.1f s", image, len(done), time.perf_counter() - t0)


def split_pull_ref(image: str) -> tuple[str, str | None]:
    """A pull reference: 'name:tag' -> (name, tag); 'name@sha256:..' -> (name@digest, None)."""
    if "@" in image:
        return image, None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, "latest"
    return name, tag
