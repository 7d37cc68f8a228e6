"""Receipts: signed XML statements about one message, and their way to the author.

Modules::

    document  the receipt document (build, read, its schema)
    outbox    receipts signed by the broker or forwarded, published confirmed
"""
