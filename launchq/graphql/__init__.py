"""The `wandb` client's door: a GraphQL endpoint at /graphql answering what `wandb launch --queue`
and `launch_add(...)` (wandb 0.31.0) send to push a run onto a Launch queue, what scripts send
to wait on it, and what W&B's own launch agent (`wandb launch-agent`) sends to take runs off it.

- `schema.graphql`: the SDL, exactly the types and fields the client asks for;
- `schema.py`: binds the SDL to the resolvers and runs one operation (graphql-core);
- `resolvers.py`: teams, queues and runs as the client expects to see them;
- `queued.py`: a run as W&B's run queue item and W&B's run, for scripts that wait on them;
- `agents.py`: W&B's launch agent registering, popping, acknowledging and failing runs;
- `tracking.py`, `files.py`: a job's own wandb run under a W&B agent (output, exit status, files);
- `run_spec.py`: what a W&B run spec asks launchq to run (no Django);
- `views.py`: the HTTP endpoint and its authentication (an API token, or an agent token, as the API key).
"""
