"""One real admin per backend with two tokens (two namespaces) for the E2B tests."""

import httpx
import pytest

from tests.admin.harness import Admin, backend_params

TOKENS = {"e2b-token-a": "team-a", "e2b-token-b": "team-b"}


@pytest.fixture(scope="session", params=backend_params())
def e2b_admin(request):
    # e2b 2.50 and older send allow_internet_access=true unless told otherwise: on bwrap that is the
    # host's network, refused unless the operator allows it (the scenarios run only their own
    # commands; test_bwrap_internet_access_needs_the_operators_setting checks the refusal).
    allow = {"allow_host_network": True} if request.param == "bwrap" else {}
    server = Admin(request.param, tokens=TOKENS, e2b_templates={"py311": "python:3.11"}, **allow).start()
    yield server
    server.stop(stop_sandboxes=True)


@pytest.fixture
def client(e2b_admin):
    """An HTTP client on the module's admin (``e2b_admin``, which a module may give its own)."""
    with httpx.Client(base_url=e2b_admin.url, timeout=120) as c:
        yield c
