"""Fault injection for tests: a gRPC server interceptor driven by the QSERV_FAULTS variable.

``QSERV_FAULTS="execute_delay_ms=1500"`` delays the start of every Execute call, inside the
call, so a test can SIGKILL or stop a worker while a query is certainly in flight on it. Unset (production), no
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
        handler = continuation(handler_call_details)
        method = handler_call_details.method  # type: ignore[attr-defined]
        if not (self._delay and method.endswith("/Execute") and handler and handler.unary_stream):
            return handler
        delay, execute = self._delay, handler.unary_stream

        def delayed(request: Any, context: grpc.ServicerContext) -> Any:
            # inside the call, so it is in flight as a slow query is: a client cancel or the
            # server's stop grace ends it, and a SIGKILL lands in the middle of it
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if not context.is_active():
                    return
                time.sleep(0.01)
            yield from execute(request, context)

        return grpc.unary_stream_rpc_method_handler(
            delayed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def interceptors_from_env() -> list[grpc.ServerInterceptor]:
    spec = os.environ.get("QSERV_FAULTS", "")
    return [FaultInterceptor(parse_faults(spec))] if spec else []
