"""Structured logging: one line per event, ``key=value`` pairs after a short message.

Every service logs through :func:`get_logger` and :func:`event`, so logs can be grepped by
field (``query_id=…``, ``worker=…``) and parsed by machines.
"""

from __future__ import annotations

import logging
import sys


def setup(service: str, level: str = "INFO") -> None:
    """Configure the root logger of a process (call once, from the CLI)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # grpc and asyncio chatter is noise at INFO
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def _fmt(value: object) -> str:
    text = str(value)
    if not text or any(ch.isspace() for ch in text) or '"' in text or "=" in text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: object) -> None:
    """Log ``message`` followed by ``key=value`` fields."""
    if not logger.isEnabledFor(level):
        return
    parts = [message] + [f"{k}={_fmt(v)}" for k, v in fields.items()]
    logger.log(level, " ".join(parts))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
