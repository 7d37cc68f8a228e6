"""Per-party RabbitMQ accounts (`xbroker agencies provision`).

Modules::

    accounts  the accounts and permissions the directory implies; provisioning
    backends  where users are made: rabbitmqctl or the management HTTP API
    tls       parties that log in with a TLS client certificate
"""
