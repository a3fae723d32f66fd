"""Command-line sub-commands of ``main.py``. Each module exposes ``register(subparsers)``."""
