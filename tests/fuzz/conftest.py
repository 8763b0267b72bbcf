"""Fixtures: real admins (see tests/admin/harness.py)."""
