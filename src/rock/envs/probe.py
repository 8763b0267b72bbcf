"""Which gem env ids exist and which can run here, with the reason when one cannot.

A script, not a module of the service: it imports gem and constructs envs, so it runs in its
own process under the interpreter that hosts envs (``python -I probe.py [--ids]``, or its
source fed to ``python -I -`` inside an env sandbox). It prints one JSON object:
``{"gem_version", "python", "envs": [{"id", "entry_point", "available", "reason"}]}``.

``--ids`` lists the registry with the reasons known without constructing anything (about a
second: importing gem); the full probe also constructs each env once, with a time limit, to
catch the ones that fail inside gem itself.
Standard library + gem only.
"""

import json
import os
import signal
import sys
import traceback

PROBE_SECONDS = 3.0
WORD_GAMES = ("gem.envs.game_env.wordle", "gem.envs.game_env.hangman", "gem.envs.game_env.word_search")
DATASET_ENVS = ("gem.envs.math_env", "gem.envs.math_visual_env", "gem.envs.code_env", "gem.envs.qa_env")


class Slow(BaseException):
    """Raised by the alarm when constructing an env takes longer than PROBE_SECONDS: slow, not broken. A
    BaseException so the env's own ``except Exception`` cannot swallow it."""

    pass


def _alarm(signum, frame):
    raise Slow()


def words_corpus():
    """Where the NLTK ``words`` corpus is, or None; looks only at local data (no download)."""
    try:
        import nltk.data

        return nltk.data.find("corpora/words")
    except LookupError:
        return None


def static_reason(spec, have_words):
    """The reason an id cannot run that is known without constructing it, or None."""
    module = str(spec.entry_point).split(":")[0]
    if module in WORD_GAMES and not have_words:
        return ("needs the NLTK 'words' corpus: not found on NLTK's data path, and it cannot be downloaded "
                "here; put it under $NLTK_DATA/corpora/words")
    if module in DATASET_ENVS:
        dataset = spec.kwargs.get("dataset_name", "?")
        return ("downloads the dataset %r from the Hugging Face hub when constructed (needs the 'datasets' "
                "package and network); nothing is downloaded at run time here" % dataset)
    if module == "gem.envs.game_env.crosswords":
        try:
            import pandas  # noqa: F401
        except ImportError:
            return "needs pandas (pip install pandas, or rock-sandbox[envs])"
    if module.startswith("gem.envs.terminal") or module == "gem.envs.mcpmark":
        return "needs external services (a container runtime or MCP servers) inside the env"
    return None


def construct(gem, env_id):
    """None if the env constructs, resets and takes one step with a plain answer (or is still at
    it after PROBE_SECONDS), else why not. The step matters: some reasoning-gym scorers raise
    on any answer they cannot parse, which a trainer would meet on its first step."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PROBE_SECONDS)
    what = "construction"
    try:
        env = gem.make(env_id)
        what = "reset"
        env.reset(seed=0)
        what = "step"
        try:
            action = env.sample_random_action()
        except NotImplementedError:
            action = "\\boxed{1}"
        env.step(action)
        close = getattr(env, "close", None)
        if callable(close):
            close()
        return None
    except Slow:
        return None  # slow to build (Sokoban generates rooms), but nothing failed
    except BaseException as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = "%s:%d" % (frame.filename.split("site-packages/")[-1], frame.lineno)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return "fails inside gem (%s): %s: %s (at %s)" % (what, type(exc).__name__, message, where)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv):
    """Print the probe's answer as one JSON document: each GEM env id with whether it can run here and why not
    (``--ids``: without constructing the envs), or why gem cannot be imported. Env code's own output goes to
    stderr."""
    deep = "--ids" not in argv
    # Env code may print: the JSON goes to a private copy of stdout, fd 1 becomes stderr.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    out = {"python": sys.executable, "gem_version": None, "envs": []}
    try:
        import logging

        import gem

        logging.disable(logging.INFO)  # gem configures INFO logging; keep stderr for errors
        from gem.envs.registration import ENV_REGISTRY
    except BaseException as exc:
        out["error"] = "gem cannot be imported by %s: %s: %s" % (sys.executable, type(exc).__name__, exc)
        os.write(result_fd, json.dumps(out).encode())
        return
    try:
        from importlib.metadata import version

        out["gem_version"] = version("gem-llm")
    except Exception:
        pass
    have_words = words_corpus() is not None
    if have_words:
        # The word games call nltk.download() in their constructors: answer from local data.
        import nltk

        nltk.download = lambda *a, **k: True
    for env_id, spec in ENV_REGISTRY.items():
        reason = static_reason(spec, have_words)
        if reason is None and deep:
            reason = construct(gem, env_id)
        out["envs"].append({"id": env_id, "entry_point": str(spec.entry_point), "available": reason is None,
                            "reason": reason})
    data = json.dumps(out).encode()
    while data:
        data = data[os.write(result_fd, data):]


if __name__ == "__main__":
    main(sys.argv[1:])
