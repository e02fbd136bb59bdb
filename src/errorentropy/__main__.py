"""``python -m errorentropy``."""

from .cli import run

run()
