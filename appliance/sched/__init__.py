"""Scheduling of the CPU-bound model work: live calls first (cpu.py), the models seen through
their lanes (lanes.py)."""
