"""Training errors: one class, a ``kind`` naming what went wrong, the HTTP status it answers with."""

from __future__ import annotations

from rock.errors import RockError

STATUS = {
    "BadRequest": 400,
    "UnknownEnvType": 404,
    "TaskNotFound": 404,
    "InstanceNotFound": 404,
    "InstanceReleased": 410,
    "InstanceExists": 409,
    "SuiteUnavailable": 422,
}


class TrainingError(RockError):
    def __init__(self, message: str, kind: str = "BadRequest"):
        super().__init__(message)
        self.kind = kind
        self.status_code = STATUS.get(kind, 500)
