"""The unmodified e2b SDK's ``egress_proxy``, ``iam`` tokens and ``update_network`` with new ``rules``
against ROCK's egress gate: run in the newest SDK's own venv by tests/security/test_egress_proxy.py.

Environment: E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL, TEMPLATE, VALUE (a secret), LOG and
SOCKS_LOG (the scripted server's and the SOCKS5 proxy's logs), PROXY (the proxy's options), BOUND
(bound.test's address). Prints the minted token ("TOKEN ...") and "E2B PROXY OK".
"""

import base64
import json
import os

import e2b
from e2b import Sandbox, Secret

assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
VALUE, LOG, SOCKS_LOG, BOUND = os.environ["VALUE"], os.environ["LOG"], os.environ["SOCKS_LOG"], os.environ["BOUND"]
PROXY = json.loads(os.environ["PROXY"])
GET = ("python3 -c \"import sys, urllib.request\ntry:\n print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], "
       "headers={'X-Api-Key': sys.argv[2]}), timeout=10).read().decode())"
       "\nexcept Exception as exc:\n print('failed:', type(exc).__name__, exc)\" ")


def lines(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def get(sbx: Sandbox, url: str, header: str = "-") -> tuple[str, list[dict], list[str]]:
    """What the sandbox got, what the server logged and what the proxy connected, for one GET."""
    seen, proxied = len(lines(LOG)), len(lines(SOCKS_LOG))
    out = sbx.commands.run(GET + url + f" '{header}'").stdout.strip()
    return out, lines(LOG)[seen:], [e["target"] for e in lines(SOCKS_LOG)[proxied:]]


def claims(jwt: str) -> dict:
    body = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


Secret.create("proxy-key", VALUE)
ref = Secret.fill("proxy-key")
allow = {"allow_out": ["bound.test"], "deny_out": ["0.0.0.0/0"]}
sbx = Sandbox.create(
    os.environ["TEMPLATE"],
    network={**allow, "egress_proxy": PROXY,
             "rules": {"bound.test": [{"transform": lambda ctx: {
                 "headers": {"Authorization": f"Bearer {ctx.iam.tokens['svc']}"}}}]}},
    iam={"tokens": {"svc": Secret.iam_token(audience="bound.test", token_type="JWT-SVID")}})
try:
    # allowed traffic goes through the operator's proxy, with a token minted for the request
    out, (hit,), connects = get(sbx, "http://bound.test:8081/")
    assert out == "logged" and connects == [f"{BOUND}:8081"], (out, connects)
    token = hit["authorization"].removeprefix("Bearer ")
    assert token.count(".") == 2 and "${e2b" not in token, hit
    assert claims(token)["aud"] == ["bound.test"] and sbx.sandbox_id in claims(token)["sub"], claims(token)
    print("TOKEN", token)
    (_, (again,), _) = get(sbx, "http://bound.test:8081/")
    assert claims(again["authorization"].removeprefix("Bearer "))["jti"] != claims(token)["jti"]  # minted per request
    # the sandbox holds no token: its environment and files name none
    env = sbx.commands.run("env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
    assert token not in env and "identity" not in env
    # red team: denied traffic never reaches the proxy (nor the server)
    out, hits, connects = get(sbx, "http://other.test:8081/")
    assert out.startswith("failed:") and hits == [] and connects == [], (out, hits, connects)

    # update_network with new rules: the next request follows them (the old transform is gone,
    # the new host gets its header), through the proxy repeated in the update
    sbx.update_network({"allow_out": ["bound.test", "other.test"], "deny_out": ["0.0.0.0/0"], "egress_proxy": PROXY,
                        "rules": {"other.test": [{"transform": {"headers": {"Authorization": f"Key {ref}"}}}]}})
    out, (hit,), connects = get(sbx, "http://other.test:8081/")
    assert out == "logged" and hit["authorization"] == f"Key {VALUE}" and len(connects) == 1, (hit, connects)
    # the sandbox's info shows the proxy (never its password) and the rules in force
    network = sbx.get_info().network
    assert network["egress_proxy"] == {"address": PROXY["address"], "username": PROXY["username"]}, network
    assert list(network["rules"]) == ["other.test"] and PROXY["password"] not in json.dumps(network), network
    out, (hit,), connects = get(sbx, "http://bound.test:8081/", ref)
    assert hit["authorization"] is None and hit["x-api-key"] == ref, hit  # no rule for it now: nothing added
    # an update without egress_proxy sends directly (E2B's replace semantics): the proxy sees nothing
    sbx.update_network({"allow_out": ["bound.test"], "deny_out": ["0.0.0.0/0"]})
    out, (hit,), connects = get(sbx, "http://bound.test:8081/")
    assert out == "logged" and connects == [] and hit["authorization"] is None, (hit, connects)
    # bad input keeps what is in force: TLS to the proxy is refused
    try:
        sbx.update_network({"allow_out": ["other.test"], "deny_out": ["0.0.0.0/0"], "egress_proxy": {**PROXY, "tls": True}})
    except Exception as exc:  # noqa: BLE001 - the SDK's error for a 400
        assert "egressProxy" in str(exc) or "400" in str(exc), exc
    else:
        raise AssertionError("tls to the proxy was accepted")
    out, _, _ = get(sbx, "http://other.test:8081/")
    assert out.startswith("failed:"), out  # the previous policy (bound.test only) is kept
finally:
    sbx.kill()
    Secret.destroy("proxy-key")
print("E2B PROXY OK")
