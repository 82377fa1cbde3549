"""Fault injection for tests: a gRPC server interceptor driven by the QSERV_FAULTS variable.

``QSERV_FAULTS="execute_delay_ms=1500"`` delays the start of every Execute call, so a test can
SIGKILL a worker while a query is certainly in flight on it. Unset (production), no
interceptor is installed at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import grpc


def parse_faults(spec: str) -> dict[str, float]:
    """``"a=1,b=2"`` -> {"a": 1.0, "b": 2.0}."""
    faults: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        faults[name.strip()] = float(value or 1)
    return faults


class FaultInterceptor(grpc.ServerInterceptor):
    def __init__(self, faults: dict[str, float]) -> None:
        self._delay = faults.get("execute_delay_ms", 0.0) / 1000.0

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        if self._delay and handler_call_details.method.endswith("/Execute"):  # type: ignore[attr-defined]
            time.sleep(self._delay)
        return continuation(handler_call_details)


def interceptors_from_env() -> list[grpc.ServerInterceptor]:
    spec = os.environ.get("QSERV_FAULTS", "")
    return [FaultInterceptor(parse_faults(spec))] if spec else []
