"""A caller's build context made into one the Docker engine may build without reaching the host.

The engine's daemon does some of a build itself, in the host's network namespace, not in a build
container: ``ADD <url>`` is fetched by the daemon, from wherever the URL points (the host's
loopback services included), and the bases' ``ONBUILD`` triggers run as if they were lines of
the caller's Dockerfile. So before the engine sees a context:

- the Dockerfile is the one we read and checked, by construction: whichever member the caller's
  name leads to (symlinks in the tar, the last of several members of one name, the engine's
  lower-case ``dockerfile`` fallback), its text is written into the context again under a fresh
  name and the engine is told to build that one;
- it is parsed by the engine's own parser (moby/buildkit's, through the ``dockerfile`` package);
- every ``ADD`` source, its own ``ONBUILD ADD`` lines and every base image's ``ONBUILD`` triggers
  included, must be a plain path in the context: a URL, a git address, or a variable (ARG, ENV, a
  base's ENV: we do not guess what the engine would expand it to) is refused with the line;
- each base image is resolved once, its triggers checked, and its ``FROM`` pinned to the image id
  that was checked, so that a retag between the check and the build changes nothing.

``RUN`` steps run in the engine's build containers with the network the operator names
(``build_network``, default none).
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
import uuid
from collections.abc import Callable

import dockerfile as engine_parser

from rock.errors import BadRequest

MAX_DOCKERFILE = 1 << 20
_FETCHED = re.compile(r"://|^git@", re.IGNORECASE)  # what the engine would fetch rather than read
_VAR = re.compile(r"\$(?:\{(\w+)(?::([-+])([^}]*))?\}|(\w+))")
_LINKS = 40  # symlink hops before a path is a loop (Linux's own limit)

# name -> (image id, ONBUILD triggers); raises for a base that cannot be had
BaseResolver = Callable[[str], tuple[str, list[str]]]


def _norm(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _resolve(members: dict[str, tarfile.TarInfo], path: str) -> str:
    """The member a path names once symlinks in the tar are followed, as the engine resolves them
    (inside the context: an absolute target starts at its root, '..' stops there)."""
    parts, done, hops = [p for p in path.split("/") if p not in ("", ".")], [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        done.append(part)
        member = members.get("/".join(done))
        if member is not None and member.issym():
            hops += 1
            if hops > _LINKS:
                raise BadRequest(f"the Dockerfile path {path!r} is a loop of symlinks in the build context")
            done = [] if member.linkname.startswith("/") else done[:-1]
            parts = [p for p in member.linkname.split("/") if p not in ("", ".")] + parts
    return "/".join(done)


def read_dockerfile(tar: tarfile.TarFile, path: str) -> str:
    """The text the engine would take as the Dockerfile ``path`` of this context."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar:  # the last member of a name is what an extraction leaves: the engine's view
        members[_norm(member.name)] = member
    candidates = [path] + (["dockerfile"] if _norm(path) == "Dockerfile" else [])  # the engine's fallback
    for candidate in candidates:
        member = members.get(_resolve(members, candidate))
        if member is not None and (member.isreg() or member.islnk()):
            if member.islnk() and _norm(member.linkname) not in members:
                continue
            data = tar.extractfile(member).read(MAX_DOCKERFILE + 1)
            if len(data) > MAX_DOCKERFILE:
                raise BadRequest(f"the Dockerfile {path!r} is larger than {MAX_DOCKERFILE >> 20} MiB")
            return data.decode("utf-8", errors="replace")
    raise BadRequest(f"the build context has no file {path!r} to build from: put the Dockerfile in the tar "
                     "or name its path with ?dockerfile=")


def _check_add(sources: list[str], where: str) -> None:
    for source in sources:
        if _FETCHED.search(source):
            raise BadRequest(f"{where}: ADD from a URL or a git repository is fetched by the engine's daemon on "
                             "this host's own network, which a build may not reach; put the file in the context")
        if "$" in source:
            raise BadRequest(f"{where}: an ADD source may not use a variable (the engine would expand it, from an "
                             "ARG, an ENV or a base image's ENV, to anything, a URL included): write the path "
                             "in the context literally")


def _add_sources(command) -> list[str] | None:
    """The sources of an ADD (or ONBUILD ADD) command; None for any other command."""
    if command.cmd.upper() == "ADD":
        values = command.value
    elif command.cmd.upper() == "ONBUILD" and (command.sub_cmd or "").upper() == "ADD":
        values = command.value
    else:
        return None
    return [v for v in values[:-1] if not v.startswith("--")]


def _parse(text: str, what: str):
    try:
        return engine_parser.parse_string(text)
    except engine_parser.GoParseError as exc:
        raise BadRequest(f"{what} does not parse: {exc}") from None


def _expand(word: str, args: dict[str, str], where: str) -> str:
    """A FROM word with the global ARGs' defaults expanded (this API passes no build args)."""
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(4)
        value = args.get(name, "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value

    out = _VAR.sub(one, word)
    if "$" in out:
        raise BadRequest(f"{where}: write the base image as a name or as $NAME / ${{NAME}} of an ARG before FROM")
    return out


def checked_dockerfile(text: str, resolve_base: BaseResolver) -> str:
    """The Dockerfile the engine will build: ``text`` with every base pinned to the id that was
    checked; a 400 naming the line for what the policy refuses (see the module's docstring)."""
    commands = _parse(text, "the Dockerfile")
    lines = text.split("\n")
    global_args: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    for c in commands:
        where = f"Dockerfile line {c.start_line} ({c.original[:200]!r})"
        sources = _add_sources(c)
        if sources is not None:
            _check_add(sources, where)
        name = c.cmd.upper()
        if name == "ARG" and not seen_from:
            for item in c.value:
                key, _, default = item.partition("=")
                global_args[key] = default
        if name != "FROM":
            continue
        seen_from = True
        base, alias = c.value[0], (c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else None)
        expanded = _expand(base, global_args, where)
        if expanded.lower() not in stages and expanded.lower() != "scratch":
            image_id, triggers = resolve_base(expanded)
            for trigger in triggers:
                for t in _parse(trigger, f"base image {expanded}'s ONBUILD trigger {trigger!r}"):
                    t_sources = _add_sources(t)
                    if t_sources is not None:
                        _check_add(t_sources, f"{where}: base image {expanded}'s ONBUILD trigger {trigger[:200]!r}")
            pinned = " ".join([c.cmd, *c.flags, image_id, *(["AS", alias] if alias else [])])
            lines[c.start_line - 1:c.end_line] = [pinned] + [""] * (c.end_line - c.start_line)
        if alias:
            stages.add(alias.lower())
    return "\n".join(lines)


def prepare(context, path: str, resolve_base: BaseResolver):
    """Check the build context (a seekable tar, any compression) and return ``(new context, the
    Dockerfile's name in it)``: the caller's members as they were, plus the checked Dockerfile
    under a fresh name. The caller closes the new context."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith("/") or ".." in parts or "\0" in path:
        raise BadRequest(f"dockerfile {path!r} must be a relative path inside the build context, without '..'")
    context.seek(0)
    out = tempfile.SpooledTemporaryFile(max_size=16 << 20)
    try:
        with tarfile.open(fileobj=context, mode="r:*") as tar:
            text = read_dockerfile(tar, path)
            checked = checked_dockerfile(text, resolve_base).encode()
        context.seek(0)
        name = f".rock-dockerfile-{uuid.uuid4().hex}"
        with tarfile.open(fileobj=context, mode="r:*") as tar, tarfile.open(fileobj=out, mode="w",
                                                                         format=tarfile.PAX_FORMAT) as copy:
            for member in tar:
                copy.addfile(member, tar.extractfile(member) if member.isreg() else None)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(checked), 0o644
            copy.addfile(info, io.BytesIO(checked))
    except tarfile.TarError as exc:
        out.close()
        raise BadRequest(f"the build context is not a readable tar: {exc}") from None
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, name
