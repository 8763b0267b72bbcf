import pytest

from tests.admin.harness import Admin


@pytest.fixture(scope="session")
def training_admin():
    """One real admin (docker) for the training tests."""
    server = Admin("docker").start()
    yield server
    server.stop(stop_sandboxes=True)
