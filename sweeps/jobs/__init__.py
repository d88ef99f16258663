"""Chunk jobs: the toy planner (grid → models → chunks) and what one chunk runs (``run_chunk``), with
the finite-data rows."""
