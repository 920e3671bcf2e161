"""OpenAPI 3.1 description of every endpoint (``GET /api/openapi.json``).

Written by hand next to the routes; a test checks that every route of the app is described here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_LIMIT", "MAX_OFFSET", "MAX_REASON", "openapi_spec"]

MAX_LIMIT = 500  # /api/calls page size
MAX_OFFSET = 10**9
MAX_REASON = 200  # characters of a pause reason

_ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad parameter or body",
        401: "missing or invalid token",
        403: "token not allowed here",
        404: "unknown id",
        409: "not possible in the current state",
        503: "history database unavailable",
    }
    return {str(c): _resp(text[c], _ERROR) for c in codes}


def _q(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _p(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


_TIME = {"type": "string", "format": "date-time"}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"  # no control characters (C0, DEL, C1)
# since/until also take a plain date (midnight UTC); empty is refused like any other non-date
_WHEN = {"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}], "minLength": 10}
_OBJ = {"type": "object"}


def _agent_action(action: str, summary: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": [_p("agent_id", "agent id from the queue file")],
        "responses": {
            "200": _resp("the agent after the change", {"$ref": "#/components/schemas/Agent"}),
            **_errors(400, 401, 403, 404, *((409,) if action in ("pause", "ready") else ())),
        },
    }
    if action == "pause":
        op["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "reason": {"type": "string", "maxLength": MAX_REASON, "pattern": _NO_CONTROL}
                        },
                        "additionalProperties": False,
                    }
                }
            },
        }
    return {"post": op}


def openapi_spec() -> dict[str, Any]:
    admin = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ACD controller API",
            "version": "1",
            "description": "Call history, live queues and agents, agent actions. Send "
            "'Authorization: Bearer <token>': the admin token (ACD_ADMIN_TOKEN) may do everything; an "
            "agent token (token_sha256 in the queue file) only its own agent's state and offers.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                "Call": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "queue": {"type": "string"},
                        "caller_number": {"type": ["string", "null"]},
                        "caller_name": {"type": ["string", "null"]},
                        "arrived_at": _TIME,
                        "answered_at": {"type": ["string", "null"], "format": "date-time"},
                        "ended_at": {"type": ["string", "null"], "format": "date-time"},
                        "outcome": {"enum": ["completed", "abandoned", "overflowed", None]},
                        "detail": {"type": ["string", "null"]},
                        "hung_up_by": {"enum": ["caller", "agent", None]},
                        "overflowed": {"type": ["boolean", "null"]},
                        "agent": {"type": ["string", "null"]},
                        "wait": {"type": ["number", "null"]},
                        "talk": {"type": ["number", "null"]},
                    },
                },
                "Offer": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "call_id": {"type": "string"},
                        "agent": {"type": "string"},
                        "started_at": _TIME,
                        "answered_at": {"type": ["string", "null"], "format": "date-time"},
                        "ended_at": {"type": ["string", "null"], "format": "date-time"},
                        "outcome": {"type": ["string", "null"]},
                        "detail": {"type": ["string", "null"]},
                        "cause": {"type": ["integer", "null"]},
                        "tech_cause": {"type": ["integer", "null"]},
                        "ring_time": {"type": ["number", "null"]},
                    },
                },
                "Agent": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "state": {"type": "string"},
                        "presence": {"enum": ["available", "paused", "not_responding", "logged_out"]},
                        "pause_reason": {"type": ["string", "null"]},
                        "reachable": {"type": "boolean"},
                        "misses": {"type": "integer"},
                        "calls_taken": {"type": "integer"},
                        "queues": {"type": "object"},
                        "call": {"type": ["string", "null"]},
                        "wrapup_until": {"type": ["string", "null"], "format": "date-time"},
                        "offer": {"type": ["object", "null"], "description": "offer card, see docs/panel.md"},
                        "last_call_end": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
        },
        "paths": {
            "/": {"get": {"summary": "The agent panel (HTML page; no token needed to load it)",
                          "responses": {"200": {"description": "text/html"}}}},
            "/panel/config.json": {
                "get": {
                    "summary": "What the panel page needs: the WhatsApp sidecar's URL, language, demo mode",
                    "responses": {"200": _resp("panel settings", _OBJ)},
                }
            },
            "/panel/{name}": {
                "get": {
                    "summary": "The panel's static files (CSS, JavaScript)",
                    "parameters": [_p("name", "file name such as panel.js")],
                    "responses": {"200": {"description": "the file"}, **_errors(404)},
                }
            },
            "/api/me": {
                "get": {
                    "summary": "Who the token belongs to: admin, or an agent (id, name)",
                    "security": admin,
                    "responses": {"200": _resp("the principal", _OBJ), **_errors(401, 403)},
                }
            },
            "/api/agents/{agent_id}/stream": {
                "get": {
                    "summary": "WebSocket: the agent's live state, offer cards and call (token in ?token=);"
                    " frames in docs/panel.md",
                    "security": admin,
                    "parameters": [
                        _p("agent_id", "agent id from the queue file"),
                        {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "101": {"description": "switching to WebSocket"},
                        "400": _resp("not a WebSocket upgrade request", _ERROR),
                        **_errors(401, 403, 404),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "ARI connected and database reachable (no token needed)",
                    "responses": {"200": _resp("healthy", _OBJ), "503": _resp("degraded", _OBJ)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format)",
                    "security": admin,
                    "responses": {"200": {"description": "text/plain metrics"}, **_errors(401, 403)},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": admin,
                    "responses": {"200": _resp("OpenAPI document", _OBJ), **_errors(401)},
                }
            },
            "/api/calls": {
                "get": {
                    "summary": "Calls, newest first, paginated",
                    "security": admin,
                    "parameters": [
                        _q("queue", "only this queue", {"type": "string"}),
                        _q(
                            "since", "arrived at or after (ISO 8601 date or date-time, UTC if no zone)", _WHEN
                        ),
                        _q("until", "arrived before", _WHEN),
                        _q(
                            "outcome",
                            "how the call ended",
                            {"enum": ["completed", "abandoned", "overflowed"]},
                        ),
                        _q("agent", "calls offered to this agent (answered or not)", {"type": "string"}),
                        _q("limit", "page size (default 50)", _LIMIT),
                        _q(
                            "offset",
                            "calls to skip (next_offset of the previous page)",
                            {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                        ),
                    ],
                    "responses": {
                        "200": _resp(
                            "a page of calls",
                            {
                                "type": "object",
                                "properties": {
                                    "calls": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Call"},
                                    },
                                    "limit": {"type": "integer"},
                                    "offset": {"type": "integer"},
                                    "next_offset": {"type": ["integer", "null"]},
                                },
                            },
                        ),
                        **_errors(400, 401, 403, 503),
                    },
                }
            },
            "/api/calls/{call_id}": {
                "get": {
                    "summary": "One call with every offer in ring order",
                    "security": admin,
                    "parameters": [_p("call_id", "the call id (the caller's channel id)")],
                    "responses": {
                        "200": _resp(
                            "the call",
                            {
                                "allOf": [
                                    {"$ref": "#/components/schemas/Call"},
                                    {
                                        "type": "object",
                                        "properties": {
                                            "offers": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Offer"},
                                            },
                                            "live_state": {"type": ["string", "null"]},
                                        },
                                    },
                                ]
                            },
                        ),
                        **_errors(401, 403, 404, 503),
                    },
                }
            },
            "/api/queues": {
                "get": {
                    "summary": "Per queue: live (waiting, longest wait, agents by state) and today's figures",
                    "description": "today: offered, answered, abandoned, overflowed, service_level (answered "
                    "within ACD_SERVICE_LEVEL s / ended calls), average_speed_of_answer, average_handle_time "
                    "(seconds), and per agent offers rejected / missed / busy. 'since' overrides the start "
                    "of the day (UTC midnight).",
                    "security": admin,
                    "parameters": [_q("since", "start of 'today' (default: UTC midnight)", _WHEN)],
                    "responses": {"200": _resp("queues", _OBJ), **_errors(400, 401, 403)},
                }
            },
            "/api/agents": {
                "get": {
                    "summary": "Every agent's live state",
                    "security": admin,
                    "responses": {
                        "200": _resp(
                            "agents",
                            {
                                "type": "object",
                                "properties": {
                                    "agents": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Agent"},
                                    }
                                },
                            },
                        ),
                        **_errors(401, 403),
                    },
                }
            },
            "/api/agents/{agent_id}": {
                "get": {
                    "summary": "One agent's live state, with its ringing offer (admin or that agent)",
                    "security": admin,
                    "parameters": [_p("agent_id", "agent id from the queue file")],
                    "responses": {
                        "200": _resp("the agent", {"$ref": "#/components/schemas/Agent"}),
                        **_errors(401, 403, 404),
                    },
                }
            },
            **{
                f"/api/agents/{{agent_id}}/{action}": _agent_action(action, summary)
                for action, summary in (
                    ("login", "Log in (admin or that agent)"),
                    ("logout", "Log out (admin or that agent)"),
                    ("pause", "Pause, with an optional reason shown to the admin (admin or that agent)"),
                    ("ready", "Make ready after a pause (admin or that agent)"),
                )
            },
            "/api/offers/{offer_id}/{action}": {
                "post": {
                    "summary": "Reject a ringing offer, or accept one answered in confirm mode"
                    " (admin or its agent)",
                    "security": admin,
                    "parameters": [
                        _p("offer_id", "offer id (offer.created event, agent's 'offer')"),
                        _p("action", "what to do", ["accept", "reject"]),
                    ],
                    "description": "An offer that is not the caller's own answers 404, like an unknown one.",
                    "responses": {"200": _resp("the offer", _OBJ), **_errors(401, 404, 409)},
                }
            },
            "/api/admin/reload": {
                "post": {
                    "summary": "Reload the queue file (as SIGHUP does): validated as at start; an invalid"
                    " file changes nothing (admin)",
                    "security": admin,
                    "responses": {
                        "200": _resp("reloaded: {reloaded: true, changes, warnings}", _OBJ),
                        "409": _resp(
                            "queue file on disk invalid, nothing changed: {reloaded: false, errors}", _OBJ
                        ),
                        **_errors(401, 403),
                    },
                }
            },
        },
    }
