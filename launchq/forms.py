"""Forms: translate what the browser posts into calls to the domain. No rules live here.

The Config tab is one HTML form: the config text, its format, the version it
was started from, and one tile per template field. A tile's inputs are named
`f.<field>.<part>` (`.` cannot occur in a field name, so this never clashes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.http import QueryDict

from launchq.guardrails import Field, FieldType, Problem, define_field
from launchq.models import Queue, Resource, name_validator
from launchq.templating import Format, Occurrence

TILE_PARTS = ("type", "description", "default", "minimum", "maximum", "pattern", "max_length")


@dataclass
class Tile:
    """A tile as the admin sees it: the raw text of each input, and what is wrong with it."""

    name: str
    type: str = FieldType.STRING.value
    description: str = ""
    allowed: list[str] = field(default_factory=list)
    default: str = ""
    minimum: str = ""
    maximum: str = ""
    pattern: str = ""
    max_length: str = ""
    occurrences: list[Occurrence] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    is_new: bool = False
    focus_new: bool = False

    @classmethod
    def from_field(cls, f: Field, **kw) -> Tile:
        def text(v) -> str:
            return "" if v is None else str(v)

        return cls(
            name=f.name,
            type=f.type.value,
            description=f.description,
            allowed=list(f.allowed),
            default=text(f.default),
            minimum=text(f.minimum),
            maximum=text(f.maximum),
            pattern=f.pattern,
            max_length=text(f.max_length),
            **kw,
        )

    @classmethod
    def from_post(cls, name: str, data: QueryDict) -> Tile:
        prefix = f"f.{name}."
        parts = {p: data.get(prefix + p, "") for p in TILE_PARTS}
        allowed = list(data.getlist(prefix + "allowed"))
        tile = cls(name=name, allowed=allowed, **parts)
        tile.add_values(data.get(prefix + "new", ""))
        return tile

    def add_values(self, text: str) -> None:
        """Values typed into the "Allowed values" box count as added, whichever button is pressed next.

        Several may be given at once, separated by commas or new lines.
        """
        for value in text.replace("\n", ",").split(","):
            if value.strip():
                self.allowed.append(value.strip())

    def define(self) -> Field:
        allowed = self.allowed if self.type == FieldType.STRING.value else []
        return define_field(
            self.name,
            self.type,
            description=self.description,
            allowed=allowed,
            default=self.default,
            minimum=self.minimum,
            maximum=self.maximum,
            pattern=self.pattern,
            max_length=self.max_length,
        )

    def apply(self, action: str) -> None:
        """Add or remove an allowed value: `add`, or `remove:<index>`."""
        if action == "add":
            self.focus_new = True
        elif action.startswith("remove:"):
            index = action.removeprefix("remove:")
            if index.isdigit() and int(index) < len(self.allowed):
                removed = self.allowed.pop(int(index))
                if self.default == removed:
                    self.default = ""

    @property
    def errors(self) -> dict[str, list[str]]:
        """Messages by input (`type`, `allowed`, `default`, ...), for showing next to each."""
        found: dict[str, list[str]] = {part: [] for part in (*TILE_PARTS, "allowed")}
        for p in self.problems:
            found.setdefault(p.attribute, []).append(p.message)
        return found

    @property
    def type_choices(self) -> list[tuple[str, str]]:
        return [(t.value, t.label) for t in FieldType]

    @property
    def is_string(self) -> bool:
        return self.type == FieldType.STRING.value

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(o.path for o in self.occurrences))


@dataclass
class ConfigPost:
    """The Config tab's form as posted."""

    text: str
    format: str
    base_number: int | None
    tiles: dict[str, Tile]
    tile_action: tuple[str, str] | None

    @classmethod
    def read(cls, data: QueryDict) -> ConfigPost:
        text = data.get("text", "").replace("\r\n", "\n")
        fmt = data.get("format", Format.YAML.value)
        if fmt not in {f.value for f in Format}:
            fmt = Format.YAML.value
        base = data.get("base_version", "")
        tiles = {}
        for name in data.getlist("tiles"):
            if name not in tiles:
                tiles[name] = Tile.from_post(name, data)
        action = None
        raw_action = data.get("tile_action", "")
        if ":" in raw_action:
            name, _, what = raw_action.partition(":")
            action = (name, what)
        return cls(text, fmt, int(base) if base.isdigit() else None, tiles, action)


class QueueForm(forms.ModelForm):
    format = forms.ChoiceField(choices=[(f.value, f.label) for f in Format], initial=Format.YAML.value, label="Config format")
    config = forms.CharField(
        label="Queue config",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "class": "code"}),
        help_text="Optional: you can write it later on the Config tab.",
    )

    class Meta:
        model = Queue
        fields = ["name", "resource", "description"]

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["resource"].choices = Resource.choices
        self.fields["name"].validators = [name_validator]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if Queue.objects.filter(team=self.team, name=name).exists():
            raise forms.ValidationError("This team already has a queue with that name.")
        return name

    def clean_config(self) -> str:
        return self.cleaned_data["config"].replace("\r\n", "\n")
