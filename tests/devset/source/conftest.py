# The development set is data for tests/test_source_devset.py, not tests: never collect it.
collect_ignore_glob = ["*"]
