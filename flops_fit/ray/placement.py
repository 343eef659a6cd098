"""Before any trial starts: can every trial be placed on some node of the cluster?

Ray queues a trial whose resources no node has, forever, warning once a minute that nothing
runs. A sweep checks each trial's request against the live nodes (``ray.nodes()``) first: on
a cluster that cannot grow (the private Ray ``sweep()`` starts, a fixed cluster) a trial no
node can hold is refused in one line naming it, its request, the largest node and the flag
that fixes it; on an autoscaling cluster the sweep says so and waits ``placement_timeout``
seconds for a node that fits, asking the autoscaler for one.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from flops_fit.errors import PlanError
from flops_fit.planning.grid import TrialSpec
from flops_fit.planning.resources import ResourceRule, placement_problem
from flops_fit.ray.compat import autoscaler_running

#: Seconds between looks at the nodes while an autoscaler adds one.
POLL_S = 5.0


def alive_nodes() -> list[dict[str, float]]:
    """The resources of every live node (``ray.nodes()``, a public API)."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def ensure_placeable(rule: ResourceRule, specs: Sequence[TrialSpec], timeout_s: float,
                     say: Callable[[str], None] = print, nodes: Callable[[], list[dict[str, float]]] = alive_nodes,
                     autoscaling: Callable[[], bool] = autoscaler_running, poll_s: float = POLL_S) -> None:
    """Return when every trial fits some live node; raise PlanError (one line) when one cannot
    and no autoscaler can add a node that fits within ``timeout_s``."""
    problem = placement_problem(rule, specs, nodes())
    if problem is None:
        return
    if not autoscaling():
        raise PlanError(problem)
    from ray.autoscaler.sdk import request_resources

    say(f"{problem}; this cluster autoscales: waiting up to {timeout_s:g} s (--placement-timeout) for a node "
        "that fits")
    request_resources(bundles=[dict(b) for b in {tuple(sorted(rule.for_spec(s).items())) for s in specs}])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            problem = placement_problem(rule, specs, nodes())
            if problem is None:
                say("a node that fits every trial has joined; starting the sweep")
                return
    finally:
        request_resources(bundles=[])  # the trials' own requests keep the autoscaler busy from here
    raise PlanError(f"{problem}; none joined within {timeout_s:g} s (--placement-timeout)")
