"""The cheat suite: every attack of ``cheats.ATTACKS`` made by an agent (a script in its sandbox,
leaving the bug in place), on a built-in suite's task (runner ``pytest``) and on a user's own
Harbor task (runner ``script``), per backend, with honest controls in the same job.

Each attack must pay 0.0, must show its evidence (it was made and reached as far as it could),
and no module it planted may ever be imported by the verifier. Each control (the reference fix,
alone and with a hard link, a binary file and a symbolic link beside it) must pay 1.0.
"""

import asyncio


from rock.actions import Command
from rock.agentic.record import RolloutRecord
from rock.agentic.tasks import load_task
from rock.agentic.tasks.rollout import NoHarness, RolloutOptions, rollout
from rock.agentic.tasks.suites import open_suite
from tests.agentic_tasks.cheats import ATTACKS, SHADOW, bug_module, fake_results, fill
from tests.agentic_tasks.conftest import harbor_task


def _plant(attack, fake: str):
    async def policy(box, task):
        r = await box.execute(Command(command=["bash", "-c", fill(attack.script, task, fake)], cwd=task.workdir,
                                      timeout=180, env={"ROCK_FAKE": fake}))
        return {"exit_code": r.exit_code, "output": (r.stdout + r.stderr)[-1500:]}

    policy.__name__ = attack.name
    return policy


def _honest_with_extras():
    """The reference fix, then a hard link, a binary file and a symbolic link in the workspace."""
    async def policy(box, task):
        rec = RolloutRecord()
        await NoHarness().run(box, task, RolloutOptions(base_url="", policy="oracle"), rec)
        w = task.workdir
        r = await box.execute(Command(command=f"cd {w} && ln {bug_module(task)} hard-link-of-the-fix && "
                                              "head -c 4096 /dev/urandom > blob.bin && ln -s /etc/hostname host-link",
                                      timeout=60))
        return {"exit_code": r.exit_code or rec.harness.exit_code, "output": r.stderr}

    policy.__name__ = "honest-with-links-and-binary"
    return policy


def _user_task(root):
    """A user's Harbor task whose test.sh trusts no exit code: the printed answer decides."""
    return load_task(harbor_task(root, "user-add", test_sh=(
        "#!/bin/bash\ncd /workspace\nout=$(python3 -c 'import calc; print(calc.add(2, 3), calc.add(-1, 1))')\n"
        "if [ \"$out\" = '5 0' ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; "
        "fi\n")))


def _evidence(attack, rec) -> str | None:
    """Why the attempt does not count as made, or None."""
    planted = rec["harness"].get("result") or {}
    if attack.evidence != "error" and planted.get("exit_code") != 0:
        return f"the attack's script failed in the agent's sandbox: {planted}"
    tests = rec.get("tests") or {}
    need = attack.evidence
    if need == "carried" and not rec["diff"]:
        return "nothing it planted reached the verifier"
    if need == "dropped" and not rec["ignored_paths"]:
        return "the diff dropped nothing"
    if need == "planted" and not (rec["diff"] or rec["ignored_paths"]):
        return "nothing it planted reached the diff"
    if need == "leftover" and not (tests.get("adopted_processes") or tests.get("leftover_processes")
                                   or "outlived" in (rec["error"] or "")):
        return "no process of the tests' outlived them"
    if need == "foreign" and not tests.get("foreign_reports"):
        return "no other process sent the supervisor a report"
    if need == "error" and "not graded" not in (rec["error"] or ""):
        return f"no clear error: {rec['error']}"
    return None


async def _job(admin_url, tasks):
    runs = []
    for task, kind in tasks:
        fake = fake_results(task)
        for attack in ATTACKS:
            if kind in attack.suites:
                runs.append((attack, task, _plant(attack, fake)))
        runs.append((None, task, "oracle"))
        runs.append((None, task, _honest_with_extras()))
    gate = asyncio.Semaphore(6)

    async def one(policy, task):
        async with gate:
            return (await rollout(task, RolloutOptions(base_url=admin_url, policy=policy))).to_json()

    recs = await asyncio.gather(*(one(p, t) for _, t, p in runs))
    return [(a, t, r) for (a, t, _), r in zip(runs, recs)]


def test_every_cheat_pays_nothing_and_every_control_pays(admin, suites, tmp_path):
    pypi = open_suite("pypi-bugs")
    # cachetools: its source folder (src/) is not the workspace's top, so "below the top" is real
    builtin = pypi.get(next(t for t in pypi.ids() if t.startswith("cachetools")))
    tasks = [(builtin, "pytest"), (open_suite("humaneval-repo").get("humaneval-000"), "pytest"),
             (_user_task(tmp_path), "script")]
    results = asyncio.run(_job(admin.url, tasks))
    wrong = []
    for attack, task, rec in results:
        what = f"{task.task_id}/{attack.name if attack else rec['policy']}"
        output = (rec.get("tests") or {}).get("output") or ""
        if attack is None:
            if rec["reward"] != 1.0 or rec["error"]:
                wrong.append(f"{what}: control paid {rec['reward']} ({rec['error']}; {rec.get('tests')})")
            continue
        if rec["reward"] != 0.0 or rec["resolved"]:
            wrong.append(f"{what}: FORGED reward {rec['reward']} ({rec.get('tests')})")
        if SHADOW in output:
            wrong.append(f"{what}: a planted module was imported by the verifier: {output[-500:]}")
        why = _evidence(attack, rec)
        if why:
            wrong.append(f"{what}: {why}")
    assert len([a for a, _, _ in results if a]) >= 25 * 1.5
    assert not wrong, "\n".join(wrong)
