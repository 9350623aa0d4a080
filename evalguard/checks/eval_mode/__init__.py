"""Eval-mode family: modules left in training mode (EG101), and paired forward passes for
nondeterminism (EG102), randomness after eval() (EG103), batch dependence (EG104) and
autograd left on (EG107). Entry: ``check.run``."""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import MODEL_KINDS

CHECK = CheckSpec("eval-mode", ("EG101", "EG102", "EG103", "EG104", "EG107"), MODEL_KINDS,
                  "evalguard.checks.eval_mode.check:run")
