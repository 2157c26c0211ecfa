"""Runnable examples: ``python -m examples.demo`` (the web demo), ``examples/*.py``."""
