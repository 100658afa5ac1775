"""The launchq launch agent: takes runs off queues, fills macros, builds images, runs jobs, reports back.

Start it with `python -m launchq.agent --url URL --token TOKEN --queue QUEUE`.
It talks to the server over HTTP only and needs neither Django nor the
server's database: the standard library, PyYAML, and launchq's pure modules
(`templating`, `macros`, `images`) are all it imports.
"""
