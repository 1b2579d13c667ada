import logging

from cdp.logs import RateLimitFilter


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, None, None)


def test_repeated_messages_are_held_back_and_counted() -> None:
    f = RateLimitFilter(interval_s=0.05)
    assert f.filter(_record("Unable connect to node %s"))
    assert not any(f.filter(_record("Unable connect to node %s")) for _ in range(100))
    assert f.filter(_record("another message"))  # a different template passes
    import time

    time.sleep(0.06)
    r = _record("Unable connect to node %s")
    assert f.filter(r) and "100 more" in r.msg
