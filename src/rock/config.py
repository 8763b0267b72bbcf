"""One configuration model for the whole service: defaults here, overridable by
environment variables (``ROCK_*``) and by a TOML/JSON file named in ``ROCK_CONFIG``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rock.envs.settings import EnvSettings
from rock.training.settings import TrainingSettings

BackendName = Literal["auto", "docker", "bwrap", "gvisor", "local"]


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "rock"


class TenantQuota(BaseModel):
    """What one namespace (the tokens that map to it) may hold at once, and how fast it may start
    sandboxes; unset: no limit of that kind (the node's capacity still holds)."""

    model_config = ConfigDict(extra="forbid")

    sandboxes: int | None = Field(default=None, ge=0, description="running (and starting) sandboxes")
    memory: str | None = Field(default=None, description="memory of those sandboxes together, e.g. '16g'")
    cpus: float | None = Field(default=None, ge=0, description="cpus of those sandboxes together")
    env_hosts: int | None = Field(default=None, ge=0, description="env hosts: GEM envs, gym sessions, training instances")
    snapshots: int | None = Field(default=None, ge=0, description="snapshots kept")
    snapshot_bytes: str | None = Field(default=None, description="what those snapshots take on disk together, "
                                       "e.g. '20g' (a snapshot that would pass it is deleted and refused)")
    creates_per_minute: float | None = Field(default=None, gt=0, description="sandbox starts per minute (a token bucket)")
    create_burst: int | None = Field(default=None, ge=1, description="starts allowed at once before the rate holds")


class ChatSettings(BaseSettings):
    """The Chat protocol's model endpoints (``[chat]``, ``ROCK_CHAT_*``): the upstreams proxy mode may
    forward to, and how much each endpoint and the hub keep in memory."""

    model_config = SettingsConfigDict(env_prefix="ROCK_CHAT_", extra="ignore")

    # Upstream base URLs a sandbox's model endpoint may forward to (proxy mode). Empty: with tokens
    # off (the operator alone, on loopback) any URL the API's caller names; with tokens on, none;
    # and never one named from inside a sandbox (`rock model-service start --type proxy` there
    # would otherwise make the admin connect wherever the sandbox says).
    proxy_urls: list[str] = Field(default_factory=list)
    keep_responses: int = Field(default=256, ge=1, description="conversations kept per endpoint for "
                                "previous_response_id")
    keep_ended: int = Field(default=4096, ge=0, description="ended endpoints kept in memory (older ones are read "
                            "back from the record log)")
    keep_notices: int = Field(default=10000, ge=1, description="SESSION_END notices kept per owner for an exchange")


class E2BSettings(BaseSettings):
    """The E2B front door (``[e2b]``, ``ROCK_E2B_*``): its templates and its sandboxes' time limits."""

    model_config = SettingsConfigDict(env_prefix="ROCK_E2B_", extra="ignore")

    # E2B's templateID -> image; "base" and "code-interpreter-v1" are default_image unless set here
    templates: dict[str, str] = Field(default_factory=dict, description="E2B template -> image")
    keep_after_timeout: int = Field(default=30, ge=0, description="seconds a timed-out sandbox's files stay "
                                      "before they are deleted")
    max_timeout: int = Field(default=7 * 24 * 3600, ge=1, description="the longest timeout a sandbox may ask (s)")
    ready_wait: float = Field(default=60.0, gt=0, description="seconds a template's readyCmd may take to pass "
                              "at create")


class Settings(BaseSettings):
    """Every setting of an admin, a proxy or a node worker; ``load()`` reads them from every source.
    The nested sections (``envs``, ``training``, ``chat``, ``e2b``) are a config file's tables, and
    each reads its own variables too (``ROCK_ENV_*``, ``ROCK_TRAINING_*``, ``ROCK_CHAT_*``, ``ROCK_E2B_*``)."""

    model_config = SettingsConfigDict(env_prefix="ROCK_", extra="ignore")

    # admin
    host: str = "127.0.0.1"
    port: int = 8080
    role: Literal["admin", "proxy"] = "admin"
    tokens: dict[str, str] = Field(default_factory=dict, description="token -> namespace")
    # worker / runtime
    backend: BackendName = "auto"
    state_dir: Path = Field(default_factory=_default_state_dir)
    # Where bwrap unpacks the images its sandboxes start from (each one's root filesystem, read
    # only: the overlay's lower layer). Unset: <state_dir>/images. Several admins or node workers
    # on one machine may name the same directory and unpack each image once between them: a tree
    # is keyed by the image's id and made under a temporary name, then renamed into place.
    images_dir: Path | None = None
    default_image: str = "python:3.11"
    default_memory: str = "1g"
    default_cpus: float = 1.0
    pids_limit: int = 1024
    pool_size: int = 0
    # bwrap: fork each sandbox's agent from one pre-started agent instead of starting Python
    # in every sandbox (see rock/agent/zygote.py); off starts the agent as bwrap's command.
    bwrap_zygote: bool = True
    host_python: str = Field(default_factory=lambda: os.path.realpath(sys.executable))
    max_output_bytes: int = 8 << 20
    # How long the admin waits for a sandbox's agent to answer, past the call's own timeout (a
    # command without a timeout waits as long as it runs): a frozen sandbox fails calls, not hangs them.
    agent_reply_timeout: float = Field(default=300.0, gt=0)
    # How long a stopped sandbox keeps its files when its start request set neither
    # auto_archive_seconds nor auto_delete_seconds (None: until deleted). ROCK's cluster cap.
    auto_delete_seconds: int | None = 24 * 3600
    default_auto_clear_seconds: int = 300  # idle TTL of a sandbox whose start request sets none
    default_startup_timeout: float = 180.0
    max_cpus: float | None = None  # the most one sandbox may ask for (ROCK's max_allowed_spec)
    max_memory: str | None = None
    warmup_images: list[str] = Field(default_factory=list)  # pulled when the admin starts
    proxy_timeout: float = 300.0  # read timeout of a request forwarded to a port inside a sandbox
    # Trust (docs/security.md): what only an operator may widen. A sandbox image that is a host
    # path ('/' = the host's own root on bwrap, a root filesystem directory or tar on the host)
    # shows callers the host's files: off unless set.
    allow_host_paths: bool = False
    # A bwrap sandbox with network=true shares the host's network namespace: it reaches every
    # service on the host's loopback (the admin, Ray, a database). Off unless set; the docker
    # backend gives such a sandbox a network of its own.
    allow_host_network: bool = False
    # Where docker sandboxes with network=true may not go, besides the host itself and other
    # sandboxes (always refused; rock.runtime.docker.network): the cloud metadata range by default.
    sandbox_network_deny: list[str] = Field(default_factory=lambda: ["169.254.0.0/16"])
    # Names the egress gate's resolver answers itself (name -> IPv4 address) before the host's
    # resolver: an operator's package mirror on a private name, a test's local "internet".
    egress_hosts: dict[str, str] = Field(default_factory=dict)
    # A CA file the egress relay trusts besides the system's when it re-originates TLS to a host
    # a secret is bound to (an operator's internal CA; the tests' local servers).
    egress_ca_file: str | None = None
    # Env image requirements that name a direct URL ('name @ https://...'), a local path or a
    # file: URL (read from the admin's host and copied into the build sandbox): off unless set.
    allow_direct_requirements: bool = False
    # The build sandbox of env images (pip runs there, never on the host): its limits and time.
    build_memory: str = "4g"
    build_cpus: float = Field(default=2.0, gt=0)
    build_timeout: float = Field(default=1800.0, gt=0)
    build_concurrency: int = Field(default=2, ge=1)  # env image builds at once per admin (the rest wait)
    # The network of POST /images/build's RUN steps: "none", or a Docker network the operator made
    # for builds (one that reaches only their package mirror, say). Never "host" (the host's loopback).
    build_network: str = Field(default="none", pattern=r"^(none|[a-zA-Z0-9][a-zA-Z0-9_.-]*)$")
    # Idle HTTP connections the port proxy keeps open per sandbox port, and for how long: a request
    # on an open connection skips the relay's connect (a round trip to the agent, a thread there).
    proxy_keepalive_connections: int = Field(default=8, ge=0)
    proxy_keepalive_seconds: float = Field(default=30.0, gt=0)
    # which ROCK YAML file was read, and its settings that mean nothing here (rock.config_rock)
    rock_config_file: str | None = None
    rock_config_applied: list[str] = Field(default_factory=list)
    rock_config_ignored: list[str] = Field(default_factory=list)
    # No file in a sandbox grows past this (RLIMIT_FSIZE, set by the agent; 0: no limit).
    max_file_bytes: int = Field(default=64 << 30, ge=0)
    # Agents offer their own memory to the kernel's same-page merging (KSM; only when the host
    # runs it: /sys/kernel/mm/ksm/run). Idle bwrap sandboxes then hold ~0.7 MB private instead of
    # ~2.6 MB. Off: no page of an agent is ever shared with another sandbox's agent.
    merge_agent_memory: bool = True
    # ... once the agent has run this long: ksmd scans every page offered to it for as long as the
    # process lives, and a sandbox that lives a few seconds (a burst of starts, start-and-delete)
    # would pay that scanning and gain nothing (bench burst: ~12% of sustained starts/s).
    merge_agent_memory_after_s: float = Field(default=10.0, ge=0)
    # state shared by several admin/proxy processes: a postgresql:// URL; unset is SQLite in state_dir
    store_url: str | None = None
    # cluster (see docs/deploy.md): a Ray address ("auto" = the local Ray) puts sandboxes on the
    # nodes' workers instead of an embedded one
    cluster: str | None = None
    # BENCHMARK ONLY (bench/scale_sim.py): stand-in nodes instead of a Ray cluster, e.g.
    # {"nodes": 50, "create_delay_ms": 200}; see rock.cluster.simulated. Nothing really starts.
    simulated_cluster: dict | None = None
    placement: Literal["spread", "pack"] = "spread"
    overcommit: float = Field(default=1.0, ge=1.0, description="cpus and memory promised per node, times what it has")
    # Admission (rock.admin.sandboxes.admission): every start reserves its cpus and memory (plus the
    # agent's own) against what this node may promise; unset capacities: what the machine has.
    admission: bool = True
    # Unset node_cpus/node_memory: the machine's, times these (or ``overcommit``, where larger). A cpu
    # limit caps time, it reserves none: idle sandboxes share cores, so a core is promised many
    # times; a memory limit is a ceiling most sandboxes never reach (an idle one uses ~2 MB).
    cpu_overcommit: float = Field(default=32.0, ge=1.0, description="cpus promised per core of this node")
    memory_overcommit: float = Field(default=4.0, ge=1.0, description="memory limits promised per byte of this node")
    node_cpus: float | None = Field(default=None, gt=0, description="cpus this node may promise (overcommit included)")
    node_memory: str | None = Field(default=None, description="memory this node may promise (overcommit included)")
    sandbox_overhead_memory: str = Field(default="16m", description="what a sandbox's agent costs beyond its limit")
    # namespace -> its quotas; "*": every namespace without its own (auth off: the one principal)
    quotas: dict[str, TenantQuota] = Field(default_factory=dict, description="namespace -> quotas")
    node_labels: dict[str, str] = Field(default_factory=dict, description="this node's labels (a worker's)")
    relay_host: str = Field(default="", description="address a node's worker serves sandboxes' data on; '' = the node's IP")
    relay_port: int = 0
    gpus: str | None = Field(default=None, description="GPU indices this node may hand out, e.g. '0,1'; unset: detected")
    # Sections (a config file's ``[envs]``, ``[training]``, ``[chat]``, ``[e2b]`` tables): each also reads its
    # own variables, which win over the file as they do for every other setting.
    envs: EnvSettings = Field(default_factory=EnvSettings, description="env hosting (ROCK_ENV_*)")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="training tasks (ROCK_TRAINING_*)")
    chat: ChatSettings = Field(default_factory=ChatSettings, description="Chat's model endpoints (ROCK_CHAT_*)")
    e2b: E2BSettings = Field(default_factory=E2BSettings, description="the E2B front door (ROCK_E2B_*)")

    @model_validator(mode="before")
    @classmethod
    def _flat_names(cls, data):
        """The sections' settings under their flat names (``chat_proxy_urls``, ``e2b_templates``), as
        configurations written before the sections had them still say (the section's own value wins)."""
        if not isinstance(data, dict) or not any(flat in data for flat in _FLAT):
            return data
        data = dict(data)
        for flat, (name, key) in _FLAT.items():
            if flat in data:
                value = data.pop(flat)
                section = data.get(name)
                if section is None or isinstance(section, dict):
                    data[name] = {key: value, **(section or {})}
        return data

    @field_validator("envs", "training", "chat", "e2b", mode="before")
    @classmethod
    def _section(cls, value, info: ValidationInfo):
        if not isinstance(value, dict):
            return value
        section = _SECTIONS[info.field_name]
        return section(**{k: v for k, v in value.items() if _env_name(section, k) not in _environment()})

    @field_validator("sandbox_network_deny")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # a ValueError names the bad one
        return value

    @field_validator("build_network")
    @classmethod
    def _not_the_hosts_network(cls, value: str) -> str:
        if value == "host":
            raise ValueError("build_network 'host' would let RUN steps reach the host's loopback services; "
                             "name 'none' or a Docker network made for builds")
        return value

    @property
    def images_path(self) -> Path:
        return self.images_dir or Path(self.state_dir) / "images"

    @classmethod
    def load(cls, env: str | None = None, sets: list[str] | None = None, **overrides) -> "Settings":
        """Defaults < our file (``ROCK_CONFIG``, TOML or JSON) or ROCK's YAML (``--env``) < ROCK's
        ``ROCK_*`` variables < ``overrides`` (command-line options) and ``sets``, the command line's
        ``SECTION.KEY=VALUE`` settings of a section (``parse_sets``), which win over its variables too."""
        from rock import config_rock

        path = os.environ.get("ROCK_CONFIG")
        data: dict = config_rock.load(env)
        if path and not path.endswith((".yml", ".yaml")):
            text = Path(path).read_text()
            if path.endswith(".toml"):
                import tomllib

                data = {**tomllib.loads(text), **data}
            else:
                data = {**json.loads(text), **data}
        data.update({k: v for k, v in overrides.items() if v is not None})
        data = cls._flat_names(data)
        for name, values in parse_sets(sets or []).items():
            section = _SECTIONS[name]
            given = data.get(name)
            given = given.model_dump(exclude_unset=True) if isinstance(given, BaseSettings) else dict(given or {})
            # the file's values that no variable overrides, then the command line's (init arguments win)
            kept = {k: v for k, v in given.items() if _env_name(section, k) not in _environment()}
            data[name] = section(**{**kept, **values})
        return cls(**data)


_SECTIONS: dict[str, type[BaseSettings]] = {"envs": EnvSettings, "training": TrainingSettings, "chat": ChatSettings,
                                            "e2b": E2BSettings}
_FLAT = {"chat_proxy_urls": ("chat", "proxy_urls"), "e2b_templates": ("e2b", "templates")}


def _environment() -> set[str]:
    return {name.upper() for name in os.environ}


def _env_name(section: type[BaseSettings], key: str) -> str:
    return str(section.model_config.get("env_prefix", "")).upper() + key.upper()


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``["envs.envs_per_sandbox=8", 'chat.proxy_urls=["http://m:8000"]']`` as ``{section: {key: value}}``:
    a value is read as JSON when it is JSON (numbers, lists, objects, true/false), else as the string it is.
    A ``ValueError`` names an item that is not ``SECTION.KEY=VALUE`` or a section or key that does not exist."""
    out: dict[str, dict] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        key, eq, raw = rest.partition("=")
        if not dot or not eq or not key:
            raise ValueError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. envs.envs_per_sandbox=8")
        section = _SECTIONS.get(name)
        if section is None:
            raise ValueError(f"--set {item!r}: no section {name!r}; the sections are {', '.join(_SECTIONS)}")
        if key not in section.model_fields:
            raise ValueError(f"--set {item!r}: {name} has no setting {key!r}; it has "
                             f"{', '.join(sorted(section.model_fields))}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(name, {})[key] = value
    return out
