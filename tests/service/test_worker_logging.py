"""The worker logs aiokafka's retried start-up conditions as warnings, other errors as errors."""

import logging

from aiokafka import errors

from stream.service.worker import RetriedErrorsAsWarnings, quiet_retried_errors


def _record(name: str, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_retried_conditions_become_warnings_and_the_rest_stays_error():
    f = RetriedErrorsAsWarnings()
    cases = [
        (_record("aiokafka.cluster", "Topic %s not found in cluster metadata", "cw-shadow-bands-changelog"), "WARNING"),
        (
            _record(
                "aiokafka.consumer.group_coordinator",
                "Group Coordinator Request failed: %s",
                errors.GroupCoordinatorNotAvailableError(),
            ),
            "WARNING",
        ),
        (
            _record(
                "aiokafka.consumer.group_coordinator",
                "Group Coordinator Request failed: %s",
                errors.UnsupportedVersionError(),  # not retriable: aiokafka raises it
            ),
            "ERROR",
        ),
        (_record("aiokafka.cluster", "something else broke: %s", "x"), "ERROR"),
    ]
    for rec, want in cases:
        assert f.filter(rec) is True  # never dropped, only graded
        assert rec.levelname == want, rec.getMessage()
        assert rec.levelno == getattr(logging, want)


def test_installed_once_on_the_loggers_that_log_them(caplog):
    quiet_retried_errors()
    quiet_retried_errors()
    log = logging.getLogger("aiokafka.cluster")
    assert sum(isinstance(f, RetriedErrorsAsWarnings) for f in log.filters) == 1
    with caplog.at_level(logging.INFO):
        log.error("Topic %s not found in cluster metadata", "cw-x-changelog")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
