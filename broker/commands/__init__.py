"""CLI subcommands. Each module exposes ``register(subparsers)``.

``register`` adds its parser(s) and sets ``func`` to a callable taking the parsed
``argparse.Namespace`` and returning the process exit code.
"""
