"""One structured log line per history fact an admin cares about (offer/call ended, agent state)."""

from __future__ import annotations

import logging

from controller.acd import commands as cmd

log = logging.getLogger("controller.telephony")


def log_record(r: cmd.Record) -> None:
    d = r.data
    if r.kind == "offer.ended":
        log.info(
            "offer %s",
            d["outcome"],
            extra={
                "call": d["call"],
                "queue": d["queue"],
                "agent": d["agent"],
                "offer": d["offer"],
                "outcome": d["outcome"],
                "detail": d["detail"],
                "cause": d["cause"],
                "tech_cause": d["tech_cause"],
                "ring_time": round(d["ring_time"], 3),
            },
        )
    elif r.kind == "call.ended":
        log.info(
            "call %s",
            d["outcome"],
            extra={
                "call": d["call"],
                "queue": d["queue"],
                "outcome": d["outcome"],
                "detail": d["detail"],
                "agent": d["agent"],
                "hung_up_by": d["hung_up_by"],
                "wait": round(d["wait"], 3),
                "talk": round(d["talk"], 3),
            },
        )
    elif r.kind == "call.connected":
        log.info(
            "call answered",
            extra={"call": d["call"], "queue": d["queue"], "agent": d["agent"], "wait": round(d["wait"], 3)},
        )
    elif r.kind == "agent.state":
        log.info(
            "agent %s",
            d["state"],
            extra={"agent": d["agent"], "state": d["state"], "reason": d["reason"]},
        )
