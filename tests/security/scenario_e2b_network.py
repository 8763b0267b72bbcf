"""The unmodified e2b SDK's network options against ROCK's egress gate: run in the newest SDK's
own venv by tests/security/test_egress.py. ``network`` with ``allow_out``/``deny_out``/
``dns_servers`` on create, ``update_network`` while running, and bad configs refused.

Environment: E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL, TEMPLATE, ALLOWED and DENIED (the
addresses the admin's resolver gives allowed.test and denied.test). Prints "E2B NETWORK OK".
"""

import os

import e2b
from e2b import Sandbox

assert os.environ["E2B_VENV"] in e2b.__file__, "not the venv's own e2b package"
ALLOWED, DENIED = os.environ["ALLOWED"], os.environ["DENIED"]
GET = ("python3 -c \"import sys, urllib.request\ntry:\n print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
       "\nexcept Exception as exc:\n print('unreachable:', type(exc).__name__)\" ")


def get(sbx: Sandbox, url: str) -> str:
    return sbx.commands.run(GET + url).stdout.strip()


sbx = Sandbox.create(os.environ["TEMPLATE"], network={"allow_out": ["allowed.test"], "deny_out": ["0.0.0.0/0"],
                                                      "dns_servers": ["8.8.8.8"]})
try:
    assert get(sbx, "http://allowed.test/") == f"hit {ALLOWED} allowed.test"  # control
    assert get(sbx, "http://denied.test/").startswith("unreachable")
    assert get(sbx, f"http://{DENIED}/").startswith("unreachable")
    sbx.update_network({"allow_out": ["denied.test"], "deny_out": ["0.0.0.0/0"]})
    assert get(sbx, "http://denied.test/") == f"hit {DENIED} denied.test"
    assert get(sbx, "http://allowed.test/").startswith("unreachable")
    # a deny of one address, all the rest allowed (E2B: no allow_out means everything)
    sbx.update_network({"deny_out": [ALLOWED]})
    assert get(sbx, "http://denied.test/") == f"hit {DENIED} denied.test"
    assert get(sbx, f"http://{ALLOWED}/").startswith("unreachable")
    for bad in ({"deny_out": ["denied.test"]}, {"allow_out": ["bad host!"]}, {"allow_out": ["127.0.0.1"]},
                {"dns_servers": ["not-an-ip"]}):
        try:
            sbx.update_network(bad)
        except Exception as exc:  # noqa: BLE001 - the SDK's own error for a 400
            assert "400" in str(exc) or "nvalid" in type(exc).__name__ or str(exc), exc
        else:
            raise AssertionError(f"{bad} was accepted")
    # the policy in force is still the last good one
    assert get(sbx, "http://denied.test/") == f"hit {DENIED} denied.test"
    assert get(sbx, f"http://{ALLOWED}/").startswith("unreachable")
finally:
    sbx.kill()

closed = Sandbox.create(os.environ["TEMPLATE"], allow_internet_access=False)
try:
    assert get(closed, "http://allowed.test/").startswith("unreachable")
    closed.update_network({"allow_out": ["allowed.test"], "deny_out": ["0.0.0.0/0"]})  # gains the gate while running
    assert get(closed, "http://allowed.test/") == f"hit {ALLOWED} allowed.test"
finally:
    closed.kill()
print("E2B NETWORK OK")
