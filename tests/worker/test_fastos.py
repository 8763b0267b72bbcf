"""The agent's start-up path uses fastos instead of os: its path helpers must agree with os.path."""

import os

import pytest

from rock.agent import fastos

PATHS = ["/", "/a", "/a/", "/a/b", "a/b", "a", "", "/a//b/", "//a", "/a/./b/../c", "../x", "/.."]


@pytest.mark.parametrize("path", PATHS)
def test_path_helpers_match_os_path(path):
    assert fastos.dirname(path) == os.path.dirname(path)
    assert fastos.basename(path) == os.path.basename(path)
    if path:
        assert fastos.abspath(path) == os.path.normpath(os.path.abspath(path)).replace("//", "/")


@pytest.mark.parametrize("parts", [("/a", "b"), ("/a/", "b"), ("a", "/b"), ("", "b"), ("/a", "b", "c/"), ("/a", "")])
def test_join_matches_os_path(parts):
    assert fastos.join(*parts) == os.path.join(*parts)


def test_makedirs_isdir_and_environ(tmp_path, monkeypatch):
    target = tmp_path / "x" / "y" / "z"
    fastos.makedirs(str(target), 0o700)
    fastos.makedirs(str(target), 0o700)  # exists already: fine, like exist_ok=True
    assert fastos.isdir(str(target)) and not fastos.isdir(str(target / "nope"))
    assert (target.stat().st_mode & 0o777) == 0o700
    assert fastos.environ.get("PATH") == os.environ.get("PATH")
