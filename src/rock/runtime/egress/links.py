"""The host side of gated sandboxes: a veth pair into each sandbox's network namespace, and the
nftables table of this worker that sends everything from those veths to its gate and drops the
rest (see ``rock.runtime.egress``). Every call here blocks: run it in a thread."""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import subprocess

from rock.errors import SandboxStartError
from rock.runtime.egress.rules import EGRESS_RANGE

NETNS_DIR = "/run/netns"  # where ``ip netns`` keeps its named namespaces
_LOCK = "/run/rock-egress.lock"  # one allocation of /30s at a time among all the host's workers


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        raise SandboxStartError(f"egress: {what} failed: {(out.stderr or out.stdout).strip()[:300]}")


def table_name(owner_key: str) -> str:
    return "rock_egress_" + hashlib.sha256(owner_key.encode()).hexdigest()[:8]


def table_script(table: str, tcp_port: int, dns_port: int) -> str:
    """This worker's table, made anew (its set of veths starts empty)."""
    return f"""table inet {table}
delete table inet {table}
table inet {table} {{
    set links {{ type ifname; }}
    chain pre {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname @links meta nfproto ipv4 meta l4proto tcp redirect to :{tcp_port}
        iifname @links meta nfproto ipv4 udp dport 53 redirect to :{dns_port}
    }}
    chain input {{
        type filter hook input priority -5; policy accept;
        iifname @links meta nfproto ipv4 tcp dport {tcp_port} accept
        iifname @links meta nfproto ipv4 udp dport {dns_port} accept
        iifname @links drop
        tcp dport {tcp_port} drop
        udp dport {dns_port} drop
    }}
    chain forward {{
        type filter hook forward priority -5; policy accept;
        iifname @links drop
        oifname @links drop
    }}
}}
"""


def install_table(table: str, tcp_port: int, dns_port: int) -> None:
    _run(["nft", "-f", "-"], "writing the nftables table " + table, table_script(table, tcp_port, dns_port))


def remove_table(table: str) -> None:
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, timeout=20)


def link_name(owner_key: str, sandbox_id: str) -> str:
    return "rke" + hashlib.sha256(f"{owner_key}/{sandbox_id}".encode()).hexdigest()[:10]


def _used_subnets() -> set[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=10)
    used = set()
    for link in json.loads(out.stdout or "[]"):
        for a in link.get("addr_info", []):
            addr = ipaddress.ip_address(a["local"])
            if addr in EGRESS_RANGE:
                used.add(ipaddress.ip_network(f"{addr}/30", strict=False))
    return used


def attach(table: str, link: str, pid: int | None = None, netns: str | None = None) -> tuple[str, str]:
    """A veth from the host into the sandbox's network namespace (that of ``pid``, or the named
    namespace ``netns`` of ``ip netns``), its default route through the host's end, IPv6 off; the
    host's end joins ``table``'s set. Returns the (host, sandbox) addresses. A link of the same
    name (an earlier attach) is replaced."""
    if (pid is None) == (netns is None):
        raise ValueError("attach: give the sandbox's pid or its named network namespace")
    detach(table, link)
    target = str(pid) if netns is None else netns
    enter = ["nsenter", f"--net=/proc/{pid}/ns/net" if netns is None else f"--net={NETNS_DIR}/{netns}"]
    with open(_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        used = _used_subnets()
        start = int(hashlib.sha256(link.encode()).hexdigest(), 16) % (EGRESS_RANGE.num_addresses // 4)
        subnets = list(EGRESS_RANGE.subnets(new_prefix=30))
        subnet = next((subnets[(start + i) % len(subnets)] for i in range(len(subnets))
                       if subnets[(start + i) % len(subnets)] not in used and (start + i) % len(subnets)), None)
        if subnet is None:
            raise SandboxStartError("egress: no free address pair left in " + str(EGRESS_RANGE))
        host, inside = (str(a) for a in list(subnet.hosts())[:2])
        peer = link[:-1] + "p"
        _run(["ip", "link", "add", link, "type", "veth", "peer", "name", peer], "making the veth " + link)
        try:
            _run(["ip", "addr", "add", f"{host}/30", "dev", link], "addressing " + link)
        except BaseException:
            detach(table, link)
            raise
    try:
        _run(["nft", "add", "element", "inet", table, "links", f"{{ {link} }}"], "adding the link to " + table)
        _run(["ip", "link", "set", link, "up"], "raising " + link)
        _run(["ip", "link", "set", peer, "netns", target], "moving the veth into the sandbox")
        _run([*enter, "sh", "-c",
              ("echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; "
               'ip link set "$1" name eth0 && ip addr add "$2/30" dev eth0 && ip link set eth0 up && '
               'ip link set lo up && ip route add default via "$3"'), "sh", peer, inside, host],
             "configuring the sandbox's interface")
    except BaseException:
        detach(table, link)
        raise
    return host, inside


def detach(table: str, link: str) -> None:
    """Remove the host's end (the pair goes with it) and its set entry; nothing if absent."""
    subprocess.run(["nft", "delete", "element", "inet", table, "links", f"{{ {link} }}"], capture_output=True,
                   timeout=20)
    subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=20)


def make_netns(name: str) -> str:
    """A named network namespace (``ip netns add``) with nothing in it but its loopback, for a
    sandbox whose runtime must be started inside the namespace it will be gated from (gVisor);
    returns its path. One left by an earlier start of the same name is made anew."""
    remove_netns(name)
    _run(["ip", "netns", "add", name], "making the network namespace " + name)
    try:
        _run(["ip", "-n", name, "link", "set", "lo", "up"], "raising the loopback of " + name)
    except BaseException:
        remove_netns(name)
        raise
    return f"{NETNS_DIR}/{name}"


def remove_netns(name: str) -> None:
    """Remove a named network namespace (its veth goes with it once nothing runs in it); nothing if absent."""
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def named_netns(prefix: str) -> list[str]:
    """The named network namespaces whose names start with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []
