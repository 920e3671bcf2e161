"""Async REST client for the subset of ARI the controller drives.

Query parameter names are exactly the Swagger names (``appArgs``, ``channelId``, ``mohClass`` ...);
channel variables travel in a JSON body ``{"variables": {...}}``. HTTP failures become the typed
exceptions of ``errors``; the outcomes that are normal in call handling (hanging up a channel that is
already gone, stopping music that already stopped) come back as ``False`` instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, urlencode, urlsplit, urlunsplit

import aiohttp
from pydantic import BaseModel, ValidationError

from .errors import (
    AriBadRequest,
    AriConflict,
    AriConnectionError,
    AriError,
    AriNotFound,
    AriServerError,
    AriUnauthorized,
    EndpointUnreachable,
    Fenced,
)
from .http import HttpPool
from .models import Application, Bridge, Channel, Endpoint, Playback

log = logging.getLogger("controller.ari.client")

M = TypeVar("M", bound=BaseModel)

_STATUS_ERRORS: dict[int, type[AriError]] = {
    400: AriBadRequest,
    401: AriUnauthorized,
    403: AriUnauthorized,
    404: AriNotFound,
    409: AriConflict,
}


def _csv(value: str | Iterable[str], what: str) -> str:
    """ARI takes list parameters comma-separated, so an item must not contain a comma itself."""
    if isinstance(value, str):
        return value
    items = list(value)
    for item in items:
        if "," in item:
            raise ValueError(f"{what} item {item!r} contains a comma; ARI would split it")
    return ",".join(items)


def _bool(value: bool) -> str:
    return "true" if value else "false"


class AriClient:
    """ARI REST client: requests over our keep-alive pool (``http.HttpPool``: on the wire in the
    call that makes them), the events websocket over an aiohttp session.

    ``base_url`` is Asterisk's HTTP server, e.g. ``http://127.0.0.1:8088`` (a trailing ``/ari`` is
    accepted too). A session passed in is used as is (for the websocket) and left open on ``close()``.
    """

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str,
        *,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 10,
    ) -> None:
        base = base_url.rstrip("/")
        if base.endswith("/ari"):
            base = base[: -len("/ari")]
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ARI base URL must look like http://host:8088, got {base_url!r}")
        if parts.username or parts.password:
            raise ValueError("put the ARI user and password in their own settings, not in the ARI URL")
        self.base_url = base
        self.user = user
        self.app = app
        self.request_timeout = request_timeout
        self.stats: Counter[str] = Counter()
        self._password = password
        if ":" in user:
            raise ValueError(f"ARI user name {user!r} must not contain ':' (basic auth splits on it)")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._head_lines = (
            f"Host: {parts.netloc}\r\nAuthorization: Basic {token}\r\nUser-Agent: acd-controller\r\n"
        )
        self._path_prefix = parts.path.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        self._pool: HttpPool | None = None
        self._session = session
        self._own_session = session is None
        # hot standby: asked before every request and websocket connect; False = fenced, send nothing
        self.fence: Callable[[], bool] | None = None

    def __repr__(self) -> str:
        return f"AriClient(base_url={self.base_url!r}, user={self.user!r}, app={self.app!r})"

    async def __aenter__(self) -> AriClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if self._own_session:
            self._session = None

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._ensure_session()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._own_session:
                raise RuntimeError("the aiohttp session given to AriClient is closed")
            trace = aiohttp.TraceConfig()
            trace.on_connection_create_end.append(self._fence_again)
            trace.on_connection_reuseconn.append(self._fence_again)
            self._session = aiohttp.ClientSession(trace_configs=[trace])
        return self._session

    def _requests(self) -> HttpPool:
        if self._pool is None:
            ctx = ssl.create_default_context() if self._tls else None
            self._pool = HttpPool(self._host or "", self._port, ssl_context=ctx)
        return self._pool

    def _fence_before_write(self) -> None:
        """Hot standby: the fence asked again right before a request's bytes go out (it may have
        waited for a connection, and the process may have been frozen meanwhile)."""
        if self.fence is not None and not self.fence():
            self.stats["fenced"] += 1
            raise Fenced("request not sent (fenced while waiting for a connection)")

    async def _fence_again(self, _session: Any, _ctx: Any, params: Any) -> None:
        """Hot standby: ask the fence again once the connection is there, right before the request
        is written. A request may wait for a TCP connection; if the process is frozen meanwhile
        (SIGSTOP), the check made before the wait is stale when it wakes up, and without this the
        request would go out after a takeover (tests/ha/test_processes.py saw it)."""
        if self.fence is not None and not self.fence():
            self.stats["fenced"] += 1
            raise Fenced("request not sent (fenced while waiting for a connection)")

    @property
    def events_url(self) -> str:
        """Websocket URL for the event stream, without credentials (safe to log)."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/ari/events", f"app={quote(self.app)}", ""))

    def redact(self, text: str) -> str:
        """Remove the password from text that came from a foreign library (e.g. an aiohttp error)."""
        if self._password:
            pw = self._password
            for form in {pw, quote(pw, safe=""), quote(pw), quote_plus(pw)}:
                text = text.replace(form, "***")
        return text

    def _unauthorized_message(self, status: int, what: str) -> str:
        if status == 403:
            return (
                f"ARI at {self.base_url} refused {what} for user {self.user!r} (HTTP 403): "
                "the user is probably read_only in ari.conf"
            )
        return (
            f"ARI at {self.base_url} refused credentials for user {self.user!r}: "
            "check ACD_ARI_USER/ACD_ARI_PASSWORD and ari.conf"
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        variables: dict[str, str] | None = None,
        endpoint: str | None = None,
        body: Any = None,
    ) -> Any:
        """Send one request below ``/ari``; return the decoded JSON body (None for 204).

        ``body`` is sent as the JSON body as is (``variables`` wraps its dict in ``{"variables": ...}``).
        """
        if self.fence is not None and not self.fence():
            self.stats["fenced"] += 1
            raise Fenced(f"{method} {path} not sent")
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        if variables:
            body = {"variables": variables}
        target = quote(f"{self._path_prefix}/ari{path}", safe="/%:@!$&'()*+,;=-._~")
        if query:
            target += "?" + urlencode(query, quote_via=quote, safe="")
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {target} HTTP/1.1\r\n{self._head_lines}"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if data or method not in ("GET", "HEAD"):
            head += f"Content-Length: {len(data)}\r\n"
        self.stats["requests"] += 1
        try:
            status, raw = await self._requests().request(
                (head + "\r\n").encode(),
                data,
                self.request_timeout,
                head_only=method == "HEAD",
                before_write=self._fence_before_write,
            )
        except TimeoutError:
            self.stats["errors"] += 1
            self.stats["timeouts"] += 1
            raise AriConnectionError(
                None,
                f"ARI at {self.base_url} did not answer {method} {path} within {self.request_timeout:g} s: "
                "check that Asterisk is running and not overloaded",
                method,
                path,
            ) from None
        except OSError as exc:  # refused, reset, closed early, not HTTP (HttpProtocolError)
            self.stats["errors"] += 1
            self.stats["connection_errors"] += 1
            raise AriConnectionError(
                None,
                f"cannot reach ARI at {self.base_url} for {method} {path} "
                f"({type(exc).__name__}: {self.redact(str(exc))}): check ACD_ARI_URL and that Asterisk "
                "runs with the HTTP server enabled (http.conf) and res_ari loaded",
                method,
                path,
            ) from None
        text = raw.decode("utf-8", "replace")
        if status < 300:
            if status == 204 or not text:
                return None
            try:
                return json.loads(text)
            except ValueError:
                self.stats["errors"] += 1
                raise AriServerError(
                    status,
                    f"ARI {method} {path} returned a body that is not JSON: {text[:200]!r}",
                    method,
                    path,
                ) from None
        raise self._error(status, text, method, path, endpoint)

    def _error(self, status: int, text: str, method: str, path: str, endpoint: str | None) -> AriError:
        self.stats["errors"] += 1
        self.stats[f"http_{status}"] += 1
        detail = text.strip()
        error_field = ""
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error_field = str(payload.get("error") or "")
            detail = str(payload.get("message") or error_field or detail)
        detail = self.redact(detail[:300]) or "no details"
        if status in (401, 403):
            message = self._unauthorized_message(status, f"{method} {path}")
            return AriUnauthorized(status, message, method, path, detail=detail)
        if status == 500 and endpoint is not None and error_field == "Allocation failed":
            return EndpointUnreachable(
                status,
                f"ARI could not create a channel to {endpoint!r} "
                f"({method} {path}: HTTP 500 Allocation failed): "
                "the endpoint is unregistered, unreachable or unknown; check that the phone is registered "
                f"(GET /ari/endpoints/{endpoint})",
                method,
                path,
                detail=detail,
                endpoint=endpoint,
            )
        cls = _STATUS_ERRORS.get(status) or (AriServerError if status >= 500 else AriError)
        return cls(
            status, f"ARI {method} {path} failed with HTTP {status}: {detail}", method, path, detail=detail
        )

    @staticmethod
    def _parse(model: type[M], data: Any, method: str, path: str) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise AriServerError(
                None,
                f"ARI {method} {path} returned a {model.__name__} this client cannot read: "
                f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
                method,
                path,
            ) from None

    async def _get_model(self, model: type[M], path: str) -> M:
        return self._parse(model, await self._request("GET", path), "GET", path)

    async def _get_list(self, model: type[M], path: str) -> list[M]:
        data = await self._request("GET", path)
        return [self._parse(model, item, "GET", path) for item in data or []]

    # --- channels ------------------------------------------------------------------------------

    async def create_channel(
        self,
        endpoint: str,
        app: str | None = None,
        app_args: str | Iterable[str] = (),
        *,
        channel_id: str | None = None,
        variables: dict[str, str] | None = None,
        originator: str | None = None,
        other_channel_id: str | None = None,
        formats: str | None = None,
    ) -> Channel:
        """POST /channels/create: a channel in Stasis (StasisStart at once, state Down) that ``dial`` rings.

        Raises EndpointUnreachable when the endpoint is unregistered or unknown.
        """
        params = {
            "endpoint": endpoint,
            "app": app or self.app,
            "appArgs": _csv(app_args, "app_args") or None,
            "channelId": channel_id,
            "otherChannelId": other_channel_id,
            "originator": originator,
            "formats": formats,
        }
        data = await self._request(
            "POST", "/channels/create", params=params, variables=variables, endpoint=endpoint
        )
        return self._parse(Channel, data, "POST", "/channels/create")

    async def originate(
        self,
        endpoint: str,
        *,
        app: str | None = None,
        app_args: str | Iterable[str] = (),
        caller_id: str | None = None,
        timeout: int | None = None,  # noqa: ASYNC109 - ARI's dial timeout in seconds, not ours
        variables: dict[str, str] | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        originator: str | None = None,
        formats: str | None = None,
        extension: str | None = None,
        context: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> Channel:
        """POST /channels: dial at once; StasisStart arrives only on answer (state Up).

        Sends the channel to ``app`` (default: this client's app) unless a dialplan ``extension`` or
        ``context`` is given. Raises EndpointUnreachable when the endpoint is unregistered or unknown.
        """
        to_dialplan = extension is not None or context is not None
        params = {
            "endpoint": endpoint,
            "extension": extension,
            "context": context,
            "priority": priority,
            "label": label,
            "app": None if to_dialplan and app is None else (app or self.app),
            "appArgs": _csv(app_args, "app_args") or None,
            "callerId": caller_id,
            "timeout": timeout,
            "channelId": channel_id,
            "otherChannelId": other_channel_id,
            "originator": originator,
            "formats": formats,
        }
        data = await self._request("POST", "/channels", params=params, variables=variables, endpoint=endpoint)
        return self._parse(Channel, data, "POST", "/channels")

    async def dial(
        self,
        channel_id: str,
        timeout: int | None = None,  # noqa: ASYNC109 - ARI's ring timeout in seconds, not ours
        caller: str | None = None,
    ) -> None:
        """Ring a created channel; Asterisk gives up after ``timeout`` s (cause 32 soft, then 19/480).

        ``caller`` (a channel id) overwrites the agent channel's connected line, which is what the
        agent's phone shows; leave it out to show CONNECTEDLINE(name/num) set at create instead.
        """
        await self._request(
            "POST", f"/channels/{channel_id}/dial", params={"caller": caller, "timeout": timeout}
        )

    async def answer(self, channel_id: str) -> None:
        await self._request("POST", f"/channels/{channel_id}/answer")

    async def ring(self, channel_id: str) -> None:
        """Send ringback (180) to the caller without answering."""
        await self._request("POST", f"/channels/{channel_id}/ring")

    async def ring_stop(self, channel_id: str) -> None:
        await self._request("DELETE", f"/channels/{channel_id}/ring")

    async def start_moh(self, channel_id: str, moh_class: str | None = None) -> None:
        await self._request("POST", f"/channels/{channel_id}/moh", params={"mohClass": moh_class})

    async def stop_moh(self, channel_id: str) -> None:
        await self._request("DELETE", f"/channels/{channel_id}/moh")

    async def play(
        self,
        channel_id: str,
        media: str | Iterable[str],
        playback_id: str | None = None,
        lang: str | None = None,
    ) -> Playback:
        """Play ``sound:``/``digits:``/``number:``/``tone:``/``recording:`` URIs, one after another."""
        path = f"/channels/{channel_id}/play"
        params = {"media": _csv(media, "media"), "playbackId": playback_id, "lang": lang}
        return self._parse(Playback, await self._request("POST", path, params=params), "POST", path)

    async def stop_playback(self, playback_id: str) -> None:
        """DELETE /playbacks/{id}: stop it at once (404 once it finished). Bridge a channel only after
        its playback stopped: addChannel of a playing channel waits until the playback ends."""
        await self._request("DELETE", f"/playbacks/{quote(playback_id, safe='')}")

    async def hangup(self, channel_id: str, reason: str = "normal") -> bool:
        """Hang up; False if the channel was already gone (a normal race, not an error)."""
        try:
            await self._request("DELETE", f"/channels/{channel_id}", params={"reason": reason})
        except AriNotFound:
            return False
        return True

    async def get_channel(self, channel_id: str) -> Channel:
        return await self._get_model(Channel, f"/channels/{channel_id}")

    async def list_channels(self) -> list[Channel]:
        return await self._get_list(Channel, "/channels")

    async def get_variable(self, channel_id: str, variable: str) -> str | None:
        """Read a variable or function (e.g. ``PJSIP_HEADER(read,X-Ticket)``); None if it is not set.

        Asterisk answers 404 "Provided variable was not found" for an unset variable and 500 "Unable to
        read provided function" for a function that has nothing to read (a missing SIP header); both
        mean "no value". A missing channel still raises AriNotFound.
        """
        path = f"/channels/{channel_id}/variable"
        try:
            data = await self._request("GET", path, params={"variable": variable})
        except AriNotFound as exc:
            if "variable" in exc.detail.lower():
                return None
            raise
        except AriServerError as exc:
            if variable.endswith(")") and "unable to read provided function" in exc.detail.lower():
                return None
            raise
        if not isinstance(data, dict):
            return None
        value = data.get("value")
        return None if value is None else str(value)

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        await self._request(
            "POST", f"/channels/{channel_id}/variable", params={"variable": variable, "value": value}
        )

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> None:
        """Leave Stasis and continue in the dialplan (e.g. an overflow target)."""
        await self._request(
            "POST",
            f"/channels/{channel_id}/continue",
            params={"context": context, "extension": extension, "priority": priority, "label": label},
        )

    # --- bridges -------------------------------------------------------------------------------

    async def create_bridge(
        self, type: str = "mixing", bridge_id: str | None = None, name: str | None = None
    ) -> Bridge:
        """POST /bridges. ``type`` is ``holding`` (waiting callers, bridge MOH) or ``mixing`` (a call)."""
        params = {"type": type, "bridgeId": bridge_id, "name": name}
        return self._parse(Bridge, await self._request("POST", "/bridges", params=params), "POST", "/bridges")

    async def add_channel(
        self,
        bridge_id: str,
        channels: str | Iterable[str],
        *,
        role: str | None = None,
        absorb_dtmf: bool | None = None,
        mute: bool | None = None,
        inhibit_connected_line_updates: bool | None = None,
    ) -> None:
        """Add (or move, if already bridged elsewhere) channels into a bridge."""
        params = {
            "channel": _csv(channels, "channels"),
            "role": role,
            "absorbDTMF": None if absorb_dtmf is None else _bool(absorb_dtmf),
            "mute": None if mute is None else _bool(mute),
            "inhibitConnectedLineUpdates": (
                None if inhibit_connected_line_updates is None else _bool(inhibit_connected_line_updates)
            ),
        }
        await self._request("POST", f"/bridges/{bridge_id}/addChannel", params=params)

    async def remove_channel(self, bridge_id: str, channels: str | Iterable[str]) -> None:
        await self._request(
            "POST", f"/bridges/{bridge_id}/removeChannel", params={"channel": _csv(channels, "channels")}
        )

    async def destroy_bridge(self, bridge_id: str) -> bool:
        """Destroy a bridge; False if it was already gone."""
        try:
            await self._request("DELETE", f"/bridges/{bridge_id}")
        except AriNotFound:
            return False
        return True

    async def start_bridge_moh(self, bridge_id: str, moh_class: str | None = None) -> None:
        await self._request("POST", f"/bridges/{bridge_id}/moh", params={"mohClass": moh_class})

    async def stop_bridge_moh(self, bridge_id: str) -> bool:
        """Stop bridge music; False if it was not playing (it stops by itself when the bridge empties)."""
        try:
            await self._request("DELETE", f"/bridges/{bridge_id}/moh")
        except AriConflict:
            return False
        return True

    async def get_bridge(self, bridge_id: str) -> Bridge:
        return await self._get_model(Bridge, f"/bridges/{bridge_id}")

    async def list_bridges(self) -> list[Bridge]:
        return await self._get_list(Bridge, "/bridges")

    # --- applications, endpoints, asterisk -----------------------------------------------------

    async def get_application(self, name: str | None = None) -> Application:
        """GET /applications/{name} (default: this client's app): the channels/bridges it still owns."""
        return await self._get_model(Application, f"/applications/{quote(name or self.app, safe='')}")

    async def list_applications(self) -> list[Application]:
        return await self._get_list(Application, "/applications")

    async def subscribe(self, event_source: str | Iterable[str]) -> Application:
        """Subscribe this app to e.g. ``endpoint:PJSIP/agent4`` (EndpointStateChange on register)."""
        path = f"/applications/{quote(self.app, safe='')}/subscription"
        data = await self._request("POST", path, params={"eventSource": _csv(event_source, "event_source")})
        return self._parse(Application, data, "POST", path)

    async def unsubscribe(self, event_source: str | Iterable[str]) -> Application:
        path = f"/applications/{quote(self.app, safe='')}/subscription"
        data = await self._request("DELETE", path, params={"eventSource": _csv(event_source, "event_source")})
        return self._parse(Application, data, "DELETE", path)

    async def set_event_filter(
        self, *, allowed: Iterable[str] | None = None, disallowed: Iterable[str] | None = None
    ) -> Application:
        """PUT /applications/{app}/eventFilter: which event types Asterisk sends this app at all.

        A list left as None is not changed; an empty list clears it (empty allowed = all allowed);
        disallowed wins over allowed. Asterisk filters ApplicationReplaced too, so an allowed list
        without it hides a takeover. The filter lives as long as the app does in Asterisk (it survives
        a reconnect while the app owns channels, is gone once the app was destroyed): set it again
        on every connect. Raises AriNotFound (unknown app, or an ARI without the resource: before
        13.26/16.3), AriBadRequest (a malformed filter), the usual AriError otherwise.
        """
        body: dict[str, list[dict[str, str]]] = {}
        for key, types in (("allowed", allowed), ("disallowed", disallowed)):
            if types is None:
                continue
            if isinstance(types, str):
                raise TypeError(f"{key} must be a collection of event type names, not a string")
            names = list(types)
            for name in names:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"{key} event type {name!r} must be a non-empty string")
            body[key] = [{"type": name} for name in names]
        if not body:
            raise ValueError("give allowed and/or disallowed (an empty body would reset both lists)")
        path = f"/applications/{quote(self.app, safe='')}/eventFilter"
        data = await self._request("PUT", path, body=body)
        return self._parse(Application, data, "PUT", path)

    async def get_endpoint(self, tech: str, resource: str) -> Endpoint:
        return await self._get_model(Endpoint, f"/endpoints/{tech}/{resource}")

    async def list_endpoints(self, tech: str | None = None) -> list[Endpoint]:
        return await self._get_list(Endpoint, f"/endpoints/{tech}" if tech else "/endpoints")

    async def asterisk_info(self) -> dict[str, Any]:
        """GET /asterisk/info: build/system/config/status, as Asterisk sends it."""
        return await self._request("GET", "/asterisk/info") or {}

    async def ping(self) -> dict[str, Any]:
        """GET /asterisk/ping: the cheapest start-up check of URL and credentials."""
        return await self._request("GET", "/asterisk/ping") or {}

    # --- events websocket ----------------------------------------------------------------------

    async def connect_events(self, *, heartbeat: float | None = 30.0) -> aiohttp.ClientWebSocketResponse:
        """Open ``/ari/events?app=APP&api_key=USER:PASS`` (subscribeAll left at its default, false).

        Raises AriUnauthorized on 401/403 and AriConnectionError for anything else; messages never
        contain the URL's api_key.
        """
        what = f"the events websocket {self.events_url}"
        if self.fence is not None and not self.fence():
            raise Fenced(f"{what} not opened")
        try:
            async with asyncio.timeout(self.request_timeout):
                return await self.session.ws_connect(
                    f"{self.base_url}/ari/events",
                    params={"app": self.app, "api_key": f"{self.user}:{self._password}"},
                    heartbeat=heartbeat,
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise AriUnauthorized(
                    exc.status, self._unauthorized_message(exc.status, what), "GET", "/events"
                ) from None
            raise AriConnectionError(
                exc.status,
                f"ARI refused {what} with HTTP {exc.status}: check that res_ari is loaded "
                "and the app name is valid",
                "GET",
                "/events",
            ) from None
        except TimeoutError:
            raise AriConnectionError(
                None, f"no answer from {what} within {self.request_timeout:g} s", "GET", "/events"
            ) from None
        except aiohttp.ClientError as exc:
            raise AriConnectionError(
                None,
                f"cannot connect to {what} ({type(exc).__name__}: {self.redact(str(exc))})",
                "GET",
                "/events",
            ) from None
