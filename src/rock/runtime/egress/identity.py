"""Workload identity tokens for E2B's ``iam``: JWT-SVIDs the admin issues, minted per request.

A sandbox created with ``iam={"tokens": {name: {"audience", "tokenType": "JWT-SVID"}}}`` never
holds a token: its ``network.rules`` transforms say ``${e2b.identity.tokens.<name>}`` and the egress
relay puts a freshly minted token there on each request to that rule's host. The issuer is this
admin (an ES256 key made on first use under its state dir, mode 0600); a relying party verifies
tokens with the public keys in ``jwks()``. There is no federation with a cloud identity provider
here: a service that trusts only its own provider's tokens will not accept these.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

LIFETIME = 300  # seconds: a token is minted per request, so it only has to outlive that request
TOKEN_TYPES = ("JWT-SVID",)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class WorkloadIdentity:
    """The admin's token issuer (``issuer`` names it in every token's ``iss``)."""

    def __init__(self, directory: Path, issuer: str = "rock-admin"):
        self.directory = Path(directory)
        self.issuer = issuer
        self._key: ec.EllipticCurvePrivateKey | None = None

    def _ensure(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            path = self.directory / "identity.key"
            if path.exists():
                loaded = serialization.load_pem_private_key(path.read_bytes(), None)
                assert isinstance(loaded, ec.EllipticCurvePrivateKey)
                self._key = loaded
            else:
                self.directory.mkdir(parents=True, exist_ok=True)
                key = ec.generate_private_key(ec.SECP256R1())
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
                self._key = key
        return self._key

    def jwks(self) -> dict:
        """The issuer's public key as a JSON Web Key Set (what a relying party verifies with)."""
        numbers = self._ensure().public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return {"keys": [{"kty": "EC", "crv": "P-256", "x": _b64(x), "y": _b64(y), "alg": "ES256", "use": "sig",
                          "kid": self.kid()}]}

    def kid(self) -> str:
        public = self._ensure().public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(public).hexdigest()[:16]

    def subject(self, namespace: str | None, sandbox_id: str) -> str:
        """The SPIFFE ID of a sandbox: its namespace (tenant) and id."""
        return f"spiffe://{self.issuer}/ns/{namespace or '-'}/sandbox/{sandbox_id}"

    def mint(self, namespace: str | None, sandbox_id: str, definition: dict) -> str:
        """A JWT-SVID for ``sandbox_id`` with the definition's audience, valid LIFETIME seconds."""
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid()}
        claims = {"iss": self.issuer, "sub": self.subject(namespace, sandbox_id), "aud": [definition["audience"]],
                  "iat": now, "nbf": now, "exp": now + LIFETIME, "jti": _b64(os.urandom(12))}
        signing = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
                   + _b64(json.dumps(claims, separators=(",", ":")).encode()))
        r, s = decode_dss_signature(self._ensure().sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return signing + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
