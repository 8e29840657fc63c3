"""Production drills on the running node: faults under load, every request and pod event recorded.

`python -m tools.drills` (and `make drills`) runs them against a deployed stack; tests/node runs
the cheap ones. Modules: `records` (what is recorded), `load` (the open-loop load through the
gateway), `cluster` (pod events and faults through the Kubernetes API), `analysis` (figures from
the records), `report` (JSON, Markdown and a PNG timeline per drill), `drills` (the drills).
"""
