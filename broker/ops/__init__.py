"""Operator tools that run beside the worker, never in its path.

Packages::

    tenancy/  one RabbitMQ user per party, allowed only what its role needs
    doctor/   what is wrong with an installation, and how to fix it
"""
