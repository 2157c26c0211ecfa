"""The streamfx web demo: ``make demo`` or ``python -m examples.demo``."""
