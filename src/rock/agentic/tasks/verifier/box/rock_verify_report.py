"""A pytest plugin (standard library and pytest only): every test's outcome and its failure's
first line, as JSON. It runs inside the verifier's sandbox, so it imports nothing from rock.

Under the verifier's supervisor (``supervise.py``, which sets ``ROCK_VERIFY_SOCKET``) the report
goes over a Unix socket to the supervisor, which takes it only from this pytest process (the
kernel tells it who connected): a file the tested code could also write is never the result.
Standalone (a task's own test.sh, as Harbor runs it) it is written to ``--rock-report``:

    python -m pytest -p rock_verify_report --rock-report=/logs/verifier/results.json ...

The report is made when the session ends and the process then ends at once with pytest's status
(``os._exit``: the tested code's atexit handlers never run after it). A collection error fails
every test of that file (its ids are the expected ones, so they count as failed, not absent).
"""

import json
import os

RESULTS = {}
ERRORS = {}
STATUS = []


def pytest_addoption(parser):
    parser.addoption("--rock-report", default=None, help="write per-test outcomes as JSON here")


def pytest_runtest_setup(item):
    # Tests that draw random numbers (a random-replacement cache, say) decide the same way in the
    # suite's build and in every verifier run: a task's fail-to-pass list must not be luck.
    import random

    random.seed(0)


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return text.strip()[:500]


def pytest_runtest_logreport(report):
    prev = RESULTS.get(report.nodeid)
    if report.when == "call" or report.failed or (report.skipped and prev is None):
        if prev is not None and prev["outcome"] == "failed":
            return  # a teardown after a failed call stays failed
        outcome = "failed" if report.failed else ("skipped" if report.skipped else "passed")
        if hasattr(report, "wasxfail"):
            outcome = "xfail" if report.skipped else "failed"
        RESULTS[report.nodeid] = {"outcome": outcome, "message": _message(report) if report.failed else ""}


def pytest_collectreport(report):
    if report.failed:
        ERRORS[report.nodeid] = _message(report)


def pytest_sessionfinish(session, exitstatus):
    report = {"tests": RESULTS, "collection_errors": ERRORS, "exitstatus": int(exitstatus)}
    name = os.environ.get("ROCK_VERIFY_SOCKET")
    path = session.config.getoption("rock_report")
    if name:
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect("\0" + name)
            sock.sendall(json.dumps(report).encode())
    elif path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f)
        os.replace(tmp, path)
    else:
        return
    STATUS.append(int(exitstatus))


def pytest_unconfigure(config):
    if STATUS:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(STATUS[0])
