"""The one error type a request that cannot run raises (torch- and Ray-free, imported everywhere)."""


class PlanError(ValueError):
    """A sweep request that cannot run; the message names the problem and the fix."""
