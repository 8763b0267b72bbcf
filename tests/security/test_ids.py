"""Finding 7: a caller-chosen sandbox id never reveals or blocks another namespace's.

Before: bob starting a sandbox with alice's id got 409 "already taken" (an existence oracle,
and a way to take the ids another tenant will choose)."""

from __future__ import annotations

from tests.security.conftest import TOKEN_A, TOKEN_B, execute, rock, start


def test_a_chosen_id_is_the_callers_own_and_another_tenants_is_never_revealed_or_taken(tenants):
    with rock(tenants, TOKEN_A) as alice, rock(tenants, TOKEN_B) as bob:
        alices = start(alice, sandbox_id="build-42")
        try:
            execute(alice, alices, "echo alice-secret > /tmp/s")
            # bob picks the same id, and then alice's full id: each time a sandbox of his own, never a 409
            bobs = start(bob, sandbox_id="build-42")
            bobs_too = start(bob, sandbox_id=alices)
            try:
                assert len({alices, bobs, bobs_too}) == 3
                for sid in (bobs, bobs_too):
                    assert "alice-secret" not in execute(bob, sid, "cat /tmp/s 2>&1")["stdout"]
                # alice's sandbox, by either name, is "not found" for bob, exactly like a missing one
                for sid in (alices, "build-42", "no-such-sandbox"):
                    r = bob.get("/get_status", params={"sandbox_id": sid})
                    assert r.status_code == 404 and r.json()["result"]["error_type"] == "SandboxNotFound", r.text
                    assert "already" not in r.text
            finally:
                for sid in (bobs, bobs_too):
                    bob.post("/delete", json={"sandbox_id": sid})
            # control: alice's start with her id again is the same sandbox (idempotent), files intact
            assert start(alice, sandbox_id="build-42") == alices
            assert execute(alice, alices, "cat /tmp/s")["stdout"] == "alice-secret\n"
        finally:
            alice.post("/delete", json={"sandbox_id": alices})
