"""Finding 8: image references are checked where they enter; a bad one is a 4xx that says how an
image is named, never a 500 from the engine.

Before: a gym image with ``base_image: "/"`` reached the engine unchecked (TypeError, 500)."""

from __future__ import annotations

import httpx

from tests.security.conftest import TOKEN_A

BAD = ["/", "/etc", "../../etc", "Python:3.11", "python 3.11", "python:3.11;id", "a" * 300]


def test_a_malformed_image_reference_is_refused_at_the_door(tenants):
    with httpx.Client(base_url=tenants.url + "/apis/v1/envs", headers={"Authorization": f"Bearer {TOKEN_A}"},
                      timeout=120) as client:
        for image in BAD:
            for path, body in (("/gym/images", {"source": "CartPole-v1", "base_image": image}),
                               ("/gym/sessions", {"source": "CartPole-v1", "base_image": image}),
                               ("/gem/register", {"id": "sec-env", "entry_point": "m:C", "image": image})):
                r = client.post(path, json=body)
                assert r.status_code in (400, 422), (path, image, r.status_code, r.text[:300])
                assert "not an image reference" in r.text or "at most 255" in r.text, (path, image, r.text[:300])
        # control: a well-formed reference passes this check and the request goes on to the next one
        # (a pip option as a package is refused there, before anything is built)
        r = client.post("/gym/images", json={"source": "CartPole-v1", "base_image": "python:3.11",
                                             "packages": ["--index-url=http://127.0.0.1:1/"]})
        assert r.status_code in (400, 422) and "image reference" not in r.text and "--index-url" in r.text, r.text
        # and the schema states the rule for clients
        schema = httpx.get(tenants.url + "/openapi.json", timeout=60).json()["components"]["schemas"]
        assert "pattern" in str(schema["GymImageRequest"]["properties"]["base_image"])
