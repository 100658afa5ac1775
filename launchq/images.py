"""Container images: checking image references, and the accelerator base image a queue asks for.

A queue config may set `builder.accelerator.base_image` (the source document's
`tensorflow/tensorflow:latest-gpu`); the agent builds run images on it. The
reference is checked when the config is saved, so a typo fails there and not
on a GPU box an hour later. No Django here.
"""

from __future__ import annotations

import re
from typing import Any

from launchq.templating import ConfigError, ParsedConfig

BASE_IMAGE_PATH = "builder.accelerator.base_image"
MAX_NAME_LENGTH = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
REFERENCE = re.compile(
    rf"(?P<name>(?:{_HOST}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?\Z"
)

INVALID_REFERENCE = (
    "{value!r} is not a valid image reference: write a name with an optional registry and port, "
    "a tag or an @sha256: digest of 64 hex digits, like tensorflow/tensorflow:latest-gpu."
)
NOT_TEXT = "The base image must be text, like tensorflow/tensorflow:latest-gpu."
NOT_A_MAPPING = "`{path}` must be a mapping."


def is_image_reference(value: str) -> bool:
    match = REFERENCE.match(value)
    if not match or len(match.group("name")) > MAX_NAME_LENGTH:
        return False
    # Like Docker: a first part without '.' or ':' that is not localhost is a repository
    # path, not a registry host, so it must be lowercase.
    first, _, rest = match.group("name").partition("/")
    is_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
    return is_host or first == first.lower()


def base_image(data: dict[str, Any]) -> str | None:
    """The accelerator base image a config's data asks for, if any."""
    builder = data.get("builder")
    accelerator = builder.get("accelerator") if isinstance(builder, dict) else None
    image = accelerator.get("base_image") if isinstance(accelerator, dict) else None
    return image if isinstance(image, str) and image else None


def check_base_image(parsed: ParsedConfig) -> ConfigError | None:
    """The problem with the config's accelerator base image, if it has one.

    A value holding a template field or a macro is only known at launch or on
    the agent, so it is checked there instead.
    """
    for path in ("builder", "builder.accelerator"):
        value = parsed.get(path)
        if value is not None and not isinstance(value, dict):
            return _error(parsed, path, "not_mapping", NOT_A_MAPPING.format(path=path))
    value = parsed.get(BASE_IMAGE_PATH)
    if value is None:
        return None
    if not isinstance(value, str):
        return _error(parsed, BASE_IMAGE_PATH, "invalid_image", NOT_TEXT)
    if parsed.holds_field(BASE_IMAGE_PATH) or "${" in value:
        return None
    if not is_image_reference(value):
        return _error(parsed, BASE_IMAGE_PATH, "invalid_image", INVALID_REFERENCE.format(value=value))
    return None


def _error(parsed: ParsedConfig, path: str, code: str, message: str) -> ConfigError:
    line, column = parsed.positions.get(path, (None, None))
    return ConfigError(code, message, line, column, path)
