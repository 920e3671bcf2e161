"""Supervisor wallboard: live queues and agents, today's charts and agent actions (issue 16)."""
