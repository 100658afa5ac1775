"""What `${name}` means in a queue config: macros the agent fills when it dequeues a run.

The five built-ins come from the run; any other name comes from the agent's
environment. Built-ins win over environment variables of the same name. A macro
that cannot be filled stays as written and is reported back, so the run can
carry a warning. No Django here: the agent imports this on its own machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

BUILTIN_MACROS: dict[str, str] = {
    "project_name": "the project the run is launched into",
    "entity_name": "the team that owns that project",
    "run_id": "the run's ID",
    "run_name": "the run's name",
    "image_uri": "the container image URI for this run",
}

MACRO = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Lookup = Callable[[str], "str | None"]


def find_macros(text: str) -> list[str]:
    """Names of the macros in `text`, in order, each once."""
    return list(dict.fromkeys(m.group(1) for m in MACRO.finditer(text)))


def is_builtin(name: str) -> bool:
    return name in BUILTIN_MACROS


def macro_lookup(builtins: Mapping[str, str | None], environ: Mapping[str, str]) -> Lookup:
    """A lookup where the run's built-in values win over the agent's environment.

    A built-in whose value is None (say `image_uri` for a run that has no image)
    counts as unfillable; it does not fall through to the environment.
    """

    def lookup(name: str) -> str | None:
        if name in BUILTIN_MACROS:
            return builtins.get(name)
        return environ.get(name)

    return lookup


def fill_macros(text: str, lookup: Lookup) -> tuple[str, list[str]]:
    """Replace every `${name}` that `lookup` can fill; return the text and the names it could not."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        value = lookup(match.group(1))
        if value is None:
            if match.group(1) not in missing:
                missing.append(match.group(1))
            return match.group(0)
        return value

    return MACRO.sub(replace, text), missing
