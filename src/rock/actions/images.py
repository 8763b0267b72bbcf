"""Image references as callers send them: checked where they enter, with a message that says how
a name looks, so a malformed one is a 400 at the door and never reaches the engine (where ``"/"``
as a build's base was a TypeError and a 500)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

# Docker's reference grammar (distribution/reference): [registry[:port]/]path[:tag][@digest].
REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF_PATTERN = (rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{REPO_COMPONENT}(?:/{REPO_COMPONENT})*"
                     r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
                     r":[0-9a-fA-F]{32,})?$")
_REF = re.compile(IMAGE_REF_PATTERN)
MAX_IMAGE_REF = 255


def image_ref_problem(image: str) -> str | None:
    """Why ``image`` is not an image reference (None when it is one)."""
    if len(image) > MAX_IMAGE_REF:
        return f"image {image[:40]!r}... is {len(image)} characters long; an image reference has at most {MAX_IMAGE_REF}"
    if _REF.fullmatch(image) is None:  # (``$`` alone would let a trailing newline through)
        return (f"image {image!r} is not an image reference: use '[registry[:port]/]repository[:tag][@digest]' "
                "with a lower-case repository, e.g. python:3.11")
    return None


def _check(image: str) -> str:
    why = image_ref_problem(image)
    if why is not None:
        raise ValueError(why)
    return image


# A field that holds an image reference (never a host path): checked, and its pattern in the schema.
ImageRef = Annotated[str, AfterValidator(_check),
                     WithJsonSchema({"type": "string", "pattern": IMAGE_REF_PATTERN, "maxLength": MAX_IMAGE_REF})]
