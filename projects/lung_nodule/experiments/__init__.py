"""Controlled experiments over several training runs (tools/experiments/): their tables and
plots. Light: imports no torch (the runs themselves are the real tools, as subprocesses)."""
