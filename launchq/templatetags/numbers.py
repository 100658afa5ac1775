"""`{{ value|plain }}`: a number as people write it (see `launchq.numbers`)."""

from django import template

from launchq.numbers import plain_number

register = template.Library()


@register.filter
def plain(value: object) -> str:
    return plain_number(value)
