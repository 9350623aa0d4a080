"""Architecture family: Dropout/BatchNorm layout from the dataflow (EG201-EG204), stale
BatchNorm statistics, heavy dropout in BatchNorm blocks, non-finite weights (EG205-EG207).
Entry: ``check.run``."""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import MODEL_KINDS

CHECK = CheckSpec("architecture", ("EG201", "EG202", "EG203", "EG204", "EG205", "EG206", "EG207"),
                  MODEL_KINDS, "evalguard.checks.architecture.check:run")
