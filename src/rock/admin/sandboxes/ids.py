"""Sandbox ids a caller chooses, kept apart per namespace (tokens' owners)."""

from __future__ import annotations

import hashlib


def namespaced_id(sandbox_id: str, namespace: str) -> str:
    """The id a sandbox id chosen by a caller of ``namespace`` gets: ``<id>.<10 hex>``, the hex
    from the namespace and the id. Two namespaces choosing one id get two sandboxes, so a chosen
    id neither tells whether another namespace has it nor takes it from them. Ids the server
    makes (uuid hex, ``env-...``) have no '.', so they never meet one of these; at most 128
    characters, like every sandbox id."""
    tag = hashlib.sha256(f"{namespace}\0{sandbox_id}".encode()).hexdigest()[:10]
    return f"{sandbox_id[:117]}.{tag}"
