"""dsan_core."""
