"""Run directories (docs/run-directory.md) to numbers, figures and self-contained HTML.

load (read + validate) → analysis (pure) → figures → html; build writes a run's report, compare
puts runs side by side, index lists every run. `python -m reports --help`.
"""
