"""One real admin per backend with two tokens (two namespaces) for the E2B tests."""

import pytest

from tests.admin.harness import Admin, backend_params

TOKENS = {"e2b-token-a": "team-a", "e2b-token-b": "team-b"}


@pytest.fixture(scope="session", params=backend_params())
def e2b_admin(request):
    server = Admin(request.param, tokens=TOKENS, e2b_templates={"py311": "python:3.11"}).start()
    yield server
    server.stop(stop_sandboxes=True)
