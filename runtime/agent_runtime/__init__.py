"""agent_runtime: the request path and recovery work that Kubernetes does not do.

Never imports pulumi: it ships in the gateway image and in backup/restore Jobs.
"""

__version__ = "0.1.0"
