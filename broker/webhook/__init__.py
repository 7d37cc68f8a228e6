"""Push delivery: copies in a webhook agency's inbox sent to its HTTPS endpoint.

Modules::

    deliverer  the consumers of the webhook inboxes and their lifecycle
    outcomes   what becomes of a copy once its endpoint has answered
    push       one HTTP push and how it ended
    queues     delay queues and the retry schedule
    signature  Standard Webhooks signatures
    targets    which inboxes are pushed, and where to
"""
