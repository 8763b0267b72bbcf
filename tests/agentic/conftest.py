"""Fixtures: a real admin per backend (see tests/admin/harness.py)."""

from tests.admin.harness import admin  # noqa: F401
