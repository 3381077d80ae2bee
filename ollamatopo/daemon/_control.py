"""The daemon's control socket (the contract is `app._control`): a Unix socket in the
project's state directory, mode 0600, that answers only its owner's processes (and
root's), checked by the kernel's peer credentials.

`status` is answered here at once from the live view. `events` streams the hub. Every
other request goes to the daemon's main loop, one at a time, and the connection streams
the daemon's events until the loop's answer comes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from ollamatopo.app._control import MAX_LINE, Op, decode, encode
from ollamatopo.daemon._view import EventHub

READ_REQUEST_S = 5.0


@dataclass(frozen=True)
class ControlRequest:
    """A request for the main loop, and where its answer goes (None: SIGHUP's)."""

    op: Op
    arguments: dict[str, Any]
    answer: MemoryObjectSendStream[dict[str, Any]] | None = None

    async def reply(self, message: dict[str, Any]) -> None:
        """Send the answer (once) and close the channel from this side."""
        if self.answer is not None:
            with self.answer, contextlib.suppress(anyio.BrokenResourceError,
                                                  anyio.ClosedResourceError):
                await self.answer.send(message)


class ControlServer:
    def __init__(self, path: Path, plan_link: Path, hub: EventHub,
                 status: Callable[[], dict[str, Any]],
                 requests: anyio.abc.ObjectSendStream[ControlRequest]) -> None:
        self.path, self.plan_link, self._hub = path, plan_link, hub
        self._status, self._requests = status, requests

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                    ) -> None:
        listener = await self._listen()
        try:
            task_status.started()
            await listener.serve(self._answer)
        finally:
            with contextlib.suppress(OSError):
                self.plan_link.unlink()
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _listen(self) -> anyio.abc.SocketListener:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The caller holds the project's lock: a socket left here is a dead daemon's.
        self.path.unlink(missing_ok=True)
        mask = os.umask(0o177)  # born 0600: no moment when others may connect
        try:
            listener = await anyio.create_unix_listener(self.path)
        finally:
            os.umask(mask)
        os.chmod(self.path, 0o600)
        self.plan_link.parent.mkdir(parents=True, exist_ok=True)
        self.plan_link.unlink(missing_ok=True)
        self.plan_link.symlink_to(self.path)
        return listener

    async def _answer(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(READ_REQUEST_S):
                    line = await BufferedByteReceiveStream(stream).receive_until(b"\n",
                                                                                 MAX_LINE)
                request = decode(line)
                op = Op(str(request.get("op")))
            except (TimeoutError, ValueError, anyio.IncompleteRead, anyio.DelimiterNotFound,
                    anyio.EndOfStream, anyio.BrokenResourceError):
                await _send(stream, {"error": {"message": "not a control request",
                                               "exit_code": 2}})
                return
            # Checked once the request is read: closing on an unread request would reset the
            # connection, and the refusal would be lost to the client.
            if not _same_user(stream):
                await _send(stream, {"error": {"message": "this daemon answers its owner only",
                                               "exit_code": 2}})
                return
            if op is Op.STATUS:
                await _send(stream, {"done": self._status()})
            elif op is Op.STOP:  # answered first: the daemon's end ends this connection
                await _send(stream, {"done": {"stopping": True}})
                await self._requests.send(ControlRequest(Op.STOP, {}))
            elif op is Op.EVENTS:
                await self._stream_events(stream)
            else:
                await self._carry_out(stream, op, request)

    async def _stream_events(self, stream: anyio.abc.SocketStream) -> None:
        extra, events = self._hub.subscribe()
        with extra, events:
            async for message in events:
                if not await _send(stream, message):
                    return

    async def _carry_out(self, stream: anyio.abc.SocketStream, op: Op,
                         request: dict[str, Any]) -> None:
        """Hand the request to the main loop; stream the daemon's events until its answer,
        which comes down the same channel, after them."""
        answer, messages = self._hub.subscribe()
        with messages:
            arguments = {key: value for key, value in request.items() if key != "op"}
            await self._requests.send(ControlRequest(op, arguments, answer))
            async for message in messages:
                await _send(stream, message)
                if "done" in message or "error" in message:
                    return
        await _send(stream, {"error": {"message": "the daemon stopped before it answered",
                                       "exit_code": 1}})


async def _send(stream: anyio.abc.SocketStream, message: dict[str, Any]) -> bool:
    try:
        await stream.send(encode(message))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False
    return True


def _same_user(stream: anyio.abc.SocketStream) -> bool:
    """The peer runs as the daemon's user or as root (SO_PEERCRED: pid, uid, gid)."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    credentials = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", credentials)
    return uid in (os.getuid(), 0)
