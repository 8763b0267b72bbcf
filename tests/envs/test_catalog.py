"""The catalog: suggestions for unknown ids, reasons for unavailable ones, and the word games
running once an NLTK ``words`` corpus is present (through NLTK_DATA, nothing downloaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rock.envs.catalog import PROBE_SCRIPT, Catalog

from .hostdriver import HostDriver

IDS = ["game:Sokoban-v0-easy", "game:Sokoban-v0-hard", "game:Sudoku-v0-easy", "game:Game2048-v0-easy",
       "game:Game2048-v0-hard", "rg:sokoban", "rg:basic_arithmetic"]


@pytest.mark.parametrize("typo,first", [
    ("game:Sokobn-v0-easy", "game:Sokoban-v0-easy"),
    ("game:sokoban-v0-easy", "game:Sokoban-v0-easy"),
    ("Game2048", "game:Game2048-v0-easy"),
    ("rg:basic_arithmetics", "rg:basic_arithmetic"),
])
def test_suggestions_name_the_closest_ids(typo, first):
    assert Catalog.suggest(typo, IDS)[0] == first


async def test_unknown_id_error_lists_the_closest(tmp_path):
    err = await Catalog(tmp_path, sys.executable).unknown("game:Sokobn-v0-easy")
    assert err.kind == "EnvNotFound" and err.status_code == 404
    assert "closest known ids: game:Sokoban-v0-easy" in err.message


def probe(args: list[str], **env: str) -> dict:
    out = subprocess.run([sys.executable, "-I", str(PROBE_SCRIPT), *args], env={**os.environ, **env},
                         capture_output=True, timeout=600, check=True).stdout
    return {e["id"]: e for e in json.loads(out)["envs"]}


def test_quick_probe_lists_ids_and_static_reasons():
    envs = probe(["--ids"])
    assert {"game:Sokoban-v0-easy", "game:Wordle-v0-hard", "rg:boxnet"} <= set(envs)
    assert not envs["game:Hangman-v0-easy"]["available"]
    assert "NLTK 'words' corpus" in envs["game:Hangman-v0-easy"]["reason"]
    assert "Hugging Face hub" in envs["math:GSM8K"]["reason"]


@pytest.fixture
def words_corpus(tmp_path) -> Path:
    """A real NLTK ``words`` corpus layout (plain word lists), made from gem's own word file."""
    import gem

    clues = Path(gem.__file__).parent / "envs" / "game_env" / "crosswords" / "words_clues.jsonl"
    words = sorted({json.loads(line)["word"].lower() for line in clues.read_text().splitlines()} |
                   {"cat", "dog", "sun", "apple", "house", "plant", "kitchen", "teacher", "garden"})
    folder = tmp_path / "nltk_data" / "corpora" / "words"
    folder.mkdir(parents=True)
    for name in ("en", "en-basic"):
        (folder / name).write_text("\n".join(words) + "\n")
    return tmp_path / "nltk_data"


def test_word_games_work_when_the_corpus_is_present(words_corpus):
    envs = probe(["--ids"], NLTK_DATA=str(words_corpus))
    for env_id in ("game:Wordle-v0-easy", "game:Hangman-v0-easy", "game:WordSearch-v0-easy"):
        assert envs[env_id]["available"], envs[env_id]
    host = HostDriver(env={**os.environ, "NLTK_DATA": str(words_corpus)})
    try:
        for i, env_id in enumerate(("game:Wordle-v0-easy", "game:Hangman-v0-easy", "game:WordSearch-v0-easy")):
            host.ok("make", env=f"w{i}", env_id=env_id, timeout=60)
            assert host.ok("reset", env=f"w{i}", seed=0)["observation"]
            step = host.ok("step", env=f"w{i}", action="\\boxed{cat}")
            assert set(step) == {"observation", "reward", "terminated", "truncated", "info"}
    finally:
        host.close()


def rock_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rock.cli.main", *args], capture_output=True, text=True, timeout=900)


def test_cli_lists_every_id_without_an_admin(tmp_path):
    """No admin answers: the CLI probes here (a child process) and says so per id."""
    proc = rock_cli("envs", "--url", "http://127.0.0.1:9", "list", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    envs = {e["id"]: e for e in json.loads(proc.stdout)}
    assert envs["game:Sokoban-v0-easy"]["available"] and envs["game:Sokoban-v0-easy"]["family"] == "game"
    assert "NLTK 'words' corpus" in envs["game:Wordle-v0-easy"]["reason"]
    table = rock_cli("envs", "--url", "http://127.0.0.1:9", "list", "--quick", "--family", "game")
    assert "game:Sokoban-v0-easy\tyes" in table.stdout and "env ids can run here" in table.stdout


def test_cli_asks_the_admin(admin):
    proc = rock_cli("envs", "--url", admin.url, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    envs = {e["id"]: e for e in json.loads(proc.stdout)}
    assert envs["rg:boxnet"]["reason"].startswith("fails inside gem (step)")
