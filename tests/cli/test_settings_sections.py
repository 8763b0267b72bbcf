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
