"""Campaign planning: eligibility, quiet hours / night ban, priority arbitration, send-job fan-out.

Entry points: :func:`funnelcast.planning.planner.plan_campaign`, :func:`~funnelcast.planning.planner.release_waiting`
and :class:`~funnelcast.planning.planner.PlannerDependencies`.
"""
