"""Pulumi components of agent-platform; `config` is the only module that reads pulumi.Config."""
