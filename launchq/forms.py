"""Forms: translate what the browser posts into calls to the domain. No rules live here.

The Config tab is one HTML form: the config text, its format, the version it
was started from, and one tile per template field. A tile's inputs are named
`f.<field>.<part>` (`.` cannot occur in a field name, so this never clashes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.core.exceptions import BadRequest
from django.http import QueryDict

from launchq.characters import describe, unwanted_character
from launchq.guardrails import MAX_ALLOWED_VALUES, MAX_TEXT_LENGTH, Field, FieldType, GuardrailError, Problem, define_field
from launchq.limits import MAX_FIELDS
from launchq.models import Queue, Resource, name_validator
from launchq.numbers import MAX_ID, NumberRefused, parse_integer, plain_number, read_count
from launchq.patterns import html_pattern
from launchq.templating import Format, Occurrence

ALREADY_ALLOWED = "{value!r} is already an allowed value."
UNWANTED_CHARACTER = "This text contains {char}; remove it."
TOO_MANY_TILES = "The form sent {count} tiles; a queue config has at most {bound} template fields."


def request_number(raw: str, *, name: str, maximum: int = MAX_ID, minimum: int = 0) -> int | None:
    """A whole number a form posts (a hidden input, a button's value): `read_count`, and a 400 page when it is not one."""
    try:
        return read_count(raw, name=name, maximum=maximum, minimum=minimum)
    except NumberRefused as refused:
        raise BadRequest(refused.message) from None


def plain_text(value: str) -> None:
    """A form validator: text people read may not hide control or invisible formatting characters."""
    bad = unwanted_character(value or "")
    if bad:
        raise forms.ValidationError(UNWANTED_CHARACTER.format(char=describe(bad)), code="invalid_character")

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
    notes: list[Problem] = field(default_factory=list)
    guessed_from: str = ""

    @classmethod
    def from_field(cls, f: Field, **kw) -> Tile:
        def text(v) -> str:
            return "" if v is None else plain_number(v)

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
        for value in text.replace("\n", ",").split(",", MAX_ALLOWED_VALUES):  # more is refused anyway
            value = value.strip()
            if value in self.allowed:
                self.notes.append(Problem(self.name, "allowed_duplicate", ALREADY_ALLOWED.format(value=value), value=value, attribute="allowed"))
            elif value:
                self.allowed.append(value)

    def check_allowed(self) -> None:
        """Show at once what is wrong with the allowed values (a value given again, too many), not only on Save."""
        try:
            self.define()
        except GuardrailError as error:
            self.problems = self.notes + [p for p in error.problems if p.attribute == "allowed"]
        else:
            self.problems = list(self.notes)

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
            index = parse_integer(action.removeprefix("remove:"))  # ConfigPost.read let only a small count through
            if index is not None and 0 <= index < len(self.allowed):
                removed = self.allowed.pop(index)
                if self.default == removed:
                    self.default = ""

    @property
    def errors(self) -> dict[str, list[Problem]]:
        """Problems by input (`type`, `allowed`, `default`, ...), for showing next to each."""
        found: dict[str, list[Problem]] = {part: [] for part in (*TILE_PARTS, "allowed")}
        for p in self.problems:
            found.setdefault(p.attribute, []).append(p)
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
        base = request_number(data.get("base_version", ""), name="base_version (the version the editor started from)")
        tiles = {}
        names = data.getlist("tiles")
        if len(set(names)) > MAX_FIELDS:
            raise BadRequest(TOO_MANY_TILES.format(count=len(set(names)), bound=MAX_FIELDS))
        for name in names:
            if name not in tiles:
                tiles[name] = Tile.from_post(name, data)
        action = None
        raw_action = data.get("tile_action", "")
        if ":" in raw_action:
            name, _, what = raw_action.partition(":")
            if what.startswith("remove:"):
                index = request_number(what.removeprefix("remove:"), name="The allowed value to remove", maximum=MAX_ALLOWED_VALUES)
                what = f"remove:{index}"
            action = (name, what)
        return cls(text, fmt, base, tiles, action)


class DefaultJobFields(forms.Form):
    """The job a launch runs when it names none: checked by the same rules as a launched job."""

    default_command = forms.CharField(
        label="Default command", required=False, max_length=4096,
        widget=forms.TextInput(attrs={"class": "code", "spellcheck": "false", "placeholder": "python train.py"}),
        help_text="Filled in on the launch form; used by the API, the CLI and wandb when a launch gives no job.",
    )
    default_source_dir = forms.CharField(
        label="Default source directory", required=False, max_length=1024,
        widget=forms.TextInput(attrs={"class": "code", "spellcheck": "false"}),
    )
    default_image = forms.CharField(
        label="Default image", required=False, max_length=1024,
        widget=forms.TextInput(attrs={"class": "code", "spellcheck": "false", "placeholder": "ghcr.io/team/trainer:1.2"}),
        help_text="Container queues only.",
    )

    @property
    def default_job(self) -> dict[str, str]:
        data = self.cleaned_data
        job = {"command": data.get("default_command", ""), "source_dir": data.get("default_source_dir", ""), "image": data.get("default_image", "")}
        return {k: v.strip() for k, v in job.items() if v and v.strip()}

    def check_default_job(self, resource: str) -> None:
        from launchq.runs import check_default_job  # runs imports models; keep forms importable on its own

        for problem in check_default_job(resource, self.default_job):
            self.add_error(f"default_{problem.field}" if problem.field in ("command", "source_dir", "image") else None, problem.message)


class QueueForm(DefaultJobFields, forms.ModelForm):
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

    field_order = ["name", "resource", "description", "format", "config"]

    def clean(self):
        data = super().clean()
        if "resource" in data:
            self.check_default_job(data["resource"])
        return data

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        self.fields["resource"].choices = Resource.choices
        self.fields["name"].validators = [name_validator]
        self.fields["description"].validators.append(plain_text)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if name.lower() == "new":
            raise forms.ValidationError("“new” is reserved; choose another name.")
        if Queue.objects.filter(team=self.team, name=name).exists():
            raise forms.ValidationError("This team already has a queue with that name.")
        return name

    def clean_config(self) -> str:
        return self.cleaned_data["config"].replace("\r\n", "\n")


class QueueSettingsForm(DefaultJobFields):
    """What an admin may change about a queue besides its config: its description and default job."""

    description = forms.CharField(label="Description", required=False, max_length=500, validators=[plain_text], widget=forms.TextInput(attrs={"class": "wide"}))
    field_order = ["description", "default_command", "default_source_dir", "default_image"]

    def __init__(self, *args, queue: Queue, **kwargs):
        job = queue.default_job or {}
        initial = {"description": queue.description, **{f"default_{k}": v for k, v in job.items()}}
        super().__init__(*args, initial=initial, **kwargs)
        self.queue = queue
        if not queue.runs_in_containers:
            del self.fields["default_image"]

    def clean(self):
        data = super().clean()
        self.check_default_job(self.queue.resource)
        return data


# --- the launch form ----------------------------------------------------------
#
# A team member's launch: the project, an optional run name, the job, a
# priority, and one input per template field named `var.<field>`. Everything
# is read as text and handed to `launch_run` / `check_launch` unchanged; the
# HTML constraints below are derived from the same guardrails as a courtesy to
# the browser, and the server decides.

VALUE_PREFIX = "var."
LAUNCH_INPUTS = ("project", "name", "command", "source_dir", "image", "priority")
REPEATED = "{name} was sent more than once; send one value."


@dataclass
class LaunchPost:
    """The launch form as posted (or as first shown): every input's text, values by field name."""

    project: str = ""
    name: str = ""
    command: str = ""
    source_dir: str = ""
    image: str = ""
    priority: str = "medium"
    values: dict[str, str] = field(default_factory=dict)
    version: int | None = None
    repeated: list[str] = field(default_factory=list)
    idempotency_key: str | None = None  # the form's hidden token: a second submit of one form gets the same run

    @classmethod
    def read(cls, data: QueryDict) -> LaunchPost:
        values = {key.removeprefix(VALUE_PREFIX): data.get(key, "") for key in data if key.startswith(VALUE_PREFIX)}
        version = request_number(data.get("config_version", ""), name="config_version (the version the form was drawn for)")
        return cls(
            **{name: data.get(name, "") for name in LAUNCH_INPUTS},
            values=values,
            version=version,
            idempotency_key=data.get("idempotency_key"),
            repeated=[
                key.removeprefix(VALUE_PREFIX) for key in data
                if (key in LAUNCH_INPUTS or key.startswith(VALUE_PREFIX)) and len(data.getlist(key)) > 1
            ],
        )

    def repeat_problems(self) -> list[Problem]:
        """A value sent twice is refused rather than guessed at (a real form sends each input once)."""
        return [Problem(name, "repeated", REPEATED.format(name=name)) for name in self.repeated]

    @property
    def job(self) -> dict[str, str]:
        return {"command": self.command, "source_dir": self.source_dir, "image": self.image}


@dataclass
class ValueInput:
    """One template field's input on the launch form: its widget, HTML constraints, help and errors."""

    field: Field
    value: str
    errors: list[Problem]

    @property
    def name(self) -> str:
        return VALUE_PREFIX + self.field.name

    @property
    def id(self) -> str:
        return "var-" + self.field.name

    @property
    def widget(self) -> str:
        if self.field.is_number:
            return "number"
        return "select" if self.field.allowed else "text"

    @property
    def step(self) -> str:
        return "1" if self.field.type is FieldType.INTEGER else "any"

    @property
    def max_length(self) -> int:
        return min(self.field.max_length or MAX_TEXT_LENGTH, MAX_TEXT_LENGTH)

    @property
    def pattern(self) -> str:
        return html_pattern(self.field.pattern)

    @property
    def described_by(self) -> str:
        ids = [self.id + "-rule"]
        if self.field.description:
            ids.insert(0, self.id + "-help")
        if self.errors:
            ids.append(self.id + "-error")
        return " ".join(ids)

    @property
    def rule(self) -> str:
        """The guardrails in words: `Whole number from 1 to 8 · default 2`."""
        f = self.field
        low, high = plain_number(f.minimum), plain_number(f.maximum)
        if f.is_number:
            kind = "Whole number" if f.type is FieldType.INTEGER else "Number"
            if f.minimum is not None and f.maximum is not None:
                text = f"{kind} from {low} to {high}"
            elif f.minimum is not None:
                text = f"{kind}, at least {low}"
            elif f.maximum is not None:
                text = f"{kind}, at most {high}"
            else:
                text = kind
        elif f.allowed:
            text = f"One of {len(f.allowed)} allowed values"
        else:
            parts = ["Text"]
            if f.pattern:
                parts.append(f"matching {f.pattern}")
            if f.max_length:
                parts.append(f"at most {f.max_length} characters")
            text = ", ".join(parts)
        return text + (" · required" if f.required else f" · default {plain_number(f.default)}")


def value_inputs(fields: list[Field], values: dict[str, str], errors: dict[str, list[Problem]]) -> list[ValueInput]:
    """The template field inputs in config order, showing what was typed (else the default)."""
    inputs = []
    for f in fields:
        shown = values.get(f.name)
        if shown is None:
            shown = "" if f.default is None else plain_number(f.default)
        inputs.append(ValueInput(f, shown, errors.get(VALUE_PREFIX + f.name, [])))
    return inputs
