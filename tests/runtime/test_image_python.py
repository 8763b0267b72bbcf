"""Finding an image's python3 from the host, so the bwrap agent starts without a shell."""

import os

from rock.runtime.image_root import image_python


def _rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "opt/py/bin").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/local/bin").mkdir(parents=True)
    real = root / "opt/py/bin/python3.12"
    real.write_text("#!/bin/true\n")
    real.chmod(0o755)
    upper = tmp_path / "upper"  # the sandbox's own layer: empty in a fresh sandbox
    upper.mkdir()
    return root, upper


def test_absolute_symlinks_resolve_inside_the_rootfs_not_on_the_host(tmp_path):
    root, upper = _rootfs(tmp_path)
    # Absolute target: meaningful only inside the image (the host has no /opt/py).
    os.symlink("/opt/py/bin/python3.12", root / "usr/local/bin/python3")
    assert image_python(upper, str(root), "/usr/local/bin:/usr/bin") == "/usr/local/bin/python3"


def test_dangling_looping_or_missing_python_gives_none(tmp_path):
    root, upper = _rootfs(tmp_path)
    os.symlink("/nowhere/python3", root / "usr/bin/python3")  # dangling inside the image
    os.symlink("python3", root / "usr/local/bin/python3")  # points at itself
    assert image_python(upper, str(root), "/usr/local/bin:/usr/bin") is None
    assert image_python(upper, str(root), "/sbin:relative/bin") is None


def test_relative_symlinks_and_a_directory_symlink_on_the_way(tmp_path):
    root, upper = _rootfs(tmp_path)
    os.symlink("usr/bin", root / "bin")
    os.symlink("../../opt/py/bin/python3.12", root / "usr/bin/python3")
    assert image_python(upper, str(root), "/bin") == "/bin/python3"


def test_a_sandbox_with_files_of_its_own_leaves_the_search_to_the_agent_launcher(tmp_path):
    root, upper = _rootfs(tmp_path)
    os.symlink("/opt/py/bin/python3.12", root / "usr/bin/python3")
    (upper / "usr/bin").mkdir(parents=True)  # the sandbox may have replaced or removed python3
    assert image_python(upper, str(root), "/usr/bin") is None
