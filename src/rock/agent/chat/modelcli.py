"""``rock model-service start|stop|watch-agent|anti-call-llm`` inside a sandbox (ROCK's CLI).

For code written against rl-rock that shells out to these commands. Nothing runs or waits
here beyond the command itself: ``start``, ``stop`` and ``anti-call-llm`` go to the admin
through the sandbox's agent (the same operations as its API, with the calls and records kept
outside the sandbox); ``watch-agent`` posts to the endpoint's ``/v1/agent/watch`` like ROCK's.
Started by ``bin/rock`` with any Python 3.8+ (the image's or the host's); standard library only.
"""

import argparse
import json
import os
import socket
import sys

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the agent package, above chat/
sys.path.insert(0, os.path.dirname(here))
protocol = __import__(os.path.basename(here) + ".protocol").protocol

SOCKET = os.environ.get("ROCK_AGENT_SOCKET") or "/.rock/run/agent.sock"


def ask_admin(action, args, body=b"", timeout=None):
    """One request to the admin through the agent; returns (message, body) or exits with its reason."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(SOCKET)
    except OSError as exc:
        sys.exit("rock model-service: cannot reach the sandbox's agent at %s: %s" % (SOCKET, exc))
    sock.settimeout(timeout)
    sock.sendall(protocol.encode({"id": 1, "op": "chat.cli", "args": {"action": action, "args": args}}, body))
    reader = protocol.FrameReader()
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                sys.exit("rock model-service: the sandbox's agent closed the connection")
            for meta, payload in reader.feed(data):
                if meta.get("id") != 1 or "event" in meta:
                    continue  # another command's notices, or progress
                if meta.get("ok"):
                    return meta["result"].get("message", ""), payload
                sys.exit("rock model-service: %s" % meta.get("error", {}).get("message", "failed"))
    except socket.timeout:
        sys.exit("rock model-service: no answer within %ss" % timeout)
    finally:
        sock.close()


def start(a):
    config = {"type": a.type}
    if a.config_file:
        with open(a.config_file) as f:
            text = f.read()
        try:
            config.update(json.loads(text))
        except ValueError:
            sys.exit("rock model-service: --config-file must be JSON here (no YAML parser in the sandbox)")
    for key in ("host", "port", "proxy_base_url", "request_timeout"):
        if getattr(a, key) is not None:
            config[key] = getattr(a, key)
    if a.retryable_status_codes:
        config["retryable_status_codes"] = [int(x) for x in a.retryable_status_codes.split(",") if x.strip()]
    if a.replay_file:
        with open(a.replay_file) as f:
            config["replay"] = [json.loads(line) for line in f if line.strip()]
        config["type"] = "proxy"
    if a.recording_file:
        sys.stderr.write("rock model-service: calls are recorded by the admin, outside the sandbox; read them "
                         "with GET /apis/v1/chat/trajectory (format=rock for this JSONL)\n")
    message, _ = ask_admin("start", config, timeout=120)
    print(message)


def stop(a):
    message, _ = ask_admin("stop", {}, timeout=60)
    print(message)


def watch_agent(a):
    import http.client

    conn = http.client.HTTPConnection(a.host, a.port, timeout=30)
    try:
        conn.request("POST", "/v1/agent/watch", json.dumps({"pid": a.pid}), {"content-type": "application/json"})
        reply = conn.getresponse()
        text = reply.read().decode()
    except OSError as exc:
        sys.exit("rock model-service: the model endpoint on %s:%d did not answer: %s" % (a.host, a.port, exc))
    if reply.status != 200:
        sys.exit("rock model-service: watch-agent refused (%d): %s" % (reply.status, text))
    print(text)


def anti_call_llm(a):
    response = a.response
    if a.response_file:
        with open(a.response_file) as f:
            response = f.read()
        os.unlink(a.response_file)  # as ROCK's command does
    args = {"index": a.index, "has_response": response is not None, "call_timeout": a.timeout}
    _, body = ask_admin("anti_call", args, (response or "").encode(), timeout=a.timeout + 30)
    # ROCK's contract: the next request's JSON (or SESSION_END) on stdout, nothing else
    sys.stdout.write(body.decode() + "\n")


def main(argv):
    parser = argparse.ArgumentParser(prog="rock")
    top = parser.add_subparsers(dest="command")
    ms = top.add_parser("model-service").add_subparsers(dest="sub")
    p = ms.add_parser("start")
    p.add_argument("--type", choices=["local", "proxy"], default="local")
    p.add_argument("--config-file")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--proxy-base-url")
    p.add_argument("--retryable-status-codes")
    p.add_argument("--request-timeout", type=int)
    p.add_argument("--recording-file")
    p.add_argument("--replay-file")
    p.set_defaults(fn=start)
    ms.add_parser("stop").set_defaults(fn=stop)
    p = ms.add_parser("watch-agent")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(fn=watch_agent)
    p = ms.add_parser("anti-call-llm")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--response")
    p.add_argument("--response-file")
    p.add_argument("--timeout", type=float, default=600)
    p.set_defaults(fn=anti_call_llm)
    a = parser.parse_args(argv)
    if getattr(a, "fn", None) is None:
        parser.error("this sandbox's rock command offers: rock model-service start|stop|watch-agent|anti-call-llm")
    a.fn(a)


if __name__ == "__main__":
    main(sys.argv[1:])
