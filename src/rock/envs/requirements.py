"""What a caller may name in an env image: requirements that are requirements, imports that are
module names. Checked before anything is built, so a refusal is a 400 that says why.

A requirement is a PEP 508 requirement (``packaging.requirements``): a name with extras,
versions and markers, installed from the operator's package index. A direct reference (``name @
https://...``, ``name @ file:///...``), a bare URL or a local path fetches code from where the
caller says, and a local path or file: URL is read from the admin's host: refused unless the
operator allows it (the setting ``allow_direct_requirements``). pip options are never taken.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from packaging.requirements import InvalidRequirement, Requirement

from rock.envs.errors import EnvError

MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# What the OpenAPI schema states (a client's generator needs a pattern): module names exactly;
# for requirements a subset of PEP 508 (a name, extras, versions) that always parses. The server
# takes markers too, and direct references where the operator allows them.
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
_S, _NAME, _V = "[ ]*", r"[A-Za-z0-9]([A-Za-z0-9._-]{0,100}[A-Za-z0-9])?", r"[0-9]{1,9}(\.[0-9]{1,9}){0,5}"
_SPEC = rf"((==|!=){_S}{_V}(\.\*)?|(<=|>=|<|>){_S}{_V}|~={_S}[0-9]{{1,9}}(\.[0-9]{{1,9}}){{1,5}})"
REQUIREMENT_PATTERN = (rf"^{_S}{_NAME}{_S}(\[{_S}{_NAME}({_S},{_S}{_NAME})*{_S}\])?{_S}"
                       rf"({_SPEC}({_S},{_S}{_SPEC})*)?{_S}$")
_SETTING = ("an operator may allow direct URLs and local paths with the setting allow_direct_requirements "
            "(ROCK_ALLOW_DIRECT_REQUIREMENTS=true)")


@dataclass(frozen=True)
class Wanted:
    """One requirement as pip gets it in the build sandbox; ``local``: a host folder or file
    (allowed by the operator) copied into the sandbox first, ``text`` then names its copy."""

    text: str
    local: str | None = None
    url: str | None = None  # the part of ``text`` that names ``local`` (replaced by the copy's path)

    def in_sandbox(self, copy: str) -> str:
        """``text`` naming the sandbox's copy of ``local`` at ``copy``."""
        new = "file://" + copy if self.url.startswith("file:") else copy
        return self.text.replace(self.url, new, 1)


def check_import(name: str) -> str:
    """``name`` when it is a dotted Python module name (at most 256 characters); else EnvError (BadRequest)."""
    if not isinstance(name, str) or not MODULE.fullmatch(name) or len(name) > 256:
        raise EnvError(f"import {name!r} is not a module name: imports are dotted Python module names such as "
                       "'gymnasium' or 'my_envs.grid'", "BadRequest")
    return name


def pip_option(text: str) -> str | None:
    """Why ``text`` is refused as a pip option (they change how everything is installed, and from where)."""
    if text.strip().startswith("-"):
        return (f"{text!r} is a pip option, not a package; packages are requirements like 'numpy>=1.26' "
                "(no_deps=true for --no-deps)")
    return None


def check_requirement(text: str, allow_direct: bool) -> Wanted:
    """``text`` as pip will get it: a PEP 508 requirement from the package index, or, when ``allow_direct``, a
    direct URL or a local path on the admin's host (which must exist). Raises EnvError (BadRequest) for a pip
    option, something that is not a requirement, or a direct one not allowed."""
    s = text.strip()
    if (why := pip_option(text)) is not None:
        raise EnvError(why, "BadRequest")
    try:
        req = Requirement(s)
    except InvalidRequirement as exc:
        if not _looks_direct(s):
            raise EnvError(f"{text!r} is not a package requirement (PEP 508, e.g. 'numpy>=1.26' or "
                           f"'gymnasium[mujoco]'): {exc}", "BadRequest") from None
        return _direct(text, s, s, allow_direct)
    if req.url is None:
        return Wanted(s)
    return _direct(text, s, req.url, allow_direct)


def _looks_direct(s: str) -> bool:
    return "://" in s or s.startswith(("/", ".", "~", "file:")) or "/" in s or "\\" in s


def _direct(text: str, s: str, url: str, allow_direct: bool) -> Wanted:
    kind = "a local path" if not re.match(r"^[a-z][a-z0-9+.-]*:", url) or url.startswith("file:") else "a direct URL"
    if not allow_direct:
        raise EnvError(f"{text!r} is {kind}: env image packages are names from the package index (e.g. "
                       f"'numpy>=1.26'); {_SETTING}", "BadRequest")
    if kind == "a direct URL":
        return Wanted(s)
    path = unquote(urlparse(url).path) if url.startswith("file:") else os.path.expanduser(url)
    if not os.path.isabs(path) or not os.path.exists(path):
        raise EnvError(f"{text!r}: {path!r} is not an absolute path that exists on the admin's host", "BadRequest")
    return Wanted(s, local=path, url=url)
