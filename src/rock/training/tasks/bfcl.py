"""BFCL (``bfcl-eval``): multi-turn tasks against BFCL's stateful backends, single-turn AST and
relevance tasks; every reward comes from BFCL's own checkers.

bfcl-eval is installed without its dependencies (they are every model vendor's SDK); the one
module of it that imports them all, ``constants.model_config``, is only needed by the checkers
for one flag, so ``_load`` puts a stand-in with that flag in its place before the checkers load.

Tool calls reach BFCL's backends as call strings that BFCL ``eval``s. Names are checked to be
plain identifiers and arguments are ``repr``s of JSON values, so an agent cannot smuggle code
into that ``eval`` and reach another instance of the same env host.
"""

import copy
import itertools
import re
import sys
import types

from .common import COMPLETED, TaskError, messages_arg, parse_tool_calls, tool_results_text

MULTI_TURN = ("multi_turn_base", "multi_turn_long_context", "multi_turn_miss_func", "multi_turn_miss_param")
AST = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple",
       "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
RELEVANCE = ("irrelevance", "live_irrelevance", "live_relevance")
CATEGORIES = MULTI_TURN + AST + RELEVANCE
# Listed by get_env_profile's catalog with the reason they are not offered.
UNAVAILABLE = {
    "web_search_base": "needs the internet (live web search through SerpAPI)",
    "web_search_no_snippet": "needs the internet (live web search through SerpAPI)",
    "memory_kv": "needs the internet-backed memory prerequisites and an embedding model download",
    "memory_vector": "needs the internet-backed memory prerequisites and an embedding model download",
    "memory_rec_sum": "needs the internet-backed memory prerequisites and an embedding model download",
    "format_sensitivity": "varies the prompt format of BFCL's prompting models; not a task of its own",
}
GROUPS = {"multi_turn": MULTI_TURN, "ast": AST, "single_turn": AST, "relevance": RELEVANCE, "all": CATEGORIES}
CHECKER_MODEL = "rock"  # our entry in BFCL's model table: tool names with '.' are sent with '_'
MAX_STEPS_PER_TURN = 20  # BFCL's own inference limit per turn

_bfcl = None
_entries = {}  # category -> {id: entry}
_answers = {}  # category -> {id: ground truth}
_serial = itertools.count(1)


def _load():
    global _bfcl
    if _bfcl is not None:
        return _bfcl
    from dataclasses import dataclass

    @dataclass
    class ModelConfig:  # the fields BFCL's table has; the checkers read underscore_to_dot
        model_name: str
        display_name: str = ""
        url: str = ""
        org: str = ""
        license: str = ""
        model_handler: object = None
        input_price: object = None
        output_price: object = None
        is_fc_model: bool = True
        underscore_to_dot: bool = True

    try:
        import bfcl_eval.constants  # noqa: F401
    except ImportError as exc:
        raise TaskError("bfcl-eval is not installed where this task runs (%s)" % exc, "SuiteUnavailable")
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        stand_in = types.ModuleType(name)
        stand_in.ModelConfig = ModelConfig
        stand_in.MODEL_CONFIG_MAPPING = {CHECKER_MODEL: ModelConfig(model_name=CHECKER_MODEL)}
        sys.modules[name] = stand_in
    from bfcl_eval import utils
    from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
    from bfcl_eval.constants.enums import Language, ModelStyle
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker
    from bfcl_eval.model_handler.utils import convert_to_function_call, convert_to_tool

    _bfcl = types.SimpleNamespace(
        utils=utils, more_functions_prompt=DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC, Language=Language,
        style=ModelStyle.OPENAI_COMPLETIONS, mapping=GORILLA_TO_OPENAPI, ast_checker=ast_checker, mt=multi_turn_utils,
        multi_turn_checker=multi_turn_checker, to_call=convert_to_function_call, to_tool=convert_to_tool)
    return _bfcl


def _category(task_id):
    cat = str(task_id).rsplit("_", 1)[0]
    if cat in CATEGORIES:
        return cat
    if cat in UNAVAILABLE:
        raise TaskError("BFCL category %s is not offered here: %s" % (cat, UNAVAILABLE[cat]), "SuiteUnavailable")
    raise TaskError("no BFCL task %r (ids look like multi_turn_base_0 or simple_python_12)" % (task_id,), "TaskNotFound")


def entries(category):
    """{id: entry} of one category, as BFCL's own loader prepares them (functions filled in)."""
    if category not in _entries:
        b = _load()
        _entries[category] = {e["id"]: e for e in b.utils.load_dataset_entry(
            category, include_prereq=False, include_language_specific_hint=False)}
    return _entries[category]


def answers(category):
    """{id: ground truth} of one category (none for the relevance categories, graded by whether a call was
    made)."""
    if category not in _answers:
        b = _load()
        _answers[category] = {} if category in RELEVANCE else {
            a["id"]: a["ground_truth"] for a in b.utils.load_ground_truth_entry(category)}
    return _answers[category]


def task_ids(categories):
    """Every task id of ``categories``, in BFCL's order."""
    return [tid for cat in categories for tid in entries(cat)]


def resolve_categories(names):
    """The categories that ``names`` (categories or groups) stand for, each once; a ``TaskError`` for an
    unknown name or one not offered here."""
    out = []
    for name in names:
        if name in GROUPS:
            out += [c for c in GROUPS[name] if c not in out]
        elif name in CATEGORIES:
            if name not in out:
                out.append(name)
        elif name in UNAVAILABLE:
            raise TaskError("BFCL category %s is not offered here: %s" % (name, UNAVAILABLE[name]), "SuiteUnavailable")
        else:
            raise TaskError("unknown BFCL category %r; known: %s, or a group: %s"
                            % (name, ", ".join(CATEGORIES), ", ".join(GROUPS)), "BadRequest")
    return out


class BfclTask:
    """One BFCL entry as a conversation: tool calls parsed from the assistant's ``<tool_call>`` blocks run
    on BFCL's own backend (multi-turn), and the calls made are graded by BFCL's checkers."""

    def __init__(self, task_id, params=None):
        self.b = _load()
        self.category = _category(task_id)
        entry = entries(self.category).get(task_id)
        if entry is None:
            raise TaskError("no BFCL task %r in category %s (it has %d tasks)"
                            % (task_id, self.category, len(entries(self.category))), "TaskNotFound")
        self.task_id = task_id
        self.entry = copy.deepcopy(entry)  # holdout functions are added to it as turns go by
        self.multi_turn = self.category in MULTI_TURN
        params = params or {}
        self.max_steps = int(params.get("max_steps_per_turn", MAX_STEPS_PER_TURN))
        # BFCL keys its backend instances by model name and entry id in a module dict:
        # a name per instance keeps instances of the same task apart.
        self.model = "rk%dx" % next(_serial)
        self.turns = []  # per user turn, per step: the call strings the agent sent
        self.calls = []  # single-turn: [{name: arguments}] of the answer
        self.answered = False
        self.turn = 0
        self.steps_in_turn = 0
        self.done = False
        self.force_terminated = None

    # -- the task's face -----------------------------------------------------------------------

    def tools(self):
        # BFCL rewrites the docs in place (Java/JS types become strings): work on a copy
        """The entry's functions as OpenAI-style tools, as BFCL prepares them."""
        functions = self.b.utils._func_doc_language_specific_pre_processing(copy.deepcopy(self.entry["function"]),
                                                                           self.category)
        return self.b.to_tool(functions, self.b.mapping, self.b.style)

    def system_prompt(self, extra=""):
        """The system prompt: ``extra`` (the entry's own), then the tools and how to call them."""
        import json

        lines = ["You may call one or more functions to assist with the user query.",
                 "You are provided with function signatures within <tools></tools> XML tags:", "<tools>"]
        lines += [json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in self.tools()]
        lines += ["</tools>", "For each function call, return a json object with function name and arguments "
                  "within <tool_call></tool_call> XML tags:",
                  "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"]
        return (extra + "\n\n" if extra else "") + "\n".join(lines)

    def create(self):
        """The first messages (system with the tools, then the first user turn) and the task's facts."""
        first = self.entry["question"][0]
        system = "\n".join(m["content"] for m in first if m.get("role") == "system")
        user = "\n".join(m["content"] for m in first if m.get("role") == "user")
        if self.multi_turn:
            self.turns.append([])
        return {"state": [{"role": "system", "content": self.system_prompt(system)}, {"role": "user", "content": user}],
                "info": {"task_id": self.task_id, "category": self.category, "multi_turn": self.multi_turn,
                         "tools_count": len(self.entry["function"]), "questions_count": len(self.entry["question"])}}

    def info(self):
        """The task's id, category and tools."""
        return {"task_id": self.task_id, "category": self.category, "tools": self.tools()}

    # -- steps -------------------------------------------------------------------------------------

    def step(self, action, params=None):
        """One assistant message: its tool calls run (multi-turn) and their results come back; a message
        without calls ends the user turn (the next question, or completion). A single-turn task's first
        answer ends it."""
        if self.done:
            raise TaskError("task %s has terminated; evaluate or release it" % self.task_id, "BadRequest")
        text, calls = parse_tool_calls(action)
        if not self.multi_turn:
            self.calls = [{c["name"]: c["arguments"]} for c in calls]
            self.answered = True
            return self._finish()
        if calls:
            strings = self.b.to_call(self.calls_as_dicts(calls))
            self.turns[self.turn].append(strings)
            self.steps_in_turn += 1
            results, _ = self.b.mt.execute_multi_turn_func_call(
                strings, self.entry["initial_config"], self.entry["involved_classes"], self.model, self.entry["id"],
                long_context="long_context" in self.category, is_evaL_run=False)
            if self.steps_in_turn >= self.max_steps:
                self.force_terminated = "more than %d steps in turn %d" % (self.max_steps, self.turn)
                return self._finish()
            out = [{"name": c["name"], "content": r} for c, r in zip(calls, results)]
            return {"state": [{"role": "user", "content": tool_results_text(out), "tool_results": out}],
                    "reward": 0.0, "is_terminated": False, "info": {"turn": self.turn}}
        return self._next_turn()

    @staticmethod
    def calls_as_dicts(calls):
        """Parsed calls as BFCL's ``[{name: arguments}]``."""
        return [{c["name"]: c["arguments"]} for c in calls]

    def _next_turn(self):
        self.turn += 1
        self.steps_in_turn = 0
        questions = self.entry["question"]
        if self.turn >= len(questions):
            return self._finish()
        self.turns.append([])
        holdout = (self.entry.get("missed_function") or self.entry.get("holdout_function") or {}).get(str(self.turn))
        if holdout:
            self.entry["function"].extend(holdout)
            content = self.b.more_functions_prompt
            state = {"role": "user", "content": content, "tools": self.tools()}
        else:
            content = "\n".join(m["content"] for m in questions[self.turn] if m.get("role") == "user")
            state = {"role": "user", "content": content}
        return {"state": [state], "reward": 0.0, "is_terminated": False, "info": {"turn": self.turn}}

    def _finish(self):
        # The last step is graded, and carries what evaluate(details) would answer: a rollout
        # needs no separate evaluate call (and BFCL no second replay of the conversation).
        self.done = True
        evaluation = self.evaluate(params={"details": True})
        return {"state": [{"role": "user", "content": COMPLETED}], "reward": evaluation["accuracy"],
                "is_terminated": True, "info": {"turn": self.turn, "evaluation": evaluation}}

    # -- grading -----------------------------------------------------------------------------------

    def evaluate(self, messages=None, params=None):
        """BFCL's grade of the calls made through ``step``: the accuracy, or with ``details`` the whole
        result."""
        params = params or {}
        if messages_arg(messages) is not None:
            raise TaskError("BFCL grades the calls made through step; evaluate takes no messages", "BadRequest")
        result = self._grade()
        result.update(task_id=self.task_id, category=self.category)
        details = params.get("details") or params.get("sparse") is False
        return result if details else result["accuracy"]

    def _grade(self):
        b = self.b
        if self.category in RELEVANCE:
            empty = b.utils.is_empty_output(self.calls) if self.answered else True
            valid = empty if "irrelevance" in self.category else not empty
            return {"valid": valid, "accuracy": float(valid), "decoded": self.calls}
        truth = answers(self.category)[self.task_id]
        if not self.multi_turn:
            if not self.answered:
                return {"valid": False, "accuracy": 0.0, "error": "no answer was given (no step)"}
            language = (b.Language.JAVA if "java" in self.category and "javascript" not in self.category
                        else b.Language.JAVASCRIPT if "javascript" in self.category else b.Language.PYTHON)
            out = b.ast_checker(self.entry["function"], self.calls, truth, language, self.category, CHECKER_MODEL)
            return {"valid": bool(out["valid"]), "accuracy": float(bool(out["valid"])),
                    "error": out.get("error"), "error_type": out.get("error_type")}
        if self.force_terminated:
            return {"valid": False, "accuracy": 0.0, "error": "force-terminated: " + self.force_terminated}
        if len(self.turns) != len(truth) or not self.done:
            return {"valid": False, "accuracy": 0.0, "turns": len(self.turns), "turns_expected": len(truth),
                    "error": "the conversation is not complete (%d of %d turns)" % (len(self.turns), len(truth))}
        self._forget("_eval", "_ground_truth")  # the checker replays both from the initial state
        try:
            out = b.multi_turn_checker(self.turns, truth, self.entry, self.category, self.model)
        except AssertionError as exc:
            out = {"valid": False, "error_message": str(exc), "error_type": "multi_turn:checker_assertion"}
        finally:
            self._forget("_eval", "_ground_truth")
        valid = bool(out.get("valid"))
        return {"valid": valid, "accuracy": float(valid), "error": out.get("error_message"),
                "error_type": out.get("error_type")}

    def _forget(self, *suffixes):
        """Drop BFCL's backend instances of this task instance (all of them with no suffixes)."""
        g = self.b.mt.__dict__
        prefix = re.sub(r"[-./:]", "_", self.model)
        heads = [prefix + s + "_" for s in suffixes] if suffixes else [prefix + "_"]
        for key in [k for k in g if k.endswith("_instance") and k.startswith(tuple(heads))]:
            del g[key]

    def close(self):
        """Drop what BFCL's backend keeps for this instance (a multi-turn task's state objects)."""
        if self.multi_turn:
            self._forget()
            self._forget("_eval", "_ground_truth")
