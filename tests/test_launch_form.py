"""The launch form's translation of guardrails into HTML: the rule in words, and the browser's `pattern`."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from launchq.forms import LaunchPost, ValueInput
from launchq.guardrails import Field, FieldType
from launchq.patterns import html_pattern, matches


def test_launch_post_reads_values_by_their_prefix_and_nothing_else():
    post = LaunchPost.read(QueryDict("project=p&name=n&command=c&var.gpus=2&var.a%3Db=x%3Dy&gpus=9&config_version=3"))
    assert post.values == {"gpus": "2", "a=b": "x=y"}
    assert (post.project, post.name, post.command, post.version) == ("p", "n", "c", 3)
    assert post.job == {"command": "c", "source_dir": "", "image": ""}


@pytest.mark.parametrize(
    "field, rule",
    [
        (Field("n", FieldType.INTEGER, minimum=1, maximum=8, default=2), "Whole number from 1 to 8 · default 2"),
        (Field("n", FieldType.INTEGER, minimum=1), "Whole number, at least 1 · required"),
        (Field("x", FieldType.FLOAT, maximum=0.5, default=0.1), "Number, at most 0.5 · default 0.1"),
        (Field("s", FieldType.STRING, allowed=("a", "b")), "One of 2 allowed values · required"),
        (Field("s", FieldType.STRING, pattern="[a-z]+", max_length=9, default="ok"), "Text, matching [a-z]+, at most 9 characters · default ok"),
    ],
)
def test_rule_says_the_guardrails_in_words(field, rule):
    assert ValueInput(field, "", []).rule == rule


@pytest.mark.parametrize(
    "re2, browser",
    [
        ("[a-z0-9-]+", r"[a-z0-9\-]+"),
        ("[-a-z]+", r"[\-a-z]+"),
        ("[a-z-_]+", r"[a-z\-_]+"),
        ("[a-z0-9_.-]{1,63}", r"[a-z0-9_\.\-]{1,63}"),
        (r"ml\.[a-z0-9]+\.x?large", r"ml\.[a-z0-9]+\.x?large"),
        ("[^/]+", r"[^\/]+"),
        ("[]a]", r"[\]a]"),
        ("a{b}", r"a\{b\}"),
        ("x{,3}", r"x\{,3\}"),  # RE2 reads {,3} as text
        ("x{2,}", "x{2,}"),
        (r"\-\:", "-:"),
        ("(?P<v>[0-9]+)", "(?<v>[0-9]+)"),
        (r"\Aabc\z", "^abc$"),
        (r"\s\S", r"[\t\n\f\r ][^\t\n\f\r ]"),  # RE2's \s is ASCII; JavaScript's is not
        (r"\pL+\p{Greek}", r"\p{L}+\p{Script=Greek}"),
        ("[[:alpha:]_]+", "[A-Za-z_]+"),
        (r"\x{e9}\x41", r"\u{e9}\u{41}"),
        (r"\Q.*\E", r"\.\*"),
        ("(?i)abc", ""),  # no inline flags in JavaScript
        (r"\C", ""),
        (r"(a)\1", ""),  # not RE2: refused at save, and never in the browser
        ("a++", ""),
        ("[abc", ""),
        ("", ""),
    ],
)
def test_html_pattern_speaks_the_browsers_dialect(re2, browser):
    assert html_pattern(re2) == browser


@pytest.mark.parametrize("pattern", ["[a-z0-9-]+", "[-a-z]+", "[a-z-_]+", "[]a]", "[ !#-~]+", r"[\w.+-]+@[\w-]+\.[a-z]+", "a{b}", "x{,3}", "[a-c-e]"])
@pytest.mark.parametrize("text", ["abc", "a-b", "-", "_", "]", "a{b}", "x@y-z.io", "A B", "a.b", "~", "x{,3}", "e"])
def test_html_pattern_keeps_the_meaning(pattern, text):
    """Where the browser's spelling is also RE2 syntax, RE2 can check it matches the same texts; the browser
    test checks Chromium agrees on these and on the rewrites RE2 cannot read."""
    assert matches(html_pattern(pattern), text) == matches(pattern, text)
