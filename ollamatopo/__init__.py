"""ollamatopo: bring up a phased multi-container topology on a Docker engine.

The public surface is the command line (`python -m ollamatopo`) and the error
hierarchy below; modules starting with an underscore are private.
"""

from ollamatopo._errors import (
    EngineError,
    EngineUnreachable,
    OllamatopoError,
    PlanError,
    ProbeFailed,
    RunFailed,
    ServiceFailed,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "EngineError",
    "EngineUnreachable",
    "OllamatopoError",
    "PlanError",
    "ProbeFailed",
    "RunFailed",
    "ServiceFailed",
    "UsageError",
    "__version__",
]
