"""``sandbox.network``: rl-rock's ``Network.speedup`` (package mirrors and a github.com address).

Each setting is written into the package manager's own configuration inside the sandbox, so
later installs there use it: ``/etc/apt/sources.list`` (the image's deb822 sources are moved
aside, not deleted), ``/etc/pip.conf``, or a github.com line in ``/etc/hosts``.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from rock.actions import Command, Observation
from rock.errors import RockError
from rock.sdk.sandbox.speedup.types import SpeedupType

if TYPE_CHECKING:
    from rock.sdk.sandbox.client import Sandbox

_APT_SUITES = {
    "debian": ("debian", ["{c}", "{c}-updates"], "main contrib non-free non-free-firmware"),
    "ubuntu": ("ubuntu", ["{c}", "{c}-updates", "{c}-security"], "main restricted universe multiverse"),
}
_SET_ASIDE = ("mkdir -p /etc/apt/sources.list.d.rock-backup && "
              "for f in /etc/apt/sources.list.d/*.sources; do [ -e \"$f\" ] && mv \"$f\" /etc/apt/sources.list.d.rock-backup/; "
              "done; true")


def _mirror(value: str) -> str:
    url = urlparse(value.strip())
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"a mirror must be an http(s) URL like https://mirrors.example.com, not {value!r}")
    return value.strip().rstrip("/")


def _os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


class Network:
    """rl-rock's ``sandbox.network``."""

    def __init__(self, sandbox: "Sandbox"):
        self.sandbox = sandbox

    async def speedup(self, speedup_type: SpeedupType | str, speedup_value: str, timeout: int = 300) -> Observation:
        """Point the sandbox's apt or pip at a mirror, or github.com at an address (see the module's docstring)."""
        try:
            kind = SpeedupType(speedup_type)
            if kind == SpeedupType.APT:
                return await self._apt(_mirror(speedup_value))
            if kind == SpeedupType.PIP:
                base = _mirror(speedup_value)
                conf = f"[global]\nindex-url = {base}/pypi/simple/\ntrusted-host = {urlparse(base).hostname}\n"
                await self.sandbox.write_bytes("/etc/pip.conf", conf.encode())
                return Observation(output=f"pip index set to {base}/pypi/simple/", exit_code=0)
            address = str(ipaddress.ip_address(speedup_value.strip()))
            hosts = (await self.sandbox.read_bytes("/etc/hosts")).decode(errors="replace").splitlines()
            kept = [line for line in hosts if line.split()[1:2] != ["github.com"]]
            await self.sandbox.write_bytes("/etc/hosts", ("\n".join(kept + [f"{address} github.com"]) + "\n").encode())
            return Observation(output=f"github.com -> {address}", exit_code=0)
        except ValueError as exc:
            return Observation(output=str(exc), exit_code=1, failure_reason="Invalid speedup value")
        except (RockError, OSError) as exc:
            return Observation(output=str(exc), exit_code=1, failure_reason=f"{speedup_type} speedup failed")

    async def _apt(self, mirror: str) -> Observation:
        release = _os_release((await self.sandbox.read_bytes("/etc/os-release")).decode(errors="replace"))
        distro, codename = release.get("ID", ""), release.get("VERSION_CODENAME") or ""
        if distro not in _APT_SUITES or not codename:
            message = f"apt mirrors are set for Debian and Ubuntu only, not {release.get('PRETTY_NAME', distro)!r}"
            return Observation(output=message, exit_code=1, failure_reason="Precheck failed")
        path, suites, components = _APT_SUITES[distro]
        lines = [f"deb {mirror}/{path}/ {s.format(c=codename)} {components}" for s in suites]
        if distro == "debian":
            lines.append(f"deb {mirror}/debian-security/ {codename}-security {components}")
        r = await self.sandbox.execute(Command(command=["sh", "-c", _SET_ASIDE]))
        if r.exit_code != 0:
            return Observation(output=r.stderr, exit_code=1, failure_reason="could not set the image's sources aside")
        await self.sandbox.write_bytes("/etc/apt/sources.list", ("\n".join(lines) + "\n").encode())
        return Observation(output=f"apt mirror set to {mirror} for {distro} {codename}", exit_code=0)
