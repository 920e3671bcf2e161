"""Playbacks on channels and bridges: queueing, PlaybackStarted/Continuing/Finished, media lengths.

A mixin of Engine. Several media in one play request give Started, Continuing, Started... Finished
(each media starts with ``playing``); a playback on a busy channel waits its turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from controller.sim.model import Bridge, Channel, Playback

if TYPE_CHECKING:
    from controller.sim.apps import App
    from controller.sim.engine import Engine


class PlaybackOps:
    """Playback operations of the simulated Asterisk (mixed into Engine)."""

    def play(
        self: Engine,
        *,
        channel: Channel | None = None,
        bridge: Bridge | None = None,
        medias: list[str],
        lang: str | None,
        playback_id: str | None,
    ) -> str:
        """Queue a playback; returns the 201 body (state queued). Events follow at once."""
        pid = playback_id or self.ids.uuid()
        if channel is not None:
            target, language, queue = f"channel:{channel.id}", lang or channel.language, channel.playbacks
        else:
            assert bridge is not None
            target, language, queue = f"bridge:{bridge.id}", lang or "en", bridge.playbacks
        pb = Playback(pid, medias, target, language, channel, bridge)
        self.playbacks[pid] = pb
        body = pb.snap()
        queue.append(pb)
        if len(queue) == 1:
            self._start_media(pb)
        return body

    def _pb_recips(self: Engine, pb: Playback) -> Iterable[App]:
        if pb.channel is not None:
            return self._recips(pb.channel)
        assert pb.bridge is not None
        return self._bridge_recips(pb.bridge)

    def _ev_playback(self: Engine, type_: str, pb: Playback) -> None:
        recips = self._pb_recips(pb)
        if recips:
            self._emit(type_, recips, f', "playback": {pb.snap()}')

    def _media_duration(self: Engine, uri: str) -> float | None | bool:
        """Seconds of a media URI; None plays until stopped (tone:), False means the file is missing."""
        scheme, _, res = uri.partition(":")
        if uri in self.sound_durations:
            return self.sound_durations[uri]
        if scheme == "sound":
            return self.sound_durations.get(res, self.default_sound_duration)
        if scheme == "digits":
            return 0.775 * max(1, len(res))
        if scheme == "characters":
            return 0.6 * max(1, len(res))
        if scheme == "number":
            return 0.8 * max(1, len(res.lstrip("-")))
        if scheme == "tone":
            return None
        return False

    def _start_media(self: Engine, pb: Playback) -> None:
        pb.state = "playing"
        self._ev_playback("PlaybackStarted", pb)
        media = pb.medias[pb.index]
        for ch in (
            [pb.channel] if pb.channel is not None else list(pb.bridge.channels.values() if pb.bridge else [])
        ):
            if ch.party is not None:
                ch.party.playback(media)
        duration = self._media_duration(media)
        if duration is False:
            self._finish_playback(pb, "failed")
        elif duration is not None:
            pb.timer = self.later(float(duration), self._media_done, pb)

    def _media_done(self: Engine, pb: Playback) -> None:
        pb.timer = None
        if pb.index + 1 < len(pb.medias):
            pb.state = "continuing"
            self._ev_playback("PlaybackContinuing", pb)
            pb.index += 1
            self._start_media(pb)
        else:
            self._finish_playback(pb, "done")

    def _finish_playback(self: Engine, pb: Playback, state: str) -> None:
        if pb.timer is not None:
            pb.timer.cancel()
            pb.timer = None
        queue = pb.channel.playbacks if pb.channel is not None else pb.bridge.playbacks  # type: ignore[union-attr]
        was_current = bool(queue) and queue[0] is pb
        if pb in queue:
            queue.remove(pb)
        self.playbacks.pop(pb.id, None)
        pb.state = state
        self._ev_playback("PlaybackFinished", pb)
        if was_current and queue:
            self._start_media(queue[0])
        elif not queue and pb.channel is not None and pb.channel.after_playback:
            self._playbacks_done(pb.channel)

    def stop_playback(self: Engine, pb: Playback) -> None:
        self._finish_playback(pb, "done")

    def _stop_channel_playbacks(self: Engine, ch: Channel) -> None:
        if not ch.playbacks:
            return
        current = ch.playbacks[0]
        for pb in ch.playbacks[1:]:
            self.playbacks.pop(pb.id, None)
        del ch.playbacks[1:]
        self._finish_playback(current, "done")
