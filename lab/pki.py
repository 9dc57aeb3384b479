"""Throw-away certificates for tests of USB/IP over TLS (openssl command line, EC P-256).

``make_pki(directory)`` writes a CA, a server certificate for 127.0.0.1 and the
lab addresses, two client certificates signed by that CA (``client1`` and
``client2``), and a ``rogue`` client signed by a CA of its own; returns the
paths by name.
"""

from __future__ import annotations

import os
import subprocess
from typing import Dict, Sequence

_DAYS = "30"


def _openssl(*args: str) -> None:
    subprocess.run(("openssl",) + args, check=True, capture_output=True)


def _ca(directory: str, name: str) -> None:
    key, crt = os.path.join(directory, name + ".key"), os.path.join(directory, name + ".crt")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
             "-out", crt, "-days", _DAYS, "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign")


def _leaf(directory: str, name: str, ca: str, sans: Sequence[str], usage: str) -> None:
    key, csr, crt = (os.path.join(directory, name + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % usage)
        if sans:
            f.write("subjectAltName=%s\n" % ",".join(sans))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=" + name)
    _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(directory, ca + ".crt"),
             "-CAkey", os.path.join(directory, ca + ".key"), "-CAcreateserial", "-out", crt, "-days", _DAYS,
             "-extfile", ext)
    os.chmod(key, 0o600)


def make_pki(directory: str) -> Dict[str, str]:
    os.makedirs(directory, exist_ok=True)
    _ca(directory, "ca")
    _ca(directory, "rogue-ca")
    _leaf(directory, "server", "ca", ["IP:127.0.0.1", "IP:10.76.0.1", "DNS:server1", "DNS:localhost"], "serverAuth")
    for client in ("client1", "client2"):
        _leaf(directory, client, "ca", ["DNS:" + client], "clientAuth")
    _leaf(directory, "rogue", "rogue-ca", ["DNS:client1"], "clientAuth")
    return {name: os.path.join(directory, name + ext)
            for name in ("ca", "rogue-ca", "server", "client1", "client2", "rogue")
            for ext in (".crt",)} | {name + "-key": os.path.join(directory, name + ".key")
                                     for name in ("server", "client1", "client2", "rogue")}
