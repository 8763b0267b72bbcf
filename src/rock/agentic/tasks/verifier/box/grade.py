"""SWE-bench's grade of per-test results (standard library only; runs in the verifier's sandbox
as ``python grade.py config.json results.json`` and on the host, which is what counts).

``resolved``: every FAIL_TO_PASS and PASS_TO_PASS test passed; ``pass_rate``: the share of
those tests that passed. A test missing from the results failed.
"""

import json
import sys


def grade(config, results):
    """SWE-bench's grade of ``results`` (``{"tests": {id: {"outcome"}}}``) against ``config``'s FAIL_TO_PASS and
    PASS_TO_PASS lists: resolved, pass rate, counts per list and the first 50 failed ids."""
    tests = results.get("tests", {}) if isinstance(results, dict) else {}
    expected = list(config.get("FAIL_TO_PASS", [])) + list(config.get("PASS_TO_PASS", []))
    passed = [t for t in expected if (tests.get(t) or {}).get("outcome") == "passed"]
    f2p = [t for t in config.get("FAIL_TO_PASS", []) if (tests.get(t) or {}).get("outcome") == "passed"]
    p2p = [t for t in config.get("PASS_TO_PASS", []) if (tests.get(t) or {}).get("outcome") == "passed"]
    return {"resolved": bool(expected) and len(passed) == len(expected),
            "pass_rate": len(passed) / len(expected) if expected else 0.0,
            "fail_to_pass": {"passed": len(f2p), "of": len(config.get("FAIL_TO_PASS", []))},
            "pass_to_pass": {"passed": len(p2p), "of": len(config.get("PASS_TO_PASS", []))},
            "failed": [t for t in expected if t not in set(passed)][:50]}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        conf = json.load(f)
    try:
        with open(sys.argv[2]) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {}
    print(1 if grade(conf, res)["resolved"] else 0)
