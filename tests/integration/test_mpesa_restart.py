"""A daemon killed (SIGKILL) between the member's USSD END and the STK push
loses nothing: the request is a row due at push_at, and the push job of
whichever daemon runs next finds it.  That daemon pushes it when it is due,
not before (the member reads the END screen first), or, when it comes back
only after the push window (five minutes), closes it with the SMS that
tells the member no payment started.  The periodic pass ([mpesa]
query_every_s) is set far away, so only the push job's own schedule and
its start-up pass can do either in time."""
import signal
import time

import test_mpesa as tm
from notify_fixtures import outbox_texts

DELAY_MS = 3000


def _killed_after_end(env, name):
    """A member contributes on daemon A, which is killed right after the
    END screen, before its push is due.  Returns what the next daemon needs."""
    url, daraja, e = tm.setup(env, name, {"CHAMAD_MPESA_PUSH_DELAY_MS": str(DELAY_MS),
                                          "CHAMAD_MPESA_QUERY_EVERY_S": "600"})
    a = tm.start(env, e)
    phone, uid, cid = tm.seed(env, url)
    screen = tm.contribute(a, phone, 500)
    a.signal(signal.SIGKILL)
    a.proc.wait()
    assert screen.startswith("END Check your phone for the M-Pesa prompt"), screen
    # A died with the request recorded and not pushed
    assert env.psql("SELECT status, push_attempts, claimed_by IS NULL, push_at > now() FROM mpesa_requests",
                    url) == [["created", "0", "t", "t"]]
    assert not _pushes(daraja)
    return url, daraja, e, phone, uid


def _pushes(daraja):
    return [r for r in daraja.requests() if r.get("path", "").endswith("/stkpush/v1/processrequest")]


def test_mpesa_restart_next_daemon_pushes_when_due(env):
    url, daraja, e, phone, uid = _killed_after_end(env, "restart_push")
    (due,), = env.psql("SELECT extract(epoch FROM push_at) FROM mpesa_requests", url)[0:1]
    b = tm.start(env, e)
    assert tm.wait_status(env, url, ["confirmed"], timeout=15) == ["confirmed"]
    pushes = _pushes(daraja)
    assert len(pushes) == 1, pushes
    # B waited for push_at (the END screen first), and pushed at it, not at
    # a periodic pass minutes later
    assert pushes[0]["time"] >= float(due) - 0.05, (pushes[0]["time"], due)
    assert pushes[0]["time"] < float(due) + 3, (pushes[0]["time"], due)
    body = pushes[0].get("body") or pushes[0].get("json")
    assert body["Amount"] == 500 and str(body["PhoneNumber"]) == phone[1:], body
    (claimed_by, attempts, settled), = env.psql("SELECT claimed_by, push_attempts, settled_by FROM mpesa_requests",
                                                url)
    assert claimed_by.split(":")[1] == str(b.proc.pid) and attempts == "1" and settled == "callback", claimed_by
    assert tm.balance(env, url, uid) == 50000
    assert env.psql("SELECT count(*) FROM notifications WHERE kind = 'receipt'", url) == [["1"]]
    tm.verify(env, url)
    b.stop()


def test_mpesa_restart_past_window_closed_with_sms(env):
    url, daraja, e, phone, uid = _killed_after_end(env, "restart_close")
    # every daemon stays down for six minutes: the push window passes
    env.psql("UPDATE mpesa_requests SET created_at = created_at - interval '6 minutes', "
             "push_at = push_at - interval '6 minutes'", url)
    b = tm.start(env, e)
    assert tm.wait_status(env, url, ["push_failed"], timeout=10) == ["push_failed"]
    assert env.psql("SELECT result_desc, push_attempts FROM mpesa_requests", url) == \
        [["never pushed (no daemon could)", "0"]]
    assert env.psql("SELECT recipient FROM notifications WHERE kind = 'mpesa_failed'", url) == [[phone]]
    assert outbox_texts(env, url, "kind = 'mpesa_failed'") == \
        ["ChamaSmart: we could not start the M-Pesa payment. Please try again later."]
    time.sleep(DELAY_MS / 1000.0)
    # never pushed late: the member was told no payment started
    assert not _pushes(daraja)
    assert env.psql("SELECT count(*) FROM contributions", url) == [["0"]] and tm.balance(env, url, uid) == 0
    tm.verify(env, url)
    b.stop()
