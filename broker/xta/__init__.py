"""The XTA 2 endpoint: the SOAP web service German agencies' software speaks (docs/xta.md).

app          the ASGI app: three ports, authentication, faults, metrics
call         one request as the ports see it, and their answer
soap         SOAP 1.2 envelopes and faults (hardened parser)
mtom         multipart/related read under limits as it streams, and written
metadata     XTA's MessageMetaData
send         SendXtaPort: SendMessage into the broker's ingress
msgbox       MsgBoxPort: status list, fetch, close
management   ManagementPort: message ids, transport reports, look-ups
report       a Laufzettel as a TransportReport
box          the message boxes: list, fetch by offset, close
index        each box's stream followed into the XTA store, from its cursor
upkeep       copies nobody closed expire; paddings let closed ones age out
stream       one entry of a box's stream, read by offset
metrics      requests by operation and outcome, waiting copies per box
running      the endpoint as `xbroker run` serves it
"""

from broker.xta.app import MANAGEMENT_PATH, MSG_BOX_PATH, SEND_PATH, build_xta_app
from broker.xta.box import MessageBoxes
from broker.xta.index import xta_agencies
from broker.xta.metadata import xta_message_id
from broker.xta.metrics import Operation, XtaMetrics
from broker.xta.running import RunningXta, dev_tls_paths, start_xta

__all__ = [
    "MANAGEMENT_PATH",
    "MSG_BOX_PATH",
    "SEND_PATH",
    "MessageBoxes",
    "Operation",
    "RunningXta",
    "XtaMetrics",
    "build_xta_app",
    "dev_tls_paths",
    "start_xta",
    "xta_agencies",
    "xta_message_id",
]
