"""The task side of training suites: one class per suite, hosted by the env host in a sandbox.

Standard library only at import time, relative imports only: the same files are imported as
``rock.training.tasks`` in-process (the benchmark's baseline, unit tests) and as
``rock_training_tasks`` from an env image's site folder inside sandboxes.
"""
