"""The XTA 2 endpoint as an ASGI app: three ports, one SOAP request → one answer or fault.

``/services/XTAService/ManagementPort``  CreateMessageID, GetTransportReport,
                                         CheckAccountActive, LookupService
``/services/XTAService/SendXtaPort``     SendMessage
``/services/XTAService/MsgBoxPort``      MsgBoxStatusList, MsgBoxGetNext, MsgBoxFetch,
                                         MsgBoxClose

(the paths xta-tool and other XTA clients use by default). Each request is answered in
this order: who is calling (a TLS client certificate in good standing, registered in
the directory for its Behördenkennung, as for the HTTP API), the body read under its
limits (`broker.xta.mtom`), the envelope parsed by the hardened parser, the operation
chosen by the WS-Addressing Action among those of the port. Any refusal is a SOAP 1.2
fault; an unexpected error is logged here and answered as a technical problem, with
nothing of the error in the answer.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from broker.errors import Fault, XtaFault
from broker.logs import event
from broker.xta import management, msgbox, send
from broker.xta.call import Answer, Call
from broker.xta.management import ManagementPort
from broker.xta.metrics import Operation, XtaMetrics
from broker.xta.msgbox import MsgBoxPort
from broker.xta.mtom import Limits, read_soap, write_mtom
from broker.xta.send import SendPort
from broker.xta.soap import fault_envelope, read_envelope
from signing import ParserLimits

__all__ = ["MANAGEMENT_PATH", "MSG_BOX_PATH", "SEND_PATH", "build_xta_app"]

log = logging.getLogger("xbroker.xta")

MANAGEMENT_PATH = "/services/XTAService/ManagementPort"
SEND_PATH = "/services/XTAService/SendXtaPort"
MSG_BOX_PATH = "/services/XTAService/MsgBoxPort"
_SOAP_TYPE = "application/soap+xml; charset=utf-8"
_DRAIN_LIMIT = 64 * 1024 * 1024  # read past a limit (discarding) so the caller sees the fault

Handler = Callable[[Call], Answer | Awaitable[Answer]]
_STATUS = {Fault.PERMISSION_DENIED: 403, Fault.TOO_LARGE: 413, Fault.TECHNICAL_PROBLEM: 503}


def build_xta_app(
    *,
    send_port: SendPort,
    msgbox_port: MsgBoxPort,
    management_port: ManagementPort,
    authenticate: Callable[[Request], str | None],
    limits: Limits,
    envelope_limits: ParserLimits,
    metrics: XtaMetrics,
) -> Starlette:
    ports: dict[str, dict[str, tuple[Operation, Handler]]] = {
        MANAGEMENT_PATH: {
            management.CREATE_MESSAGE_ID: (
                Operation.CREATE_MESSAGE_ID,
                management_port.create_message_id,
            ),
            management.TRANSPORT_REPORT: (
                Operation.TRANSPORT_REPORT,
                management_port.transport_report,
            ),
            management.CHECK_ACCOUNT: (
                Operation.CHECK_ACCOUNT,
                management_port.check_account_active,
            ),
            management.LOOKUP_SERVICE: (Operation.LOOKUP_SERVICE, management_port.lookup_service),
        },
        SEND_PATH: {send.SEND_MESSAGE: (Operation.SEND_MESSAGE, send_port.send_message)},
        MSG_BOX_PATH: {
            msgbox.STATUS_LIST: (Operation.STATUS_LIST, msgbox_port.status_list),
            msgbox.GET_NEXT: (Operation.STATUS_LIST, msgbox_port.get_next),
            msgbox.FETCH: (Operation.FETCH, msgbox_port.fetch),
            msgbox.CLOSE: (Operation.CLOSE, msgbox_port.close),
        },
    }

    def endpoint(operations: Mapping[str, tuple[Operation, Handler]]) -> Any:
        async def answer(request: Request) -> Response:
            started = time.perf_counter()
            operation, relates_to, fault = Operation.UNKNOWN, "", None
            try:
                caller = authenticate(request)
                if caller is None:
                    raise XtaFault(
                        Fault.PERMISSION_DENIED,
                        "a TLS client certificate registered in the directory is required",
                    )
                stream = request.stream()
                try:
                    message = await read_soap(
                        stream, request.headers.get("content-type", ""), limits
                    )
                except XtaFault:
                    await _drain(stream)
                    raise
                envelope = read_envelope(message.envelope, envelope_limits)
                relates_to = envelope.message_id
                action = envelope.action or request.headers.get("soapaction", "").strip('"')
                if action not in operations:
                    raise XtaFault(
                        Fault.SYNTAX_ERROR, f"this port has no operation for Action {action!r}"
                    )
                operation, handler = operations[action]
                result = handler(Call(caller, envelope, message.parts))
                reply = await result if inspect.isawaitable(result) else result
                response = _respond(reply, relates_to)
            except XtaFault as exc:
                fault = exc.fault
                response = _fault(exc, relates_to)
            except Exception:
                log.exception("xta.error", extra={"xbroker_facts": {"operation": operation}})
                fault = Fault.TECHNICAL_PROBLEM
                response = _fault(
                    XtaFault(fault, "the request could not be answered; try again later"),
                    relates_to,
                )
            metrics.request(operation, fault, time.perf_counter() - started)
            if fault is not None:
                event(log, "xta.fault", operation=operation.value, fault=fault.value)
            return response

        return answer

    return Starlette(
        routes=[
            Route(path, endpoint(operations), methods=["POST"])
            for path, operations in ports.items()
        ]
    )


def _respond(reply: Answer, relates_to: str) -> Response:
    envelope = reply.envelope(relates_to)
    if not reply.parts:
        return Response(envelope, media_type=_SOAP_TYPE)
    content_type, body = write_mtom(reply.action, envelope, reply.parts)
    return StreamingResponse(body, headers={"content-type": content_type})


def _fault(error: XtaFault, relates_to: str) -> Response:
    status = _STATUS.get(error.fault, 400 if error.fault.sender else 500)
    return Response(fault_envelope(error, relates_to), status_code=status, media_type=_SOAP_TYPE)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read and drop the rest of a refused body (up to a bound): a client still sending
    would otherwise meet a closed connection instead of the fault."""
    dropped = 0
    async for chunk in chunks:
        dropped += len(chunk)
        if dropped > _DRAIN_LIMIT:
            return
