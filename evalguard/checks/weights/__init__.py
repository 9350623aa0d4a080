"""Weights family: every tensor of the architecture came from the file, and every tensor in
the file went into the architecture (EG208). Entry: ``check.run``."""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import MODEL_KINDS

CHECK = CheckSpec("weights", ("EG208",), MODEL_KINDS, "evalguard.checks.weights.check:run")
