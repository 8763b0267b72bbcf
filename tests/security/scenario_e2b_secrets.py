"""The unmodified e2b SDK's ``Secret`` and ``network.rules`` transforms against ROCK's egress relay:
run in the newest SDK's own venv by tests/security/test_secrets.py.

Environment: E2B_API_KEY, OTHER_KEY, E2B_API_URL, E2B_SANDBOX_URL, TEMPLATE, VALUE (the secret),
LOG (the scripted server's request log). Prints "E2B SECRETS OK".
"""

import json
import os

import e2b
from e2b import Sandbox, Secret, SecretException

assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
VALUE, LOG, OTHER = os.environ["VALUE"], os.environ["LOG"], os.environ["OTHER_KEY"]
GET = ("python3 -c \"import sys, urllib.request\ntry:\n print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], "
       "headers={'X-Api-Key': sys.argv[2]}), timeout=10).read().decode())"
       "\nexcept Exception as exc:\n print('failed:', type(exc).__name__, exc)\" ")


def logged() -> list[dict]:
    with open(LOG) as f:
        return [json.loads(line) for line in f]


def get(sbx: Sandbox, url: str, header: str = "-") -> list[dict]:
    seen = len(logged())
    out = sbx.commands.run(GET + url + f" '{header}'").stdout.strip()
    assert out == "logged", out
    return logged()[seen:]


info = Secret.create("E2B-Key", VALUE, metadata={"team": "a"})
assert (info.name, info.version, info.metadata) == ("e2b-key", 1, {"team": "a"}), info
assert info.secret_id.startswith("sec_")
assert Secret.get_info("e2b-key").secret_id == info.secret_id == Secret.get_info(info.secret_id).secret_id
page = Secret.list().next_items()
assert [s.name for s in page] == ["e2b-key"] and VALUE not in repr(page)
# another team's secret is a missing one
assert not Secret.exists("e2b-key", api_key=OTHER) and Secret.destroy("e2b-key", api_key=OTHER) is False
assert Secret.list(api_key=OTHER).next_items() == []
# bad input: E2B's 400s (a name, an empty value), a taken name
for name, value in (("bad name!", "v"), ("ok-name", "")):
    try:
        Secret.create(name, value)
    except SecretException as exc:
        assert "400" in str(exc) or "name" in str(exc) or "value" in str(exc), exc
    else:
        raise AssertionError(f"{name!r}/{value!r} was accepted")
try:
    Secret.create("e2b-key", "again")
except SecretException:
    pass
else:
    raise AssertionError("a taken name was accepted")

ref = Secret.fill("e2b-key")
sbx = Sandbox.create(os.environ["TEMPLATE"], network={
    "allow_out": ["bound.test", "other.test"], "deny_out": ["0.0.0.0/0"],
    "rules": {"bound.test": [{"transform": {"headers": {"Authorization": f"Bearer {ref}"}}}]}})
try:
    # the rule's host gets the header with the value, over HTTP and HTTPS
    for url in ("http://bound.test:8081/", "https://bound.test:8443/"):
        (hit,) = get(sbx, url)
        assert hit["authorization"] == f"Bearer {VALUE}", hit
    # red team: the reference sent by the sandbox itself to another host stays a reference
    (hit,) = get(sbx, "http://other.test:8081/", ref)
    assert hit["authorization"] is None and hit["x-api-key"] == ref, hit
    env = sbx.commands.run("env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
    assert "SSL_CERT_FILE" in env and VALUE not in env
    # a new version is sent from the next request on; a destroyed secret no more
    assert Secret.update("e2b-key", VALUE + "-v2").version == 2
    (hit,) = get(sbx, "http://bound.test:8081/")
    assert hit["authorization"] == f"Bearer {VALUE}-v2", hit
    assert Secret.destroy("e2b-key") is True and not Secret.exists("e2b-key")
    (hit,) = get(sbx, "http://bound.test:8081/")
    assert hit["authorization"] == f"Bearer {ref}", hit
finally:
    sbx.kill()
print("E2B SECRETS OK")
