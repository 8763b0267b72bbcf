"""The network of docker sandboxes with ``network: true``: outbound only, never another sandbox or
the host.

On the engine's default bridge every sandbox reached every other (tenant B's sandbox called a
server in A's, a model endpoint bound to 0.0.0.0 took B's calls into A's trainer queue) and the
host's services on the bridge's gateway. Instead, such sandboxes join one bridge of ours
(``NETWORK``, device ``BRIDGE``) and the host holds it apart with an nftables table of its own
(``TABLE``; nothing else on the host is touched):

- packets between two sandboxes on the bridge are dropped at ``forward`` (bridged IP passes the
  IP hooks with the bridge as both its ways in and out: br_netfilter, which must be on, or no
  sandbox gets this network); the engine's own inter-container switch is off too
  (``enable_icc=false``). Non-IP frames would need CAP_NET_RAW, which sandboxes lack;
- packets from the bridge to the host itself (any of its addresses: the gateway, eth0, docker0,
  loopback routed in) are dropped at ``input``, except replies to what the host began;
- forwarded packets from the bridge to other container bridges or to the addresses the operator
  denies (``sandbox_network_deny``: the cloud metadata range by default) are dropped.

What is left is routed out through the host's NAT: the outbound internet the operator's own
routing allows. Docker's embedded DNS answers inside each sandbox's namespace and needs no rule.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
import threading

from docker.errors import APIError, NotFound

from rock.errors import SandboxStartError

log = logging.getLogger("rock.runtime.docker.network")

NETWORK = "rock-sandboxes"
BRIDGE = "rock-sbx0"
TABLE = "rock_sandboxes"
_OPTIONS = {"com.docker.network.bridge.name": BRIDGE, "com.docker.network.bridge.enable_icc": "false"}
_lock = threading.Lock()
_ready: tuple | None = None  # the deny list the rules were last written with, in this process


def rules(deny: list[str]) -> str:
    """The nftables script (one atomic transaction) that keeps the bridge's members apart."""
    v4 = [str(ipaddress.ip_network(c, strict=False)) for c in deny if ipaddress.ip_network(c, strict=False).version == 4]
    v6 = [str(ipaddress.ip_network(c, strict=False)) for c in deny if ipaddress.ip_network(c, strict=False).version == 6]
    denied = "".join(f'        iifname "{BRIDGE}" {family} daddr {{ {", ".join(nets)} }} drop\n'
                     for family, nets in (("ip", v4), ("ip6", v6)) if nets)
    return f"""table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{BRIDGE}" ct state established,related accept
        iifname "{BRIDGE}" drop
    }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{BRIDGE}" oifname "{BRIDGE}" drop
        iifname "{BRIDGE}" oifname "docker0" drop
        iifname "{BRIDGE}" oifname "br-*" drop
        oifname "{BRIDGE}" iifname "docker0" drop
        oifname "{BRIDGE}" iifname "br-*" drop
{denied}    }}
}}
"""


def _network(api) -> dict:
    try:
        info = api.inspect_network(NETWORK)
    except NotFound:
        try:
            api.create_network(NETWORK, driver="bridge", options=_OPTIONS, check_duplicate=True)
            log.info("made the sandboxes' network %s (bridge %s)", NETWORK, BRIDGE)
        except APIError as exc:  # another process made it meanwhile: use theirs, checked below
            if exc.status_code != 409:
                raise SandboxStartError(f"making the sandboxes' network {NETWORK} failed: {exc.explanation or exc}") from None
        info = api.inspect_network(NETWORK)
    options = info.get("Options") or {}
    if info.get("Driver") != "bridge" or any(options.get(k) != v for k, v in _OPTIONS.items()):
        raise SandboxStartError(f"the Docker network {NETWORK} exists with other settings than ROCK's ({_OPTIONS}); "
                                f"remove it (docker network rm {NETWORK}) and ROCK makes it again")
    return info


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def ensure(api, deny: list[str]) -> str:
    """The network a sandbox with ``network: true`` joins, made and fenced on first use in this
    process (the rules again whenever the deny list changes). Fails closed: without its rules no
    sandbox gets this network."""
    global _ready
    with _lock:
        if _ready != tuple(deny):
            _network(api)
            for family in ("iptables", "ip6tables"):
                if _read(f"/proc/sys/net/bridge/bridge-nf-call-{family}") != "1":
                    raise SandboxStartError(f"sandboxes with network=true need net.bridge.bridge-nf-call-{family}=1 "
                                            "(br_netfilter) so that the host's rules see packets between sandboxes")
            if shutil.which("nft") is None:
                raise SandboxStartError("sandboxes with network=true need nftables (the nft command) to keep them off "
                                        "the host and each other: install the nftables package")
            done = subprocess.run(["nft", "-f", "-"], input=rules(deny), capture_output=True, text=True)
            if done.returncode != 0:
                raise SandboxStartError(f"the sandboxes' network rules did not load: {done.stderr.strip()[-500:]}")
            _ready = tuple(deny)
    return NETWORK
