"""What an env image spec accepts and what its content key depends on (no engine needed)."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from rock.envs.images import NODE_WHEEL, EnvImageSpec, content_key


@pytest.mark.parametrize("item", ["--no-deps", "--index-url=http://example.invalid/simple", " -e ."])
def test_pip_options_are_not_packages(item):
    with pytest.raises(ValidationError) as err:
        EnvImageSpec(base="python:3.11", packages=["numpy", item])
    assert "pip option" in str(err.value) and "no_deps" in str(err.value)


def test_no_deps_is_part_of_the_content_key_and_leaves_other_keys_alone():
    plain = EnvImageSpec(base="python:3.11", packages=["bfcl-eval==2026.3.23"])
    bare = EnvImageSpec(base="python:3.11", packages=["bfcl-eval==2026.3.23"], no_deps=True)
    assert content_key(plain, "sha256:1", "3.11") != content_key(bare, "sha256:1", "3.11")
    # Specs without it keep the key they had before the field existed (no rebuild of built images).
    before = ["sha256:1", ["bfcl-eval==2026.3.23"], [], "3.11", []]
    assert content_key(plain, "sha256:1", "3.11") == hashlib.sha256(json.dumps(before).encode()).hexdigest()[:16]


@pytest.mark.parametrize("item", ["left-pad", "left-pad@latest", "left-pad@^1.0.0", "git+https://example.invalid/x.git",
                                  "file:../x", "@scope/pkg@1.0", "--ignore-scripts=false"])
def test_npm_packages_are_exact_registry_versions(item):
    with pytest.raises(ValidationError) as err:
        EnvImageSpec(base="python:3.11", packages=[NODE_WHEEL], npm=[item])
    assert "exact version" in str(err.value)


def test_npm_needs_node_and_is_part_of_the_content_key():
    with pytest.raises(ValidationError) as err:
        EnvImageSpec(base="python:3.11", npm=["@openai/codex@0.169.0"])
    assert NODE_WHEEL in str(err.value)
    node = EnvImageSpec(base="python:3.11", packages=[NODE_WHEEL])
    codex = EnvImageSpec(base="python:3.11", packages=[NODE_WHEEL], npm=["@openai/codex@0.169.0"])
    assert content_key(node, "sha256:1", "3.11") != content_key(codex, "sha256:1", "3.11")


def test_a_local_package_is_keyed_by_its_files_not_its_path(tmp_path):
    """A folder package (where the operator allows direct requirements) gets a new image when its
    files change, and the same one while they do not (bytecode caches do not count)."""
    pkg = tmp_path / "pkg"
    (pkg / "mod").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text("[project]\nname = 'mod'\nversion = '0'\n")
    (pkg / "mod" / "__init__.py").write_text("A = 1\n")
    spec = EnvImageSpec(base="python:3.11", packages=[str(pkg)])
    first = content_key(spec, "sha256:1", "3.11")
    (pkg / "mod" / "__pycache__").mkdir()
    (pkg / "mod" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"cache")
    assert content_key(spec, "sha256:1", "3.11") == first
    (pkg / "mod" / "__init__.py").write_text("A = 2\n")
    assert content_key(spec, "sha256:1", "3.11") != first
    (pkg / "mod" / "__init__.py").write_text("A = 1\n")
    assert content_key(spec, "sha256:1", "3.11") == first
    # a package from the index is keyed by its requirement alone, as before
    named = EnvImageSpec(base="python:3.11", packages=["bfcl-eval==2026.3.23"])
    before = ["sha256:1", ["bfcl-eval==2026.3.23"], [], "3.11", []]
    assert content_key(named, "sha256:1", "3.11") == hashlib.sha256(json.dumps(before).encode()).hexdigest()[:16]
