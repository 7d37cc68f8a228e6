"""``xbroker doctor``: what is wrong with an installation, and how to fix it.

Modules::

    checks       the checks in order, and `diagnose`
    findings     Finding, Status, Report
    rabbitmq     the node answers; the topology exists
    permissions  agency users and their permissions
"""
