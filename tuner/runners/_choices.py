"""The names the runners build samplers, pruners and schedulers by (the CLI's choices).

No imports: ``mttune run --help`` lists them without importing Optuna or Ray.
"""

__all__ = ["PRUNERS", "SAMPLERS", "SCHEDULERS"]

SAMPLERS = ("tpe", "random", "gp", "cmaes")
PRUNERS = ("median", "hyperband", "none")
SCHEDULERS = ("asha", "none")
