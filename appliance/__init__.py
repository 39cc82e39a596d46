"""A phone and messaging receptionist that a small business runs on its own box."""

import os

# llama.cpp and CTranslate2 both use OpenMP, whose idle threads spin by default. On a 2-core box
# two spinning pools starve each other: llama.cpp calls stalled for 2-4 s instead of ~10 ms.
# Passive waiting fixes it; it only works if set before either library loads, i.e. here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
