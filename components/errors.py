"""ResourceError: a component refusing its own input, tied to the component that refused it.

The Node SDK has `pulumi.ResourceError(message, resource)` (pulumi-eks raises it from a component
whose inputs do not fit together); the Python SDK has only `pulumi.RunError`. This is that class
for Python: a RunError, so the engine prints the message alone with no traceback, whose message
starts with the component's type and name, where Node's engine would show the resource's URN.

Only a component's own checks raise it. Stack-file mistakes are found earlier, in
components/config.py, and name the stack file; anything else that goes wrong is a bug and keeps
its traceback.
"""

from __future__ import annotations

import pulumi


class ResourceError(pulumi.RunError):
    """`raise ResourceError("Only one of `a` or `b` can be given.", self)` in a component's constructor,
    after `super().__init__` so that `self` is the registered component."""

    def __init__(self, message: str, resource: pulumi.Resource) -> None:
        self.resource = resource
        self.reason = message
        super().__init__(f"{resource.pulumi_resource_type} {resource.pulumi_resource_name}: {message}")
