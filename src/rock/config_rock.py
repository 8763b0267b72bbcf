"""ROCK's own configuration, read into ours: its YAML files (``rock-conf/rock-<env>.yml``, or the
file ``ROCK_CONFIG`` names) and the ``ROCK_*`` variables that mean something here.

What applies takes effect; every other setting of the file is reported once, by name, as not
meaning anything here (Ray, Redis, OSS, Nacos, Kubernetes: this project has its own ways).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rock.errors import BadRequest

log = logging.getLogger("rock.config")

# ROCK YAML path -> our Settings field
APPLIED: dict[tuple[str, ...], str] = {
    ("lifecycle", "auto_transition", "auto_delete_seconds"): "auto_delete_seconds",
    ("lifecycle", "auto_transition", "auto_clear_seconds"): "default_auto_clear_seconds",
    ("lifecycle", "default_startup_timeout_seconds"): "default_startup_timeout",
    ("runtime", "standard_spec", "memory"): "default_memory",
    ("runtime", "standard_spec", "cpus"): "default_cpus",
    ("runtime", "max_allowed_spec", "memory"): "max_memory",
    ("runtime", "max_allowed_spec", "cpus"): "max_cpus",
    ("warmup", "images"): "warmup_images",
    ("proxy_service", "timeout"): "proxy_timeout",
}
# Our own sections, read as they are: ``envs: {envs_per_sandbox: 8}``, ``training: {idle_ttl: 60}``, ``chat``, ``e2b``
SECTIONS = ("envs", "training", "chat", "e2b")
SHIPPED = Path(__file__).with_name("conf")  # the configs that come with the package
_ROLES = {"admin": "admin", "write": "admin", "proxy": "proxy", "read": "proxy"}


def yaml_path(env: str | None) -> Path | None:
    """The YAML file to read: ``ROCK_CONFIG`` if it names one, else ``rock-conf/rock-<env>.yml``
    (``ROCK_CONFIG_DIR_NAME`` renames the folder) when an env is chosen (``--env``, ``ROCK_ADMIN_ENV``)."""
    named = os.environ.get("ROCK_CONFIG", "")
    if named.endswith((".yml", ".yaml")):
        return Path(named)
    env = env or os.environ.get("ROCK_ADMIN_ENV")
    if not env:
        return None
    path = Path(os.environ.get("ROCK_CONFIG_DIR_NAME", "rock-conf")) / f"rock-{env}.yml"
    if path.is_file():
        return path
    shipped = SHIPPED / f"rock-{env}.yml"  # local, local-proxy: from any directory, also from a wheel
    if "/" not in env and shipped.is_file():
        return shipped
    raise BadRequest(f"no ROCK config for env {env!r}: {path.resolve()} does not exist "
                     f"(shipped: {', '.join(shipped_envs())})")


def shipped_envs() -> list[str]:
    return sorted(p.name[len("rock-"):-len(".yml")] for p in SHIPPED.glob("rock-*.yml"))


def _read(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BadRequest(f"cannot read ROCK config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"ROCK config {path} must be a mapping of sections")
    base = data.pop("_base", None)  # ROCK's inheritance: this file over its base
    if base:
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        data = _merge(_read(base_path), data)
    return data


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _leaves(data: dict, prefix: tuple[str, ...] = ()):
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value and path not in APPLIED:
            yield from _leaves(value, path)
        else:
            yield path, value


def from_yaml(path: Path) -> tuple[dict, list[str]]:
    """(our settings from the file, the dotted names of its settings that do not apply here)"""
    settings, ignored = {}, []
    for leaf, value in _leaves(_read(path)):
        field = APPLIED.get(leaf)
        if field is None and len(leaf) == 2 and leaf[0] in SECTIONS:
            settings.setdefault(leaf[0], {})[leaf[1]] = value
        elif field is None:
            ignored.append(".".join(leaf))
        elif value is not None:
            settings[field] = value
    return settings, ignored


def from_environment() -> dict:
    """ROCK's variables with a meaning here, as our settings."""
    out: dict = {}
    env = os.environ
    if env.get("ROCK_ADMIN_ROLE"):
        role = _ROLES.get(env["ROCK_ADMIN_ROLE"].strip().lower())
        if role is None:
            raise BadRequest(f"ROCK_ADMIN_ROLE={env['ROCK_ADMIN_ROLE']!r}: use write (admin) or read (proxy)")
        out["role"] = role
    for name, field, scale in (("ROCK_DEFAULT_AUTO_CLEAR_TIME_MINUTES", "default_auto_clear_seconds", 60),
                               ("ROCK_SANDBOX_STARTUP_TIMEOUT_SECONDS", "default_startup_timeout", 1)):
        if env.get(name):
            try:
                out[field] = int(float(env[name]) * scale)
            except ValueError:
                raise BadRequest(f"{name}={env[name]!r} is not a number") from None
    return out


def load(env: str | None) -> dict:
    """Everything ROCK's configuration says, as our settings (``report`` says what was ignored)."""
    data: dict = {}
    path = yaml_path(env)
    if path is not None:
        data, ignored = from_yaml(path)
        data["rock_config_applied"] = sorted(data)
        data["rock_config_ignored"] = ignored
        data["rock_config_file"] = str(path)
    data.update(from_environment())
    return data


def report(settings) -> None:
    """Log, once (the admin calls it at start), what the ROCK config file set and what it ignored."""
    if not settings.rock_config_file:
        return
    log.info("ROCK config %s: applied %s", settings.rock_config_file, ", ".join(settings.rock_config_applied) or "nothing")
    ignored = settings.rock_config_ignored
    if ignored:
        sections = sorted({name.split(".")[0] for name in ignored})
        log.warning("ROCK config %s: ignored (no meaning here): %s [%s]", settings.rock_config_file, ", ".join(sections),
                    ", ".join(ignored[:20]) + (" ..." if len(ignored) > 20 else ""))
