"""CURVE keys for links that leave loopback: encryption and who may connect.

``darktrigger keys generate --out keys`` writes one key pair for the stages that bind
(``server.key`` / ``server.key_secret``) and one for the stages that connect
(``client.key`` / ``client.key_secret``), and lists the client's public key in
``keys/authorized/``. Copy the folder to every host of the run. A binding socket then
accepts only peers whose public key is in ``authorized/`` (ZeroMQ's ZAP handler);
a peer without the keys, or with other keys, is refused during the handshake.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sorted(p.name for p in generate_keys(d / "keys").iterdir())
    ['authorized', 'client.key', 'client.key_secret', 'server.key', 'server.key_secret']
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from darktrigger.replay.errors import ConfigError

if TYPE_CHECKING:
    from darktrigger.daq.topology import Topology

log = logging.getLogger(__name__)

KEY_FILES = ("server.key", "server.key_secret", "client.key", "client.key_secret")


def generate_keys(out: str | Path, overwrite: bool = False) -> Path:
    """Make the server and client key pairs under ``out`` (see module docs)."""
    import zmq.auth

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out}: already holds files; give another folder or --force to replace the keys")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("server", "client"):
        zmq.auth.create_certificates(str(out), name)
    auth = out / "authorized"
    shutil.rmtree(auth, ignore_errors=True)
    auth.mkdir()
    shutil.copy(out / "client.key", auth / "client.key")
    for secret in out.glob("*.key_secret"):
        secret.chmod(0o600)
    return out


class Curve:
    """CURVE settings for one process's sockets, from a keys folder."""

    def __init__(self, keys: Path) -> None:
        import zmq.auth

        missing = [f for f in KEY_FILES if not (keys / f).exists()]
        if missing:
            raise ConfigError(f"{keys}: CURVE key file(s) {', '.join(missing)} missing; make them with "
                              f"`darktrigger keys generate --out {keys}`")
        self.keys = keys
        self.server_public, self.server_secret = zmq.auth.load_certificate(str(keys / "server.key_secret"))
        self.client_public, self.client_secret = zmq.auth.load_certificate(str(keys / "client.key_secret"))
        self._auth: Any = None

    @classmethod
    def from_topology(cls, topo: Topology) -> Curve | None:
        return cls(topo.keys) if topo.keys is not None else None

    def server(self, sock: zmq.Socket, ctx: zmq.Context) -> None:
        """Make ``sock`` a CURVE server that admits only the authorised client keys."""
        if self._auth is None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self.keys / "authorized"))
        sock.curve_secretkey = self.server_secret
        sock.curve_publickey = self.server_public
        sock.curve_server = True

    def client(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.client_secret
        sock.curve_publickey = self.client_public
        assert self.server_public is not None
        sock.curve_serverkey = self.server_public

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
