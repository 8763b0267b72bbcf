"""pytest, as the tests' unprivileged user, with an import path the workspace cannot shadow.

Started by ``supervise.py`` as ``python3 -S -s -P -B pytest_main.py SPEC_JSON``: no ``site``
(so no ``.pth`` file, ``sitecustomize`` or ``usercustomize`` is ever read, wherever it lies), no
script folder or working directory on the path. The path is then built here, in this order:

    the interpreter's standard library
    the runner's own packages (pytest and its dependencies, pinned in the verifier's image)
    this folder (the report plugin)
    the task's source folders in the workspace (``pythonpath``), last

so a module in the workspace named like anything the runner or the standard library imports
(``pytest.py``, ``_pytest/``, ``pluggy``, ``json.py``, the report plugin) is never the one
loaded. pytest reads no configuration file of the workspace's (``-c`` names an empty one of
ours) and autoloads no plugin; test modules are imported with ``--import-mode=append``, so a
test file's folder never goes before the standard library either.
"""

import json
import os
import sys

NO_RUNNER = 97  # the supervisor's sign that the runner would not import


def main():
    """Run pytest as the spec (``argv[1]``, JSON) says, with an import path the workspace cannot shadow; exits with
    pytest's status, or 97 when pytest or the report plugin will not import."""
    spec = json.loads(sys.argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    workdir = os.getcwd()
    sys.path[:] = [p for p in sys.path if p and os.path.isabs(p)]
    sys.path += [p for p in spec.get("site", []) if os.path.isdir(p)] + [here]
    try:
        import importlib.util

        import pytest  # noqa: F401 - from the runner's site, before any workspace folder is on the path

        if importlib.util.find_spec("rock_verify_report") is None:  # pytest imports it (-p), to rewrite it
            raise ImportError("the report plugin is not in %s" % here)
    except ImportError as exc:
        sys.stderr.write("cannot import the test runner (pytest) from %s: %s\n" % (spec.get("site"), exc))
        sys.stderr.flush()
        os._exit(NO_RUNNER)
    for name in ("random", "socket", "json", "struct"):  # what the plugin imports late
        __import__(name)
    sys.path += [os.path.normpath(os.path.join(workdir, p)) for p in spec.get("pythonpath", ["."])]
    args = ["-c", os.path.join(here, "pytest.ini"), "--rootdir", workdir, "--import-mode=append",
            "-p", "rock_verify_report", "-p", "no:cacheprovider", "-q", *spec["files"]]
    sys.exit(pytest.main(args))


if __name__ == "__main__":
    main()
