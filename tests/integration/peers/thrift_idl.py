"""The Echo Thrift IDL, loaded by thriftpy2 at run time and compiled for Apache thrift.

Apache thrift code is generated with Debian's ``thrift`` compiler into
``.tools/thrift-gen/<idl-hash>/`` (never committed, never linted), atomically, on first use.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.peers.procs import TOOLS_DIR

IDL_PATH = Path(__file__).resolve().parent / "thrift" / "echo.thrift"
SERVICE_NAME = "Echo"
#: Python namespace declared in the IDL (``namespace py echo_peer``).
APACHE_PACKAGE = "echo_peer"


def _idl_hash() -> str:
    return hashlib.sha256(IDL_PATH.read_bytes()).hexdigest()[:16]


def apache_gen_dir() -> Path:
    """Directory holding the generated ``echo_peer`` package (generated if absent)."""
    root = TOOLS_DIR / "thrift-gen"
    target = root / _idl_hash()
    if (target / APACHE_PACKAGE / "Echo.py").is_file():
        return target
    compiler = shutil.which("thrift")
    if compiler is None:
        raise RuntimeError("Debian's thrift compiler is missing; run `make setup`")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gen-", dir=root))
    try:
        subprocess.run(
            [compiler, "--gen", "py", "-out", str(tmp), str(IDL_PATH)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process won the race; its output is identical.
            if not (target / APACHE_PACKAGE / "Echo.py").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(frozen=True)
class ApacheEcho:
    """Generated Apache thrift modules: ``Echo`` (Client/Processor) and ``ttypes``."""

    service: types.ModuleType
    ttypes: types.ModuleType

    @property
    def EchoError(self) -> type[Exception]:
        cls: type[Exception] = self.ttypes.EchoError
        return cls


@functools.cache
def load_apache() -> ApacheEcho:
    gen = str(apache_gen_dir())
    if gen not in sys.path:
        sys.path.insert(0, gen)
    service = importlib.import_module(f"{APACHE_PACKAGE}.{SERVICE_NAME}")
    ttypes = importlib.import_module(f"{APACHE_PACKAGE}.ttypes")
    return ApacheEcho(service, ttypes)


@functools.cache
def load_thriftpy2() -> Any:
    """The thriftpy2 module built from the IDL (has ``.Echo`` and ``.EchoError``)."""
    import thriftpy2

    return thriftpy2.load(str(IDL_PATH), module_name="echo_peer_thrift")


def echo_error_class(impl: str) -> type[Exception]:
    """The declared ``EchoError`` exception class for ``impl`` ("thriftpy2" or "apache")."""
    if impl == "thriftpy2":
        cls: type[Exception] = load_thriftpy2().EchoError
        return cls
    if impl == "apache":
        return load_apache().EchoError
    raise ValueError(f"unknown thrift impl {impl!r}")


def application_exception_class(impl: str) -> type[Exception]:
    """``TApplicationException`` for ``impl``: what a proxy's local error reply surfaces as."""
    if impl == "thriftpy2":
        from thriftpy2.thrift import TApplicationException as TpAppExc

        return TpAppExc  # type: ignore[no-any-return]
    if impl == "apache":
        from thrift.Thrift import TApplicationException as ApAppExc

        return ApAppExc  # type: ignore[no-any-return]
    raise ValueError(f"unknown thrift impl {impl!r}")
