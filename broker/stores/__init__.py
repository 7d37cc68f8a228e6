"""What the broker writes down: metadata and hashes only, never payloads.

Modules::

    journal  the events of a message, batched and written before its ack
    status   the status store behind the Laufzettel (`xbroker status`, the HTTP API)
    dedup    the claim that makes a redelivered message harmless
    xta/     the XTA endpoint's sends and its message boxes' index (offsets, never payloads)
    audit/   the hash-chained, signed audit trail and its check
"""
