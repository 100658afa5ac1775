"""The Config tab's editor state: the config text, one tile per template field, and what is wrong.

Built from a saved version (the page as first shown) or from the posted form (Parse configuration, a tile's
change, Save config). Parsing keeps what the admin already set on tiles of fields still present, starts new
fields' tiles (guessing a number's type from the value it replaced) and lists the fields that disappeared.
The work grows linearly with the config's size: the config is parsed once, each field's occurrences are
looked up in one index, and each tile's problems are grouped in one pass.
"""

from __future__ import annotations

import math
from functools import cached_property

from launchq.configs import check_config, check_definitions
from launchq.forms import ConfigPost, Tile
from launchq.guardrails import FieldType
from launchq.macros import BUILTIN_MACROS
from launchq.models import ConfigVersion
from launchq.numbers import plain_number
from launchq.templating import ConfigError, ParsedConfig


class EditorState:
    """What the Config tab shows: the text, the tiles, and whatever went wrong."""

    def __init__(self, text: str, fmt: str, base: ConfigVersion | None):
        self.text = text
        self.format = fmt
        self.base = base
        self.base_number = base.number if base else None
        self.config_error: ConfigError | None = None
        self.parsed: ParsedConfig | None = None
        self.tiles: dict[str, Tile] = {}
        self.removed: list[str] = []
        self.unreviewed: list[str] = []
        self.conflict: ConfigVersion | None = None
        self.refused = False  # a Save config that was refused: the page sums up why

    @classmethod
    def from_version(cls, version: ConfigVersion | None) -> EditorState:
        state = cls(version.text if version else "", version.format if version else "yaml", version)
        state._parse({})
        return state

    @classmethod
    def from_post(cls, post: ConfigPost, current: ConfigVersion | None) -> EditorState:
        base = current
        if current is not None and post.base_number is not None and post.base_number != current.number:
            base = current.queue.versions.filter(number=post.base_number).first() or current
        state = cls(post.text, post.format, base)
        state.base_number = post.base_number
        state._parse(post.tiles)
        return state

    def _parse(self, posted: dict[str, Tile]) -> None:
        saved = {f.name: f for f in (self.base.definitions if self.base else [])}
        try:
            self.parsed = check_config(self.text, self.format)
        except ConfigError as error:
            self.config_error = error
            self.tiles = dict(posted) or {n: Tile.from_field(f) for n, f in saved.items()}
            return
        by_name = self.parsed.by_name()
        for name, where in by_name.items():
            if name in posted:
                tile = posted[name]
                tile.occurrences = where
            elif name in saved:
                tile = Tile.from_field(saved[name], occurrences=where)
            else:
                tile = Tile(name, occurrences=where, is_new=True)
                self._guess_from_replaced(tile)
                self.unreviewed.append(name)
            self.tiles[name] = tile
        self.removed = [n for n in dict.fromkeys([*saved, *posted]) if n not in self.tiles]

    def _guess_from_replaced(self, tile: Tile) -> None:
        """A new field that took the place of a number starts as an Integer or Float with that number as default."""
        whole = [o for o in tile.occurrences if o.whole]
        if not whole or self._base_parsed is None:
            return
        replaced = self._base_parsed.get(whole[0].path)
        if isinstance(replaced, bool) or not isinstance(replaced, int | float):
            return
        if isinstance(replaced, float) and not math.isfinite(replaced):
            return
        tile.type = FieldType.INTEGER.value if isinstance(replaced, int) else FieldType.FLOAT.value
        tile.default = tile.guessed_from = plain_number(replaced)

    def check_tiles(self):
        definitions, problems = check_definitions(t for t in self.tiles.values())
        by_tile: dict[str, list] = {}
        for problem in problems:
            by_tile.setdefault(problem.field, []).append(problem)
        for tile in self.tiles.values():
            tile.problems = by_tile.get(tile.name, [])
        return definitions, problems

    @cached_property
    def _base_parsed(self) -> ParsedConfig | None:
        """The version the editor started from, parsed once for all the new tiles' guesses."""
        if self.base is None or not self.base.text.strip():
            return None
        try:
            return self.base.parsed()
        except ConfigError:
            return None

    @property
    def refusals(self) -> list[dict]:
        """Why Save config was refused, in the tiles, each with the id of the tile to fix.

        A config that does not parse is said once, under the editor, which is already in view.
        """
        found = []
        for name in self.unreviewed:
            found.append({"anchor": f"tile-{name}", "text": f"{name}: a new template field; check its type and guardrails."})
        for tile in self.tiles.values():
            found.extend({"anchor": f"tile-{tile.name}", "text": f"{tile.name}: {p.message}"} for p in tile.problems)
        return found

    @property
    def macros(self) -> list[dict]:
        names = self.parsed.macros if self.parsed else ()
        return [{"name": n, "builtin": n in BUILTIN_MACROS, "meaning": BUILTIN_MACROS.get(n, "")} for n in names]
