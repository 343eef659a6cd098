"""The one error type a request that cannot run raises (torch- and Ray-free, imported everywhere)."""


class PlanError(ValueError):
    """A sweep request that cannot run; the message names the problem and the fix."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the backend stopped with ``reports`` for the trials it saw.

    Ray Tune catches SIGINT itself and returns normally with unfinished trials; the backend
    turns that into this, the engine writes a partial table of what finished and re-raises,
    and the CLI prints "interrupted; rerun the same command to resume" with rc 130.
    """

    def __init__(self, reports: list) -> None:
        super().__init__("sweep interrupted")
        self.reports = reports
