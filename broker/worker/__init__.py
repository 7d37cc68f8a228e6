"""The broker worker: the process that consumes, decides, delivers and answers.

Modules::

    service            BrokerService: connection, topology, consumers, orderly stop
    ingress            one message from xbroker.ingress: decide, claim, deliver, receipt, ack
    offloop            the CPU work of messages in a thread of its own, within a budget
    delivery_receipts  an agency's signed delivery receipt: verify, forward to the author
    failures           dead letters (expired or undeliverable copies): tell the author
    reload             the directory and the CRL snapshot reloaded when their files change
    waiting            warnings for copies an agency leaves unfetched

The decision itself is `broker.pipeline`; everything here is the I/O around it.
"""
