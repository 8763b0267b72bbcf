"""Finding 9: output past a bound is cut with a marker; the sandbox and its sessions survive.

Before: 300 MB of stdout from ``execute`` went as one oversized frame, the agent connection
dropped, and the caller's sandbox failed."""

from __future__ import annotations

from tests.security.conftest import TOKEN_A, execute, rock, start


def test_a_flood_of_output_is_cut_with_a_marker_and_the_sandbox_lives_on(tenants):
    with rock(tenants, TOKEN_A) as alice:
        sid = start(alice)
        try:
            r = alice.post("/create_session", json={"sandbox_id": sid, "session": "s"})
            assert r.status_code == 200, r.text
            flood = "head -c 300000000 /dev/zero | tr '\\0' x; echo END-OF-FLOOD; head -c 5000000 /dev/zero >&2"
            out = execute(alice, sid, flood)
            limit = tenants.settings.max_output_bytes
            assert len(out["stdout"]) < limit + 200 and "bytes of output truncated" in out["stdout"], len(out["stdout"])
            assert out["truncated"] is True
            # the cut keeps both ends: the start of the output and its last line
            assert out["stdout"].startswith("xxxx") and out["stdout"].endswith("END-OF-FLOOD\n")
            assert out["exit_code"] == 0 and len(out["stderr"]) == 5_000_000
            # control: the sandbox, its agent and its session all still answer
            assert execute(alice, sid, "echo alive")["stdout"] == "alive\n"
            assert execute(alice, sid, "echo small")["truncated"] is False
            r = alice.post("/run_in_session", json={"sandbox_id": sid, "session": "s", "command": "echo still-here"})
            assert r.status_code == 200 and r.json()["result"]["output"].strip() == "still-here", r.text
            status = alice.get("/get_status", params={"sandbox_id": sid}).json()["result"]
            assert status["state"] == "running", status
        finally:
            alice.post("/delete", json={"sandbox_id": sid})
