"""E2B's template build steps (``TemplateBuildStartV2``: a base, then RUN, COPY, ENV, WORKDIR and
USER steps) as a build context for the admin's checked image build.

Every value becomes a Dockerfile instruction in its exec or quoted form, never text that the
Dockerfile parser could read as another instruction: a newline is refused where the instruction
has no quoted form, ENV values are JSON strings, RUN and COPY are JSON arrays. A COPY's files are
the caller's upload of that hash, put in the context under ``files/<hash>/``; its source may not
leave that folder.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rock.errors import BadRequest

STEP_TYPES = ("RUN", "COPY", "ENV", "WORKDIR", "USER")
HASH = re.compile(r"^[0-9a-f]{64}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$")
_MODE = re.compile(r"^[0-7]{3,4}$")
BASE_STEP = "base"  # the SDK's name of the base image's step (e2b.template.consts.BASE_STEP_NAME)


@dataclass
class Plan:
    """What a build request asks: the Dockerfile, the uploads its COPYs need, and which E2B step
    each of the Dockerfile's instructions came from (the builder counts instructions as steps)."""

    dockerfile: str
    hashes: list[str] = field(default_factory=list)
    step_of: list[str] = field(default_factory=list)  # the builder's step n (1-based) -> E2B's step


def _text(value, what: str, where: str) -> str:
    if not isinstance(value, str) or not value or "\x00" in value or "\n" in value or "\r" in value:
        raise BadRequest(f"{where}: {what} must be a non-empty string on one line")
    return value


def _relative(path: str, where: str) -> str:
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm == ".." or norm.startswith("../"):
        raise BadRequest(f"{where}: the COPY source {path!r} must be a relative path inside the uploaded files")
    return norm


def plan(base: str, steps: list) -> Plan:
    """The Dockerfile for ``base`` (an image the builder resolves and checks) and ``steps``; a
    400 naming the step for anything malformed."""
    lines = [f"FROM {base}"]
    out = Plan("", [], [BASE_STEP])
    user = None
    if not isinstance(steps, list):
        raise BadRequest("steps must be a list")
    for index, step in enumerate(steps, 1):
        where = f"step {index}"
        if not isinstance(step, dict):
            raise BadRequest(f"{where} must be an object with type and args")
        kind, args = step.get("type"), step.get("args") or []
        if kind not in STEP_TYPES:
            raise BadRequest(f"{where}: type must be one of {', '.join(STEP_TYPES)}, not {kind!r}")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise BadRequest(f"{where}: args must be a list of strings")
        emitted: list[str] = []
        if kind == "RUN":
            if not args or not args[0].strip():
                raise BadRequest(f"{where}: RUN needs a command")
            run_as = _text(args[1], "the user", where) if len(args) > 1 and args[1] else None
            if run_as and not _USER.match(run_as):
                raise BadRequest(f"{where}: {run_as!r} is not a user name")
            command = f"RUN {json.dumps(['/bin/sh', '-c', args[0]])}"
            emitted = [f"USER {run_as}", command, f"USER {user or 'root'}"] if run_as else [command]
        elif kind == "COPY":
            if len(args) < 2:
                raise BadRequest(f"{where}: COPY needs a source and a destination")
            files_hash = step.get("filesHash")
            if not isinstance(files_hash, str) or not HASH.match(files_hash):
                raise BadRequest(f"{where}: COPY needs the filesHash of its upload (64 hex digits)")
            src = _relative(_text(args[0], "the source", where), where)
            dest = _text(args[1], "the destination", where)
            owner = args[2] if len(args) > 2 and args[2] else None
            mode = args[3] if len(args) > 3 and args[3] else None
            if owner and not _USER.match(owner):
                raise BadRequest(f"{where}: {owner!r} is not a user name")
            if mode and not _MODE.match(mode):
                raise BadRequest(f"{where}: the mode {mode!r} must be octal, like 0755")
            chown = f"--chown={owner} " if owner else ""
            emitted = [f"COPY {chown}{json.dumps([f'files/{files_hash}/{src}', dest])}"]
            if mode:  # the classic builder has no COPY --chmod
                target = posixpath.join(dest, posixpath.basename(src)) if dest.endswith("/") else dest
                emitted.append(f"RUN {json.dumps(['chmod', '-R', mode, target])}")
            if files_hash not in out.hashes:
                out.hashes.append(files_hash)
        elif kind == "ENV":
            if not args or len(args) % 2:
                raise BadRequest(f"{where}: ENV needs name and value pairs")
            pairs = []
            for key, value in zip(args[::2], args[1::2], strict=True):
                if not _ENV_KEY.match(key):
                    raise BadRequest(f"{where}: {key!r} is not an environment variable name")
                pairs.append(f"{key}={json.dumps(value)}")
            emitted = ["ENV " + " ".join(pairs)]
        elif kind == "WORKDIR":
            emitted = [f"WORKDIR {_text(args[0] if args else None, 'the directory', where)}"]
        elif kind == "USER":
            user = _text(args[0] if args else None, "the user", where)
            if not _USER.match(user):
                raise BadRequest(f"{where}: {user!r} is not a user name")
            emitted = [f"USER {user}"]
        lines += emitted
        out.step_of += [str(index)] * len(emitted)
    if user and user != "root":  # ROCK's agent starts as the image's user: it needs root
        lines.append("USER root")
        out.step_of.append("finalize")
    kept = _without_superseded_users(lines)
    out.dockerfile = "\n".join(lines[i] for i in kept) + "\n"
    out.step_of = [out.step_of[i] for i in kept]
    return out


def _without_superseded_users(lines: list[str]) -> list[int]:
    """The indexes of the lines to keep: a USER that another USER replaces before any RUN or COPY
    ran as it changes nothing, and each is a builder step of its own (the SDK's Dockerfile parser
    adds USER root at the start and USER user at the end, then we add USER root)."""
    kept: list[int] = []
    for i, line in enumerate(lines):
        if line.startswith("USER "):
            later = next((other.split(" ", 1)[0] for other in lines[i + 1:]
                          if other.startswith(("USER ", "RUN ", "COPY "))), None)
            if later == "USER":
                continue
        kept.append(i)
    return kept


def context(the_plan: Plan, uploads: Path):
    """The build context (a seekable tar): the Dockerfile and each COPY's upload under
    ``files/<hash>/``; an upload's members may not leave that folder."""
    out = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 - returned open, the caller closes it
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = the_plan.dockerfile.encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            for files_hash in the_plan.hashes:
                path = uploads / files_hash
                if not path.is_file():
                    raise BadRequest(f"the files of hash {files_hash} were not uploaded: get their upload link "
                                     f"(GET /templates/<id>/files/{files_hash}) and upload them first")
                _add_upload(tar, path, files_hash)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _add_upload(tar: tarfile.TarFile, path: Path, files_hash: str) -> None:
    prefix = f"files/{files_hash}"
    try:
        with tarfile.open(path, mode="r:*") as upload:
            for member in upload:
                name = posixpath.normpath(member.name.lstrip("/"))
                if name == ".." or name.startswith("../"):
                    raise BadRequest(f"the upload {files_hash} holds {member.name!r}, outside its folder")
                if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                    continue  # devices and fifos have no place in a template
                member.name = f"{prefix}/{name}"
                if member.islnk():
                    target = posixpath.normpath(member.linkname.lstrip("/"))
                    if target == ".." or target.startswith("../"):
                        raise BadRequest(f"the upload {files_hash} links {member.name!r} outside its folder")
                    member.linkname = f"{prefix}/{target}"
                tar.addfile(member, upload.extractfile(member) if member.isreg() else None)
    except tarfile.TarError as exc:
        raise BadRequest(f"the upload {files_hash} is not a readable tar: {exc}") from None
