"""How much one request may ask of launchq: the caps every path shares. No imports, so the agent can use it too."""

MAX_FIELDS = 200  # template fields in one queue config, and values in one launch
MAX_UNKNOWN_SHOWN = 20  # names a refused launch lists that are not template fields
