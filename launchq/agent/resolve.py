"""From a dequeued run to what its resource receives: macros filled, `builder` taken out.

The queue config's text is parsed again here and rendered with the run's
values, filling macros only in the admin's own text: a member's value or run
name that reads `${AWS_SECRET_ACCESS_KEY}` reaches the resource as exactly that
text. The built-in macros come from the run and win over the agent's
environment; a macro nobody can fill stays as written and becomes a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launchq.macros import BUILTIN_MACROS, macro_lookup
from launchq.templating import Format, dump_data, parse_config, render_data

UNFILLED_MACRO = "${{{name}}} was left as written: it is not a built-in macro and the agent has no environment variable {name}."
UNFILLED_IMAGE_URI = "${image_uri} was left as written: this run has no container image (its queue runs local processes)."
UNFILLED_BUILTIN = "${{{name}}} was left as written: the run has no value for it."


@dataclass(frozen=True)
class Resolved:
    """The run's config after macros: what the resource gets, and the builder section the agent keeps."""

    data: dict[str, Any]
    builder: dict[str, Any] | None
    text: str
    format: Format
    unfilled: tuple[str, ...]

    @property
    def warnings(self) -> list[dict[str, str]]:
        return [unfilled_warning(name) for name in self.unfilled]


def builtins_for(run: Mapping[str, Any], image_uri: str | None) -> dict[str, str | None]:
    """The five built-in macros' values for a dequeued run."""
    return {
        "project_name": run.get("project"),
        "entity_name": run.get("entity"),
        "run_id": run.get("id"),
        "run_name": run.get("name"),
        "image_uri": image_uri,
    }


def resolve_config(
    text: str,
    fmt: Format | str,
    values: Mapping[str, Any],
    builtins: Mapping[str, str | None],
    environ: Mapping[str, str],
) -> Resolved:
    """Render the queue config with the run's values and fill its macros; take out `builder`."""
    fmt = Format(fmt)
    parsed = parse_config(text, fmt, strict_keys=False)  # a saved version's text, checked when it was saved
    data, unfilled = render_data(parsed, values, macros=macro_lookup(builtins, environ))
    builder = data.pop("builder", None)
    return Resolved(
        data=data,
        builder=builder if isinstance(builder, dict) else None,
        text=dump_data(data, fmt),
        format=fmt,
        unfilled=tuple(unfilled),
    )


def unfilled_warning(name: str) -> dict[str, str]:
    if name == "image_uri":
        message = UNFILLED_IMAGE_URI
    elif name in BUILTIN_MACROS:
        message = UNFILLED_BUILTIN.format(name=name)
    else:
        message = UNFILLED_MACRO.format(name=name)
    return {"code": "unfilled_macro", "macro": name, "message": message}
