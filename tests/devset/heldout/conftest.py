# The held-out corpus is data for bench/eval_source_heldout.py, not tests: never collect it.
collect_ignore_glob = ["*"]
