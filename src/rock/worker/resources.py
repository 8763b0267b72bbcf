"""What a node reports about itself, what a sandbox needs from one, and whether a node could ever
hold it (``refuse_oversized``: a single node's check and the cluster's admission alike)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from rock.errors import BadRequest
from rock.runtime.base import SandboxSpec

GIB = 1 << 30


class Resources(BaseModel):
    """Amounts of a node's resources (cpus, memory, GPUs, disk), added and subtracted as placement reserves
    and releases them."""

    cpus: float = 0.0
    memory_bytes: int = 0
    gpus: int = 0
    disk_bytes: int = 0

    # Sums of valid values need no validation: model_construct (a placement does several of these
    # per create; validating each was ~5% of the admin's CPU in a burst).
    def __add__(self, other: "Resources") -> "Resources":
        return Resources.model_construct(cpus=self.cpus + other.cpus, memory_bytes=self.memory_bytes + other.memory_bytes,
                                         gpus=self.gpus + other.gpus, disk_bytes=self.disk_bytes + other.disk_bytes)

    def __sub__(self, other: "Resources") -> "Resources":
        return Resources.model_construct(cpus=self.cpus - other.cpus, memory_bytes=self.memory_bytes - other.memory_bytes,
                                         gpus=self.gpus - other.gpus, disk_bytes=self.disk_bytes - other.disk_bytes)

    def describe(self) -> str:
        """The amounts as a person reads them (GiB, counts)."""
        return (f"{self.cpus:g} cpus, {self.memory_bytes / GIB:.1f} GiB memory, {self.gpus} GPUs, "
                f"{self.disk_bytes / GIB:.0f} GiB disk")


class Need(BaseModel):
    """A sandbox's claim on a node: resources, and labels the node must carry."""

    resources: Resources
    selector: dict[str, str] = Field(default_factory=dict)
    image: str | None = None

    @classmethod
    def of(cls, spec: SandboxSpec) -> "Need":
        """What a sandbox of ``spec`` claims: its resources, node labels and image."""
        return cls(resources=Resources(cpus=spec.cpus or 0.0, memory_bytes=spec.memory_bytes or 0, gpus=spec.gpus,
                                       disk_bytes=spec.disk_bytes or 0),
                   selector=dict(spec.node_selector), image=spec.image)


class NodeLoad(BaseModel):
    """What a node's worker answers every heartbeat (small: it travels twice a second)."""

    reserved: Resources
    sandboxes: int
    version: int  # changes whenever the node's set of sandboxes does (and never goes back)
    loadavg: float
    # The sandboxes ``reserved`` counts (running and being created): an admin drops from its own
    # count of placements in flight exactly those a report already holds, so none is counted twice.
    ids: list[str] = []


class NodeInfo(BaseModel):
    """One node of a cluster as its worker registers it: its names and address, its data path's relay and
    token, capacity, labels, backends, images and warm pools."""

    name: str  # stable across restarts of the node (its worker re-attaches what still runs)
    ray_node_id: str
    host_name: str
    ip: str
    relay: str  # host:port of the node's data path
    token: str  # what the relay asks of every connection (handed out over Ray only)
    capacity: Resources
    labels: dict[str, str] = Field(default_factory=dict)
    backend: str
    backends: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)  # what ``backend`` can do (rock.runtime.CAPABILITIES)
    images: list[str] = Field(default_factory=list)
    pools: list[str] = Field(default_factory=list)  # images with a warm pool
    load: NodeLoad
    sandbox_ids: list[str] = Field(default_factory=list)
    stopped_ids: list[str] = Field(default_factory=list)  # stopped, files kept (for restart)
    # Secrets (namespace, name) its sandboxes' relays use and it holds no value for (its worker
    # started again, with the values gone from memory): the admin gives them again.
    secrets_wanted: list[tuple[str, str]] = []


# What one sandbox may ask of a node, dimension by dimension: (name, its value, how a person reads it).
# cpus and memory may be promised ``overcommit`` times over; GPUs and disk never.
_DIMENSIONS = (
    ("cpus", lambda r: r.cpus, lambda v: f"{v:g} cpus"),
    ("memory", lambda r: r.memory_bytes, lambda v: f"{v / GIB:.2f} GiB memory"),
    ("gpus", lambda r: r.gpus, lambda v: f"{v} GPU(s)"),
    ("disk", lambda r: r.disk_bytes, lambda v: f"{v / GIB:.1f} GiB disk"),
)
_OVERCOMMITTED = ("cpus", "memory")


def refuse_oversized(need: Resources, capacities: dict[str, Resources], overcommit: float, where,
                     no_gpu: str = "no node has a GPU", dimensions: tuple[str, ...] = ("cpus", "memory", "gpus", "disk")) -> None:
    """Raise BadRequest when ``need`` is more, in one of ``dimensions``, than the largest of
    ``capacities`` (node name -> what it has) could hold even empty: the cluster's admission and a
    single node's (``Worker.check``) alike. ``where(name)`` names that node in the message."""
    for what, get, unit in _DIMENSIONS:
        if what not in dimensions:
            continue
        name, cap = max(capacities.items(), key=lambda item: get(item[1]))
        most = get(cap) * overcommit if what in _OVERCOMMITTED else get(cap)
        most = int(most) if what == "memory" else most  # as NodeView.limit and the node's own check
        if get(need) <= most + (1e-9 if what == "cpus" else 0):
            continue
        if what == "gpus" and most == 0:
            raise BadRequest(f"sandbox asks for {unit(get(need))}, but {no_gpu}")
        promised = (f"; with overcommit {overcommit:g} it takes up to {unit(most)}"
                    if what in _OVERCOMMITTED and overcommit != 1 else "")
        raise BadRequest(f"sandbox asks for {unit(get(need))}; {where(name)} has {unit(get(cap))} "
                         f"({cap.describe()}){promised}")
