"""Benchmarks of xbroker against the bare RabbitMQ relay on the same node.

``python -m bench`` (``--quick``, ``--json PATH``) measures, in one run: the bare relay,
the broker with one worker process and one per core, latency at fixed offered loads,
the peak RSS of a worker draining a backlog, and micro figures of the pipeline's steps.
docs/performance.md says what each figure means and what was measured.
"""

__all__: list[str] = []
