"""Everything xbroker says to RabbitMQ, below the worker and the SDKs.

Modules::

    topology     names and declarations of exchanges and queues
    publishing   connect, and confirmed, mandatory publishing with a deadline
    acks         settling a message when the channel may already be gone
    queue_stats  queue depth and consumers from RabbitMQ's Prometheus endpoint
"""
