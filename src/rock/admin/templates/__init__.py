"""Templates: named images a tenant builds from a base and a list of steps (E2B's template API is
the door, rock.admin.e2b.templates), built by the admin's checked image build
(rock.admin.builds), so a template build is held to what ``POST /images/build`` is: the same
Dockerfile checks, build limits and build network.

A template belongs to one namespace: its names, tags, builds and uploaded files are that
namespace's, and every other namespace is told it does not exist. A template is visible (by name,
in lists, to ``Sandbox.create``) once one of its builds is ready; a first build that fails leaves
no template, no image and no build container behind, only its status and logs for its builder.

The records (templates, builds with their logs, tags) are the admin's store's (``templates``
table, rock.admin.store): several admins sharing a PostgreSQL store serve the same templates, and
a build one admin runs answers its status on every other. A ``templates.json`` an older admin kept
is taken into the store once at start and renamed ``templates.json.migrated``. Images are the
engine's: an admin resolves a template another admin built when both use the same engine (one
docker daemon) or registry-less engines that were given the image; otherwise the template is found
but its sandbox fails to start for want of the image. Uploads (COPY's files) are kept in
``<state_dir>/templates/files/<namespace key>/<hash>``; with a shared store also in the store
(up to SHARED_UPLOAD_MAX), so a build started on another admin finds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
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
LEASE_S = 30.0  # a running build's lease: another admin reads a build whose lease lapsed as one its admin left
SHARED_UPLOAD_MAX = 256 << 20  # the largest upload put in a shared store (larger ones stay with their admin)
LOG_FLUSH_S = 1.0  # how often a running build's new log lines reach the store


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


def _template(item: dict) -> Template:
    item = dict(item)
    builds = {k: Build(**v) for k, v in item.pop("builds").items()}
    return Template(**item, builds=builds)


def _owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:24]


def _lease(build: Build) -> str:
    """The lease the process running ``build`` holds while it runs (another process reads a lapsed one
    as a build whose admin stopped)."""
    return f"template-build:{build.build_id}"


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
    """Every namespace's templates, their builds and their uploads. The records are the admin's
    store's (rock.admin.store: SQLite, or PostgreSQL shared by several admins); this process
    keeps copies and re-reads, before each lookup, the rows another process changed."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.store = ctx.store
        self.root = Path(ctx.settings.state_dir) / "templates"
        self.items: dict[str, Template] = {}
        self._stamps: dict[str, str] = {}  # template id -> the stamp of the row our copy was read from
        self._here: dict[str, Template] = {}  # templates whose build runs in this process: our copy is the truth
        self.secret = secrets.token_bytes(32)  # signs upload links (shared through the store in open())
        self.holder = uuid.uuid4().hex  # this process, as the holder of its builds' leases
        self.tasks: set[asyncio.Task] = set()

    # -- records -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Take over a templates file an older admin kept (once: it is renamed aside), agree on the
        upload links' key with the other admins of the store, and read the records."""
        await self._migrate(self.root / "templates.json")
        # every admin of one store signs upload links with one key: a link made by one is honoured by another
        self.secret = bytes.fromhex(await self.store.claim("template-upload-key", self.secret.hex()))
        await self.refresh()

    async def _migrate(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            log.warning("templates: %s does not parse; left where it is, not taken into the store", path)
            return
        have = await self.store.template_stamps()
        for item in raw:
            template = _template(item)
            for build in template.builds.values():
                if build.status in ("waiting", "building"):  # the admin stopped during it
                    build.status, build.reason = "error", {"message": "the admin restarted during the build"}
            if template.template_id not in have:
                await self._write(template)
        path.replace(path.with_name(path.name + ".migrated"))
        log.info("templates: %d template(s) of %s moved into the store (the file is now %s.migrated)",
                 len(raw), path, path.name)

    async def _write(self, template: Template, failed_build: Build | None = None) -> None:
        """Store ``template`` (or, with ``failed_build``, the failed first build that left no template)."""
        stamp = uuid.uuid4().hex
        if failed_build is None:
            await self.store.save_template(template.template_id, template.owner, template.name,
                                           json.dumps(asdict(template)), stamp)
            self.items[template.template_id], self._stamps[template.template_id] = template, stamp
        else:
            await self.store.save_template(failed_build.build_id, template.owner, template.name,
                                           json.dumps(asdict(template)), stamp, failed=True, keep_failed=MAX_FAILED)

    async def refresh(self) -> None:
        """Bring the copies up to the store: read the rows that changed since we read them, drop the
        deleted ones; a build another process ran and left (its lease lapsed) is an error."""
        stamps = await self.store.template_stamps()
        for gone in set(self.items) - set(stamps) - set(self._here):
            self.items.pop(gone, None)
            self._stamps.pop(gone, None)
        stale = [k for k, stamp in stamps.items() if k not in self._here and self._stamps.get(k) != stamp]
        for row in await self.store.template_rows(stale):
            template = _template(json.loads(row["doc"]))
            self.items[template.template_id], self._stamps[template.template_id] = template, row["stamp"]
        for template in [t for t in self.items.values() if t.template_id not in self._here]:
            orphaned = False
            for build in template.builds.values():
                if build.status == "building" and await self.store.lease_holder(_lease(build)) is None:
                    build.status, build.reason = "error", {"message": "the admin running the build stopped during it"}
                    orphaned = True
            if orphaned:
                await self._write(template)

    def uploads(self, owner: str) -> Path:
        return self.root / "files" / _owner_key(owner)

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

    async def request(self, owner: str, ref: str, tags: list[str], cpu_count: int | None = None,
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
        await self._write(template)
        return template, build

    async def start(self, template: Template, build: Build, body: dict) -> None:
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
        if template.template_id in self._here or not await self.store.acquire_lease(_lease(build), self.holder, LEASE_S):
            raise Conflict(f"build '{build.build_id}' was started already")
        build.status = "building"
        self._here[template.template_id] = template
        try:
            await self._write(template)
        except BaseException:
            self._here.pop(template.template_id, None)
            raise
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

        keeper = asyncio.create_task(self._keep(template, build), name=f"template-build-keeper-{build.build_id}")
        try:
            await self._fetch_uploads(template.owner, the_plan.hashes)
            with step_plan.context(the_plan, self.uploads(template.owner)) as context:
                await checked_build(self.ctx, context, "Dockerfile", image, template.owner, say, echo)
        except Exception as exc:  # noqa: BLE001 - every failure is the build's status, with its words
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self._log(build, message, "error", current[0])
            build.status = "error"
            build.reason = {"message": message, "step": current[0],
                            "logEntries": [e for e in build.logs if e["level"] == "error"][-20:]}
            log.info("template %s build %s failed: %s", template.name, build.build_id, message)
        else:
            build.image, build.status = image, "ready"
            for tag in template.pending_tags:
                template.tags[tag] = build.build_id
            self._log(build, f"built {template.name} as {image}")
            log.info("template %s (%s) built: %s", template.name, template.template_id, image)
        finally:
            keeper.cancel()
        template.pending_tags = []
        try:
            if template.ready:
                await self._write(template)
            else:  # a first build that failed leaves no template: only its status, for its builder
                self.items.pop(template.template_id, None)
                self._stamps.pop(template.template_id, None)
                await self._write(template, failed_build=build)
                await self.store.delete_template(template.template_id)
        finally:
            self._here.pop(template.template_id, None)
            await self.store.release_lease(_lease(build), self.holder)

    async def _keep(self, template: Template, build: Build) -> None:
        """While ``build`` runs: its logs into the store now and then (another admin answers its
        status too), and its lease renewed (a lapsed lease tells the others this admin stopped)."""
        written = len(build.logs)
        while True:
            await asyncio.sleep(LOG_FLUSH_S)
            try:
                await self.store.acquire_lease(_lease(build), self.holder, LEASE_S)
                if len(build.logs) != written:
                    written = len(build.logs)
                    await self._write(template)
            except Exception as exc:  # noqa: BLE001 - the build goes on; its end is written again
                log.warning("template %s: could not store the build's progress: %s", template.name, exc)

    async def status(self, owner: str, ref: str, build_id: str) -> tuple[Template, Build]:
        """A build of ``owner``'s template, a failed first build's included."""
        for row in await self.store.template_rows([build_id]):
            failed = _template(json.loads(row["doc"]))
            if row["failed"] and failed.owner == owner and ref in (failed.template_id, failed.name):
                return failed, failed.builds[build_id]
        return self.build(owner, ref, build_id)

    async def assign(self, owner: str, target: str, tags: list[str]) -> Build:
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
        await self._write(template)
        return build

    async def untag(self, owner: str, ref: str, tags: list[str]) -> None:
        template = self.find(owner, ref)
        missing = [t for t in tags if t not in template.tags]
        if missing:
            raise TemplateNotFound(f"template '{ref}' has no tag {', '.join(missing)}")
        for tag in tags:
            template.tags.pop(tag)
        await self._write(template)

    async def delete(self, owner: str, ref: str) -> None:
        """Delete ``owner``'s template and its builds' images."""
        from rock.runtime.docker.images import remove_image

        template = self.find(owner, ref, building=True)
        if any(b.status == "building" for b in template.builds.values()):
            raise Conflict(f"template '{ref}' has a build in progress: wait for it before deleting the template")
        self.items.pop(template.template_id, None)
        self._stamps.pop(template.template_id, None)
        await self.store.delete_template(template.template_id)
        for build in template.builds.values():
            if build.image:
                await asyncio.to_thread(remove_image, build.image)
        log.info("template %s (%s) deleted", template.name, template.template_id)

    # -- uploads -------------------------------------------------------------------------------

    def upload_token(self, owner: str, template_id: str, files_hash: str) -> str:
        raw = f"{owner}\0{template_id}\0{files_hash}".encode()
        return hashlib.blake2b(raw, key=self.secret, digest_size=24).hexdigest()

    async def has_upload(self, owner: str, files_hash: str) -> bool:
        if (self.uploads(owner) / files_hash).is_file():
            return True
        return self.store.shared and await self.store.template_file(_owner_key(owner), files_hash, data=False) is not None

    async def _fetch_uploads(self, owner: str, hashes: list[str]) -> None:
        """The uploads a build needs that another admin of the store received, into this admin's folder."""
        folder = self.uploads(owner)
        for files_hash in hashes:
            if not self.store.shared or (folder / files_hash).is_file():
                continue
            data = await self.store.template_file(_owner_key(owner), files_hash)
            if data is not None:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{files_hash}.{uuid.uuid4().hex}"
                await asyncio.to_thread(tmp.write_bytes, data)
                tmp.replace(folder / files_hash)

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
        size = (folder / files_hash).stat().st_size
        if self.store.shared and size <= SHARED_UPLOAD_MAX:  # another admin of the store may run the build
            data = await asyncio.to_thread((folder / files_hash).read_bytes)
            await self.store.save_template_file(_owner_key(owner), files_hash, data)
        elif self.store.shared:
            log.warning("templates: an upload of %d bytes is kept by this admin only (over %d): a build that "
                        "uses it runs only here", size, SHARED_UPLOAD_MAX)

    async def close(self) -> None:
        """Stop the builds running here; each is an error in the store (and its lease let go) at once."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for template in list(self._here.values()):
            for build in template.builds.values():
                if build.status == "building":
                    build.status, build.reason = "error", {"message": "the admin stopped during the build"}
                    await self.store.release_lease(_lease(build), self.holder)
            template.pending_tags = []
            await self._write(template)
        self._here.clear()
