"""The settings' sections (envs, training) set from every source the admin reads: our config file
(``ROCK_CONFIG``), ROCK's YAML (``--env``), their own variables (which win over a file), and the
command line's overrides; and the admin's services run with them."""

from __future__ import annotations

import json

from rock.admin.root import Root
from rock.config import Settings

SECTIONS = {"envs": {"envs_per_sandbox": 8, "call_timeout": 30.0}, "training": {"idle_ttl": 42.0, "max_instances": 9}}


def test_the_config_file_sets_envs_and_training(tmp_path, monkeypatch):
    for name in ("ROCK_ENV_ENVS_PER_SANDBOX", "ROCK_ENV_CALL_TIMEOUT", "ROCK_TRAINING_IDLE_TTL",
                 "ROCK_TRAINING_MAX_INSTANCES"):
        monkeypatch.delenv(name, raising=False)
    default = Settings(state_dir=tmp_path / "d")
    assert (default.envs.envs_per_sandbox, default.training.idle_ttl) == (64, 300.0)  # a control: the defaults
    toml = tmp_path / "rock.toml"
    toml.write_text('state_dir = "%s"\nbackend = "bwrap"\n[envs]\nenvs_per_sandbox = 8\ncall_timeout = 30.0\n'
                    "[training]\nidle_ttl = 42.0\nmax_instances = 9\n" % (tmp_path / "s"))
    monkeypatch.setenv("ROCK_CONFIG", str(toml))
    s = Settings.load()
    assert (s.envs.envs_per_sandbox, s.envs.call_timeout, s.envs.sandbox_memory) == (8, 30.0, "512m")
    assert (s.training.idle_ttl, s.training.max_instances) == (42.0, 9)
    root = Root(s)  # the services the admin runs take them
    assert root.envs.settings.envs_per_sandbox == 8 and root.training.settings.idle_ttl == 42.0

    # a section's own variable wins over the file, the file's other values stay
    monkeypatch.setenv("ROCK_TRAINING_IDLE_TTL", "7")
    s = Settings.load()
    assert (s.training.idle_ttl, s.training.max_instances, s.envs.envs_per_sandbox) == (7.0, 9, 8)

    # JSON config and the command line's overrides
    monkeypatch.delenv("ROCK_TRAINING_IDLE_TTL")
    conf = tmp_path / "rock.json"
    conf.write_text(json.dumps({"state_dir": str(tmp_path / "s"), **SECTIONS}))
    monkeypatch.setenv("ROCK_CONFIG", str(conf))
    assert Settings.load().envs.call_timeout == 30.0
    assert Settings.load(envs={"envs_per_sandbox": 3}).envs.envs_per_sandbox == 3


def test_rocks_yaml_sets_envs_and_training(tmp_path, monkeypatch):
    monkeypatch.delenv("ROCK_CONFIG", raising=False)
    monkeypatch.delenv("ROCK_ENV_ENVS_PER_SANDBOX", raising=False)
    monkeypatch.delenv("ROCK_TRAINING_IDLE_TTL", raising=False)
    (tmp_path / "rock-conf").mkdir()
    (tmp_path / "rock-conf" / "rock-sections.yml").write_text(
        "envs: {envs_per_sandbox: 8}\ntraining: {idle_ttl: 42}\nwarmup: {images: []}\n")
    monkeypatch.chdir(tmp_path)
    s = Settings.load(env="sections")
    assert (s.envs.envs_per_sandbox, s.training.idle_ttl) == (8, 42.0)
    assert not any(name.startswith(("envs", "training")) for name in s.rock_config_ignored)


SECTION_VARS = ("ROCK_ENV_ENVS_PER_SANDBOX", "ROCK_CHAT_PROXY_URLS", "ROCK_CHAT_KEEP_ENDED", "ROCK_E2B_TEMPLATES",
                "ROCK_E2B_KEEP_AFTER_TIMEOUT", "ROCK_E2B_MAX_TIMEOUT", "ROCK_CONFIG")


def test_the_config_file_yaml_and_variables_set_chat_and_e2b(tmp_path, monkeypatch):
    from rock.admin.templates import served

    for name in SECTION_VARS:
        monkeypatch.delenv(name, raising=False)
    default = Settings(state_dir=tmp_path / "d")
    assert (default.chat.proxy_urls, default.chat.keep_ended, default.e2b.keep_after_timeout) == ([], 4096, 30)
    toml = tmp_path / "rock.toml"
    toml.write_text('state_dir = "%s"\nbackend = "bwrap"\n[chat]\nproxy_urls = ["http://model:8000/"]\nkeep_ended = 5\n'
                    '[e2b]\ntemplates = {py312 = "python:3.12"}\nkeep_after_timeout = 7\n' % (tmp_path / "s"))
    monkeypatch.setenv("ROCK_CONFIG", str(toml))
    s = Settings.load()
    assert (s.chat.proxy_urls, s.chat.keep_ended, s.chat.keep_notices) == (["http://model:8000/"], 5, 10000)
    assert (s.e2b.templates, s.e2b.keep_after_timeout) == ({"py312": "python:3.12"}, 7)
    root = Root(s)  # the services the admin runs take them
    assert root.chat.proxy_urls == ["http://model:8000"] and root.chat.settings.keep_ended == 5
    assert served(root.settings)["py312"] == "python:3.12"

    # the section's own variable wins over the file; the file's other values stay
    monkeypatch.setenv("ROCK_E2B_KEEP_AFTER_TIMEOUT", "3")
    monkeypatch.setenv("ROCK_CHAT_PROXY_URLS", '["http://other:9000"]')
    s = Settings.load()
    assert (s.e2b.keep_after_timeout, s.e2b.templates, s.chat.proxy_urls, s.chat.keep_ended) == (
        3, {"py312": "python:3.12"}, ["http://other:9000"], 5)

    # the flat names configurations wrote before the sections still set them
    monkeypatch.delenv("ROCK_CHAT_PROXY_URLS")
    conf = tmp_path / "rock.json"
    conf.write_text(json.dumps({"state_dir": str(tmp_path / "s"), "chat_proxy_urls": ["http://flat:1"],
                                "e2b_templates": {"t": "alpine"}}))
    monkeypatch.setenv("ROCK_CONFIG", str(conf))
    s = Settings.load()
    assert (s.chat.proxy_urls, s.e2b.templates) == (["http://flat:1"], {"t": "alpine"})

    # ROCK's YAML names the sections as they are
    monkeypatch.delenv("ROCK_CONFIG")
    monkeypatch.delenv("ROCK_E2B_KEEP_AFTER_TIMEOUT")
    (tmp_path / "rock-conf").mkdir()
    (tmp_path / "rock-conf" / "rock-cs.yml").write_text("chat: {keep_notices: 9}\ne2b: {max_timeout: 60}\n")
    monkeypatch.chdir(tmp_path)
    s = Settings.load(env="cs")
    assert (s.chat.keep_notices, s.e2b.max_timeout) == (9, 60)
    assert not any(name.startswith(("chat", "e2b")) for name in s.rock_config_ignored)


def test_rock_admin_start_sets_sections_down_to_the_roots_objects(tmp_path, monkeypatch):
    import pytest

    from rock.cli.admin import settings_from
    from rock.cli.main import build_parser
    from rock.errors import BadRequest

    for name in SECTION_VARS:
        monkeypatch.delenv(name, raising=False)
    toml = tmp_path / "rock.toml"
    toml.write_text("[envs]\nenvs_per_sandbox = 4\ncall_timeout = 30.0\n[e2b]\nkeep_after_timeout = 7\n")
    monkeypatch.setenv("ROCK_CONFIG", str(toml))
    monkeypatch.setenv("ROCK_ENV_ENVS_PER_SANDBOX", "16")  # a variable the command line still wins over
    parser = build_parser()

    def start(*sets: str):
        argv = ["admin", "start", "--backend", "bwrap", "--state-dir", str(tmp_path / "s")]
        return settings_from(parser.parse_args(argv + [a for item in sets for a in ("--set", item)]))

    assert start().envs.envs_per_sandbox == 16  # a control: without --set the variable wins over the file
    s = start("envs.envs_per_sandbox=8", 'chat.proxy_urls=["http://model:8000"]', "training.max_instances=9",
              "e2b.max_timeout=120")
    root = Root(s)
    assert root.envs.settings.envs_per_sandbox == 8 and root.envs.settings.call_timeout == 30.0  # the file's stays
    assert root.chat.proxy_urls == ["http://model:8000"] and root.training.settings.max_instances == 9
    assert (root.settings.e2b.max_timeout, root.settings.e2b.keep_after_timeout) == (120, 7)

    for bad, words in (("envs.no_such=1", "envs has no setting 'no_such'"), ("nosection.x=1", "no section"),
                       ("envs_per_sandbox=8", "SECTION.KEY=VALUE"), ("envs.envs_per_sandbox=many", "envs_per_sandbox")):
        with pytest.raises(BadRequest) as err:
            start(bad)
        assert words in err.value.message, err.value.message
