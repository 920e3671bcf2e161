"""The one-queue set-up several benchmarks drive: agents a0..aN-1 on PJSIP/a0.., all in the queue."""

from __future__ import annotations

from controller.acd.setup import AcdSetup, AgentConfig, Membership, QueueConfig


def one_queue(agents: int, queue: QueueConfig) -> AcdSetup:
    return AcdSetup(
        queues={queue.name: queue},
        agents={
            f"a{i}": AgentConfig(f"a{i}", f"Agent {i}", f"PJSIP/a{i}", (Membership(queue.name),))
            for i in range(agents)
        },
    )
