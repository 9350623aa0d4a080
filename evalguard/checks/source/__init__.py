"""Source family: rules read from Python files' syntax trees, never importing or running
them (EG105, EG106, EG201, EG301, EG903). Entry: ``check.run``; one module per rule."""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import SOURCE_KINDS

CHECK = CheckSpec("source", ("EG105", "EG106", "EG201", "EG301", "EG903"), SOURCE_KINDS,
                  "evalguard.checks.source.check:run")
