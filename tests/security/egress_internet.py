"""A small "internet" for egress tests: a network namespace of the test's, joined to the host by a
veth pair on a /30 of TEST-NET-2, with server addresses of TEST-NET-3 on its loopback (routed from
the host through the veth, so they are not a subnet of the host's own interfaces). One HTTP server
on ports 80 and 8080 (and on the link's IPv6 address ``ns_ip6``, port 80) answers ``hit <address
it was reached at> <Host header>`` (``/echo``: a connection that echoes lines until closed); a TLS server on
443 (a throwaway self-signed certificate) ``tls <address> <SNI>``; a UDP server on 9999 echoes. Names for the addresses come from the admin's resolver (``egress_hosts``)."""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

# What every HTTP server of a test's in a namespace like this one is made with (prefixed to its
# script): HTTPServer's own server_bind asks the resolver for its address's name (socket.getfqdn),
# and the namespace's default route takes that query to a nameserver that never answers, a 10 s
# wait per server start. ``Server`` names itself by its address instead.
HTTP_SERVER = r"""
import socketserver
from http.server import ThreadingHTTPServer

class Server(ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
"""

SERVER = HTTP_SERVER + r"""
import socket, sys, threading
from http.server import BaseHTTPRequestHandler

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/echo":  # a long-lived connection: every line sent comes back
            self.send_response(200); self.end_headers(); self.wfile.flush()
            for line in self.rfile:
                self.wfile.write(line); self.wfile.flush()
            return
        if self.path.startswith("/redirect"):
            self.send_response(302); self.send_header("Location", self.path.split("to=", 1)[1]); self.end_headers(); return
        body = f"hit {self.connection.getsockname()[0]} {self.headers.get('Host')}".encode()
        if self.path.startswith("/bulk"):
            body = b"x" * int(self.path.split("=", 1)[1])
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
    while True:
        data, addr = s.recvfrom(2048); s.sendto(b"echo " + data, addr)

def tls(cert, key):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
    names = {}
    ctx.sni_callback = lambda conn, name, _: names.__setitem__(id(conn), name)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 443)); s.listen(64)
    while True:
        conn, _ = s.accept()
        try:
            t = ctx.wrap_socket(conn, server_side=True)
            t.sendall(f"tls {t.getsockname()[0]} {names.pop(id(t), None) or t.server_hostname}".encode())
            t.close()
        except Exception:
            conn.close()

threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=tls, args=(sys.argv[1], sys.argv[2]), daemon=True).start()
class V6(Server):
    address_family = socket.AF_INET6

servers = [Server(("0.0.0.0", p), H) for p in (80, 8080)] + [V6((sys.argv[3], 80), H)]
for extra in servers[1:]:
    threading.Thread(target=extra.serve_forever, daemon=True).start()
print("ready", flush=True)
servers[0].serve_forever()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _taken() -> set[str]:
    """Every IPv4 address the host already routes or holds: another Internet of this run (several
    test modules keep theirs for the module, and pytest interleaves modules by backend) or one a
    killed run left behind. Picking among these failed a CI run with "RTNETLINK answers: File
    exists" (and stop() then took the other Internet's routes down)."""
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True,
                         text=True).stdout
    out += subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return {word.split("/")[0] for word in out.split() if word.count(".") == 3}


def _ours(n: int) -> bool:
    """Whether choice ``n`` (a link's or an address's number) is this test process's to take: each
    of pytest-xdist's processes picks from its own share, since two could both read one address as
    free in ``_taken`` before either holds it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return n % max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) == int(worker[2:] or 0)


def free_link(taken: set[str] | None = None) -> tuple[str, str]:
    """The host's and the far end's address on a /30 of TEST-NET-2 (198.51.100.0/24, documentation
    only) that nothing on the host holds or routes and that is this test process's to take."""
    taken = _taken() if taken is None else taken
    links = [ipaddress.IPv4Network(f"198.51.100.{n * 4}/30") for n in range(64) if _ours(n)]
    link = random.choice([net for net in links if not {str(a) for a in net} & taken])
    return str(link[1]), str(link[2])


class Internet:
    """``addresses``: name -> address of each server name; ``start()`` / ``stop()``."""

    def __init__(self, prefix: str, names: tuple[str, ...]):
        tag = uuid.uuid4().hex[:6]
        self.ns, self.host_if, self.peer = f"{prefix}n{tag}", f"{prefix}o{tag}", f"{prefix}p{tag}"
        taken = _taken()
        self.host_ip, self.ns_ip = free_link(taken)
        free = [f"203.0.113.{n}" for n in range(1, 255) if _ours(n) and f"203.0.113.{n}" not in taken]
        self.addresses = dict(zip(names, random.sample(free, len(names))))
        self.routed: list[str] = []  # the routes this Internet added, the only ones stop() removes
        # IPv6 on the link too (documentation prefix): the HTTP server answers on ns_ip6 port 80
        self.host_ip6, self.ns_ip6 = f"2001:db8:{tag[:4]}::1", f"2001:db8:{tag[:4]}::2"
        self.server: subprocess.Popen | None = None
        self.served: list[subprocess.Popen] = []  # the tests' servers (serve), ended by stop()
        self.tmp: str | None = None

    def start(self) -> "Internet":
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer, "netns", self.ns)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.peer)
            _ip("-n", self.ns, "link", "set", self.peer, "up")
            _ip("-n", self.ns, "link", "set", "lo", "up")
            _ip("-n", self.ns, "route", "add", "default", "via", self.host_ip)
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{self.host_if}.disable_ipv6=0"], capture_output=True)
            _ip("addr", "add", f"{self.host_ip6}/64", "dev", self.host_if, "nodad")
            _ip("-n", self.ns, "addr", "add", f"{self.ns_ip6}/64", "dev", self.peer, "nodad")
            for addr in self.addresses.values():
                _ip("-n", self.ns, "addr", "add", f"{addr}/32", "dev", "lo")
                _ip("route", "add", f"{addr}/32", "via", self.ns_ip)
                self.routed.append(addr)
            self.tmp = tempfile.mkdtemp(prefix="egress-internet-")
            cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=internet.test",
                            "-keyout", key, "-out", cert, "-days", "1"], check=True, capture_output=True)
            self.server = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", SERVER, cert, key,
                                            self.ns_ip6],
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert self.server.stdout.readline().strip() == "ready", "the internet's server did not start"
        except BaseException:
            self.stop()
            raise
        return self

    def serve(self, script: str, *args: str) -> subprocess.Popen:
        """Run a server script of a test's in the internet's namespace, once it printed "ready"
        (``stop()`` ends it with the internet)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", script, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.served.append(proc)
        if proc.stdout.readline().strip() != "ready":
            proc.terminate()
            proc.wait(10)
            raise AssertionError("a test's server did not start in the small internet")
        return proc

    def udp_echo(self, name: str, payload: bytes) -> bytes | None:
        """Ask the UDP echo from the host (a control: the server answers what reaches it)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            for _ in range(5):
                s.sendto(payload, (self.addresses[name], 9999))
                try:
                    return s.recvfrom(2048)[0]
                except socket.timeout:
                    time.sleep(0.2)
        return None

    def stop(self) -> None:
        while self.served:
            proc = self.served.pop()
            proc.terminate()
            proc.wait(10)
        if self.server is not None:
            self.server.terminate()
            self.server.wait(10)
            self.server = None
        while self.routed:
            subprocess.run(["ip", "route", "del", f"{self.routed.pop()}/32", "via", self.ns_ip], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)  # takes the veth pair with it
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
