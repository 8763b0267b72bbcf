"""A listing's query: which of a namespace's sandboxes to show and which page of them. The API's
``GET …/sandboxes`` and the UI's sandboxes table take the same one; each door bounds its own
``page_size``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

LABELS = ("image", "user_id", "experiment_id", "namespace")  # the record's columns a listing filters on


class SandboxQuery(BaseModel):
    """A listing's filters (exact matches on a record's state and labels; None: any) and its page.
    Unknown query parameters are ignored."""

    model_config = ConfigDict(extra="ignore")
    page: int = Field(default=1, ge=1)
    state: str | None = None
    image: str | None = None
    user_id: str | None = None
    experiment_id: str | None = None
    namespace: str | None = None

    def labels(self) -> dict[str, str]:
        """The label filters that are set (``Sandboxes.page`` takes the state apart)."""
        return {k: v for k in LABELS if (v := getattr(self, k)) is not None}

    def filters(self) -> dict[str, str]:
        """Every filter that is set, the state first."""
        return ({"state": self.state} if self.state is not None else {}) | self.labels()
