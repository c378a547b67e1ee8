"""The command line: ``rmtlib analyze | prune | sweep | train | eval | book``."""
