"""Templates: named images a tenant builds from a base and a list of steps (E2B's template API is
the door, rock.admin.e2b.templates), built by the admin's checked image build
(rock.admin.builds), so a template build is held to what ``POST /images/build`` is: the same
Dockerfile checks, build limits and build network.

A template belongs to one namespace: its names, tags, builds and uploaded files are that
namespace's, and every other namespace is told it does not exist. A template is visible (by name,
in lists, to ``Sandbox.create``) once one of its builds is ready; a first build that fails leaves
no template, no image and no build container behind, only its status and logs for its builder.

The records are kept in ``<state_dir>/templates/templates.json`` (one admin's; the images are the
engine's), uploads in ``<state_dir>/templates/files/<namespace key>/<hash>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rock.admin.builds import checked_build
from rock.admin.templates import steps as step_plan
from rock.errors import BadRequest, Conflict, RockError

log = logging.getLogger("rock.admin.templates")
IMAGE_REPO = "rock-template"
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DEFAULT_TAG = "latest"
MAX_LOGS = 10000  # lines kept per build: a chatty RUN does not grow the admin without bound
MAX_FAILED = 1000  # failed first builds whose status is kept (the oldest go first)


class TemplateNotFound(RockError):
    """No such template, build or tag for this namespace (another namespace's answers the same). HTTP 404."""

    status_code = 404


@dataclass
class Build:
    """One build of a template: its status (waiting, building, ready, error), its log lines and,
    when ready, its image."""

    build_id: str
    status: str = "waiting"
    logs: list[dict] = field(default_factory=list)
    reason: dict | None = None
    image: str | None = None
    created_at: float = field(default_factory=time.time)
    start_cmd: str | None = None
    ready_cmd: str | None = None
    cpu_count: int | None = None  # what a sandbox of this build gets (None: the admin's default)
    memory_mb: int | None = None


@dataclass
class Template:
    """A namespace's template: its id, its name, its tags (tag -> build id) and its builds."""

    template_id: str
    owner: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    builds: dict[str, Build] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    pending_tags: list[str] = field(default_factory=list)  # what the running build's success tags

    @property
    def ready(self) -> bool:
        return any(b.status == "ready" for b in self.builds.values())

    def build_of(self, tag: str) -> Build | None:
        """The build ``tag`` points at; a build's own id stands for it too (E2B's ``name:<build id>``)."""
        build_id = self.tags.get(tag)
        return self.builds.get(build_id) if build_id else self.builds.get(tag)


def served(settings) -> dict[str, str]:
    """The templates the admin serves to every namespace: name -> image (``base`` and the code
    interpreter's are the default image; ``e2b.templates`` adds more)."""
    # code-interpreter-v1: e2b_code_interpreter's default; its server is the agent's (rock/agent/e2b/interpreter.py)
    return {"base": settings.default_image, "code-interpreter-v1": settings.default_image, **settings.e2b.templates}


def split_name(ref: str) -> tuple[str, str]:
    """``name`` or ``name:tag`` as (name, tag); the default tag is ``latest``."""
    name, _, tag = ref.partition(":")
    return name, tag or DEFAULT_TAG


class Templates:
    """Every namespace's templates on this admin, their builds and their uploads."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.root = Path(ctx.settings.state_dir) / "templates"
        self.items: dict[str, Template] = {}
        self.secret = secrets.token_bytes(32)  # signs upload links (a link outlives no admin)
        self.tasks: set[asyncio.Task] = set()
        # first builds that failed: their template is gone, their status stays for their builder
        self._failed: dict[str, tuple[Template, Build]] = {}
        self._load()

    # -- records -----------------------------------------------------------------------------

    def _load(self) -> None:
        path = self.root / "templates.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            log.warning("templates: %s does not parse; starting without templates", path)
            return
        for item in raw:
            builds = {k: Build(**v) for k, v in item.pop("builds").items()}
            template = Template(**item, builds=builds)
            for build in template.builds.values():
                if build.status in ("waiting", "building"):  # the admin stopped during it
                    build.status, build.reason = "error", {"message": "the admin restarted during the build"}
            self.items[template.template_id] = template

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".templates.{os.getpid()}.tmp"
        tmp.write_text(json.dumps([asdict(t) for t in self.items.values()]))
        tmp.replace(self.root / "templates.json")

    def uploads(self, owner: str) -> Path:
        return self.root / "files" / hashlib.sha256(owner.encode()).hexdigest()[:24]

    # -- lookups -------------------------------------------------------------------------------

    def of(self, owner: str) -> list[Template]:
        """``owner``'s templates with a ready build."""
        return [t for t in self.items.values() if t.owner == owner and t.ready]

    def find(self, owner: str, ref: str, building: bool = False) -> Template:
        """``owner``'s template by id or name (``name:tag`` too); only a ready one unless
        ``building``; TemplateNotFound otherwise, another namespace's included."""
        name = split_name(ref)[0]
        for t in self.items.values():
            if t.owner == owner and (t.template_id == ref or t.name == name) and (building or t.ready):
                return t
        raise TemplateNotFound(f"template '{ref}' not found")

    def build(self, owner: str, ref: str, build_id: str) -> tuple[Template, Build]:
        template = self.find(owner, ref, building=True)
        build = template.builds.get(build_id)
        if build is None:
            raise TemplateNotFound(f"build '{build_id}' of template '{ref}' not found")
        return template, build

    def image_of(self, owner: str, ref: str) -> tuple[str, Build] | None:
        """The image of ``owner``'s template ``name[:tag]`` (or id; the tag may be a build id), and its
        build; None when ``owner`` has no such template; TemplateNotFound, in E2B's words, when the
        template has no ready build by that tag."""
        try:
            template = self.find(owner, ref)
        except TemplateNotFound:
            return None
        tag = split_name(ref)[1] if ref != template.template_id else DEFAULT_TAG
        build = template.build_of(tag)
        if build is None or not build.image:
            # E2B's words, which clients read: Harbor waits on "does not exist" for a build still running
            raise TemplateNotFound(f"tag '{tag}' does not exist for template '{template.name}'")
        return build.image, build

    # -- changes -------------------------------------------------------------------------------

    def request(self, owner: str, ref: str, tags: list[str], cpu_count: int | None = None,
                memory_mb: int | None = None) -> tuple[Template, Build]:
        """A new build of ``owner``'s template ``name[:tag]``, made when it is new; the build's
        tags (the name's and ``tags``) point at it once it is ready."""
        name, tag = split_name(ref)
        if not NAME.match(name):
            raise BadRequest(f"template name {name!r} must be lower-case letters, digits, '.', '_' or '-' "
                             "(at most 63), starting with a letter or digit")
        wanted = [tag, *tags]
        for t in wanted:
            if not TAG.match(t):
                raise BadRequest(f"tag {t!r} must be letters, digits, '.', '_' or '-' (at most 128)")
        try:
            template = self.find(owner, name, building=True)
        except TemplateNotFound:
            template = Template(template_id=uuid.uuid4().hex[:20], owner=owner, name=name)
            self.items[template.template_id] = template
        if any(b.status == "building" for b in template.builds.values()):
            raise Conflict(f"template '{name}' has a build in progress: wait for it before starting another")
        for stale in [b for b in template.builds.values() if b.status == "waiting"]:  # requested, never started
            template.builds.pop(stale.build_id)
        for key, value in (("cpuCount", cpu_count), ("memoryMB", memory_mb)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise BadRequest(f"{key} must be a positive integer")
        build = Build(build_id=str(uuid.uuid4()), cpu_count=cpu_count, memory_mb=memory_mb)
        template.builds[build.build_id] = build
        template.pending_tags = list(dict.fromkeys(wanted))
        self._save()
        return template, build

    def start(self, template: Template, build: Build, body: dict) -> None:
        """Start ``build`` from a ``TemplateBuildStartV2`` body; a malformed body is refused here,
        before anything runs, and the build runs on in the background."""
        if build.status != "waiting":
            raise Conflict(f"build '{build.build_id}' was started already")
        if body.get("fromImageRegistry"):
            raise BadRequest("fromImageRegistry is not supported: the admin's engine pulls public images, or "
                             "uses those it already has")
        image, parent = body.get("fromImage"), body.get("fromTemplate")
        if bool(image) == bool(parent):
            raise BadRequest("give exactly one of fromImage and fromTemplate")
        if parent:
            if not isinstance(parent, str):
                raise BadRequest("fromTemplate must be a template name")
            base = self.base_image(template.owner, parent)
        else:
            if not isinstance(image, str):
                raise BadRequest("fromImage must be an image name")
            base = image
        for key in ("startCmd", "readyCmd"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise BadRequest(f"{key} must be a string")
        the_plan = step_plan.plan(base, body.get("steps") or [])
        build.start_cmd, build.ready_cmd = body.get("startCmd") or None, body.get("readyCmd") or None
        build.status = "building"
        self._save()
        task = asyncio.create_task(self._run(template, build, the_plan), name=f"template-build-{build.build_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def base_image(self, owner: str, ref: str) -> str:
        """The image a ``fromTemplate`` names: one of ``owner``'s templates or the admin's own."""
        built = self.image_of(owner, ref)
        if built is not None:
            return built[0]
        image = served(self.ctx.settings).get(ref)
        if image is None:
            raise TemplateNotFound(f"template '{ref}' not found")
        return image

    def _log(self, build: Build, message: str, level: str = "info", step: str | None = None) -> None:
        if len(build.logs) < MAX_LOGS:
            build.logs.append({"timestamp": time.time(), "level": level, "message": message, "step": step})

    async def _run(self, template: Template, build: Build, the_plan: step_plan.Plan) -> None:
        image = f"{IMAGE_REPO}/{template.template_id}:{build.build_id[:12]}"
        current = [step_plan.BASE_STEP]

        def say(text: str) -> None:  # "Step 3/7 : RUN ...": the builder's step n is the plan's n-th line
            try:
                n = int(text.split()[1].split("/")[0])
                current[0] = the_plan.step_of[n - 1]
            except (IndexError, ValueError):
                pass
            self._log(build, text, step=current[0])

        def echo(text: str) -> None:
            self._log(build, text, step=current[0])

        try:
            with step_plan.context(the_plan, self.uploads(template.owner)) as context:
                await checked_build(self.ctx, context, "Dockerfile", image, template.owner, say, echo)
        except Exception as exc:  # noqa: BLE001 - every failure is the build's status, with its words
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self._log(build, message, "error", current[0])
            build.status = "error"
            build.reason = {"message": message, "step": current[0],
                            "logEntries": [e for e in build.logs if e["level"] == "error"][-20:]}
            if not template.ready:  # a first build that failed leaves no template
                self.items.pop(template.template_id, None)
                self._failed[build.build_id] = (template, build)
                while len(self._failed) > MAX_FAILED:
                    self._failed.pop(next(iter(self._failed)))
            log.info("template %s build %s failed: %s", template.name, build.build_id, message)
        else:
            build.image, build.status = image, "ready"
            for tag in template.pending_tags:
                template.tags[tag] = build.build_id
            self._log(build, f"built {template.name} as {image}")
            log.info("template %s (%s) built: %s", template.name, template.template_id, image)
        template.pending_tags = []
        self._save()

    def status(self, owner: str, ref: str, build_id: str) -> tuple[Template, Build]:
        """A build of ``owner``'s template, a failed first build's included."""
        failed = self._failed.get(build_id)
        if failed is not None and failed[0].owner == owner and ref in (failed[0].template_id, failed[0].name):
            return failed
        return self.build(owner, ref, build_id)

    def assign(self, owner: str, target: str, tags: list[str]) -> Build:
        """Point ``tags`` of ``owner``'s template at the build ``target`` (``name:tag``) names."""
        template = self.find(owner, target)
        build = template.build_of(split_name(target)[1])
        if build is None:
            raise TemplateNotFound(f"template '{target}' not found")
        for tag in tags:
            if not TAG.match(tag):
                raise BadRequest(f"tag {tag!r} must be letters, digits, '.', '_' or '-' (at most 128)")
        for tag in tags:
            template.tags[tag] = build.build_id
        self._save()
        return build

    def untag(self, owner: str, ref: str, tags: list[str]) -> None:
        template = self.find(owner, ref)
        missing = [t for t in tags if t not in template.tags]
        if missing:
            raise TemplateNotFound(f"template '{ref}' has no tag {', '.join(missing)}")
        for tag in tags:
            template.tags.pop(tag)
        self._save()

    async def delete(self, owner: str, ref: str) -> None:
        """Delete ``owner``'s template and its builds' images."""
        from rock.runtime.docker.images import remove_image

        template = self.find(owner, ref, building=True)
        if any(b.status == "building" for b in template.builds.values()):
            raise Conflict(f"template '{ref}' has a build in progress: wait for it before deleting the template")
        self.items.pop(template.template_id, None)
        self._save()
        for build in template.builds.values():
            if build.image:
                await asyncio.to_thread(remove_image, build.image)
        log.info("template %s (%s) deleted", template.name, template.template_id)

    # -- uploads -------------------------------------------------------------------------------

    def upload_token(self, owner: str, template_id: str, files_hash: str) -> str:
        raw = f"{owner}\0{template_id}\0{files_hash}".encode()
        return hashlib.blake2b(raw, key=self.secret, digest_size=24).hexdigest()

    def has_upload(self, owner: str, files_hash: str) -> bool:
        return (self.uploads(owner) / files_hash).is_file()

    def owner_of_upload(self, template_id: str, files_hash: str, token: str) -> str:
        """The namespace an upload link was made for; TemplateNotFound for a link we did not make."""
        template = self.items.get(template_id)
        if template is None or not step_plan.HASH.match(files_hash) or not hmac.compare_digest(
                self.upload_token(template.owner, template_id, files_hash), token):
            raise TemplateNotFound("no such upload link: get one from GET /templates/<id>/files/<hash>")
        return template.owner

    async def receive(self, owner: str, files_hash: str, chunks: AsyncIterator[bytes]) -> None:
        """Keep an upload (written aside, then renamed: a cut-off upload leaves nothing)."""
        folder = self.uploads(owner)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{files_hash}.{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as out:  # noqa: ASYNC230 - a local file, written chunk by chunk as the upload comes
                async for chunk in chunks:
                    out.write(chunk)
            if tmp.stat().st_size == 0:
                raise BadRequest("the upload is empty: send the files as a tar (gzip or not)")
            tmp.replace(folder / files_hash)
        finally:
            tmp.unlink(missing_ok=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
