"""Application subscriptions, refcounted like res/stasis/app.c's forwards.

Stasis entry, ``/channels/create`` and ``POST /applications/{app}/subscription`` each add one
interest; the forward goes away when the count drops to zero (an endpoint subscribed N times needs
N unsubscribes). ``GET /applications/{app}`` lists each source once. Subscriptions outlive the
app's websocket: while none is connected the events are dropped, and a reconnecting app with the
same name finds them again (controller.sim.apps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.sim.errors import AriError

if TYPE_CHECKING:
    from controller.sim.apps import App
    from controller.sim.engine import Engine
    from controller.sim.model import Bridge, Channel


class SubscriptionOps:
    """Subscribe/unsubscribe of channels, bridges, endpoints (mixed into Engine)."""

    def sub_channel(self: Engine, app: App, ch: Channel) -> None:
        ch.subs[app] = ch.subs.get(app, 0) + 1
        app.channels[ch.id] = ch

    def unsub_channel(self: Engine, app: App, ch: Channel) -> None:
        n = ch.subs.get(app, 0)
        if n <= 1:
            ch.subs.pop(app, None)
            app.channels.pop(ch.id, None)
            self.apps.cleanup(app)
        else:
            ch.subs[app] = n - 1

    def sub_bridge(self: Engine, app: App, bridge: Bridge) -> None:
        bridge.subs[app] = bridge.subs.get(app, 0) + 1
        app.bridges[bridge.id] = bridge

    def unsub_bridge(self: Engine, app: App, bridge: Bridge) -> None:
        n = bridge.subs.get(app, 0)
        if n <= 1:
            bridge.subs.pop(app, None)
            app.bridges.pop(bridge.id, None)
            self.apps.cleanup(app)
        else:
            bridge.subs[app] = n - 1

    def subscribe(self: Engine, app: App, sources: list[str]) -> None:
        """POST /applications/{app}/subscription: validate all sources, then subscribe."""
        resolved = [self._event_source(s) for s in sources]
        for kind, obj in resolved:
            if kind == "channel":
                self.sub_channel(app, obj)
            elif kind == "bridge":
                self.sub_bridge(app, obj)
            elif kind == "endpoint":
                # one forward per endpoint, counted: N subscribes need N unsubscribes (res/stasis/app.c)
                obj.subs[app] = obj.subs.get(app, 0) + 1
                app.endpoints[obj.key] = obj
            elif kind == "tech":
                self.tech_subs.setdefault(obj, set()).add(app)
                app.tech_endpoints.add(obj)
            elif kind == "device" and obj not in app.device_names:
                app.device_names.append(obj)

    def unsubscribe(self: Engine, app: App, sources: list[str]) -> None:
        resolved = [self._event_source(s) for s in sources]
        for kind, obj in resolved:
            subscribed = (
                (kind == "channel" and app in obj.subs)
                or (kind == "bridge" and app in obj.subs)
                or (kind == "endpoint" and obj.key in app.endpoints)
                or (kind == "tech" and obj in app.tech_endpoints)
                or (kind == "device" and obj in app.device_names)
            )
            if not subscribed:
                raise AriError(422, "Event source was not subscribed to")
        for kind, obj in resolved:
            if kind == "channel":
                self.unsub_channel(app, obj)
            elif kind == "bridge":
                self.unsub_bridge(app, obj)
            elif kind == "endpoint":
                left = obj.subs.get(app, 0) - 1
                if left > 0:
                    obj.subs[app] = left
                else:
                    obj.subs.pop(app, None)
                    app.endpoints.pop(obj.key, None)
                    self.apps.cleanup(app)
            elif kind == "tech":
                self.tech_subs.get(obj, set()).discard(app)
                app.tech_endpoints.discard(obj)
            elif kind == "device":
                app.device_names.remove(obj)

    def _event_source(self: Engine, source: str) -> tuple[str, Any]:
        scheme, sep, rest = source.partition(":")
        if not sep:
            raise AriError(400, "Invalid event source URI scheme")
        if scheme == "channel":
            ch = self.channels.get(rest)
            if ch is None:
                raise AriError(422, "Event source does not exist")
            return "channel", ch
        if scheme == "bridge":
            bridge = self.bridges.get(rest)
            if bridge is None:
                raise AriError(422, "Event source does not exist")
            return "bridge", bridge
        if scheme == "endpoint":
            tech, slash, resource = rest.partition("/")
            if not slash or not resource:
                if any(ep.tech == tech for ep in self.endpoints.values()):
                    return "tech", tech
                raise AriError(422, "Event source does not exist")
            ep = self.endpoints.get(f"{tech}/{resource}")
            if ep is None:
                raise AriError(422, "Event source does not exist")
            return "endpoint", ep
        if scheme == "deviceState":
            return "device", rest
        raise AriError(400, "Invalid event source URI scheme")
