"""Optimizer family: Adam with coupled weight decay (EG301) and decay on biases and norms
(EG302), from optimizer state saved in a checkpoint. Entry: ``check.run``."""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import MODEL_KINDS

CHECK = CheckSpec("optimizer-state", ("EG301", "EG302"), MODEL_KINDS, "evalguard.checks.optimizer.check:run")
