"""The messages between the runner and the scenario processes: length-prefixed pickles on a
Unix stream socket, optionally carrying file descriptors (SCM_RIGHTS) with the first bytes."""
from __future__ import annotations

import array
import pickle
import socket
import struct
import time
from typing import Any

HEADER = struct.Struct("=Q")
MAX_FDS = 4


class ChannelClosed(EOFError):
    """The other end went away (the process exited or was killed)."""


def send(sock: socket.socket, obj: Any, fds: list[int] | None = None) -> None:
    body = pickle.dumps(obj)
    data = HEADER.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None, fds: list[int]) -> bytes:
    chunks: list[bytes] = []
    need = n
    while need:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            data, anc, _flags, _ = sock.recvmsg(need, socket.CMSG_SPACE(MAX_FDS * 4))
        except socket.timeout:
            raise TimeoutError("no answer in time") from None
        except ConnectionResetError:
            raise ChannelClosed("connection reset") from None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[:len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
        if not data:
            raise ChannelClosed("end of stream")
        chunks.append(data)
        need -= len(data)
    return b"".join(chunks)


def recv(sock: socket.socket, timeout: float | None = None) -> tuple[Any, list[int]]:
    """One message and the file descriptors that came with it; TimeoutError, ChannelClosed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    fds: list[int] = []
    (size,) = HEADER.unpack(_recv_exact(sock, HEADER.size, deadline, fds))
    body = _recv_exact(sock, size, deadline, fds)
    return pickle.loads(body), fds
