"""The CI/CD pipeline of agent-platform: `python -m tools.pipeline preview|deploy|promote|drift`.

Each command drives the real Pulumi engine through `tools.pipeline.engine` (the only module that
invokes it), reads the engine's structured events rather than its text, and writes a Markdown
report a CI system can post. Exit statuses are in `tools.pipeline.__main__`.
"""
