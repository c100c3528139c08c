"""Dual control in tests: a request several officials decide
(schema/85_approvals.sql).  Tests whose subject is not the approvals
themselves (a reversal, a payout) open the request the way members do and
then have two other officials approve it, by SMS as an official would:

    from approval_fixtures import open_code, approve
    code = open_code(env, url, "payment_reverse", contribution_id)
    approve(c, chair_phone, code)          # APPROVE <code> <PIN> by SMS
    approve(c, secretary_phone, code)
"""
import random
import urllib.parse

PIN = "4827"


def open_code(env, url, kind, ref_id):
    """The code of the open request for (kind, ref_id), or None."""
    rows = env.psql("SELECT code FROM approvals WHERE kind = '%s' AND ref_id = %s AND status IN ('pending', 'waiting')"
                    % (kind, ref_id), url)
    return rows[0][0] if rows else None


def sms(c, phone, text, msg_id=None):
    """One inbound SMS through Africa's Talking's route; the reply is in the
    outbox once this returns."""
    r = c.post("/sms/africastalking/inbound", urllib.parse.urlencode(
        {"from": phone, "to": "40404", "text": text, "id": msg_id or "m%x" % random.getrandbits(64),
         "date": "2026-11-25"}).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, (r.status, r.body)
    return r


def approve(c, phone, code, pin=PIN, word="APPROVE"):
    """An official decides a request by SMS: APPROVE/KUBALI/REJECT/KATAA <code> <PIN>."""
    return sms(c, phone, "%s %s %s" % (word, code, pin))


def vote_sql(env, url, user, code, vote="approve", at="now()"):
    """approval_vote() directly: the outcome row as a dict."""
    (row,) = env.psql("SELECT outcome, approval_id, status, approvals, rejections, required FROM "
                      "approval_vote(%s, '%s', '%s', 'sms', %s)" % (user, code, vote, at), url)
    return dict(zip(("outcome", "id", "status", "yes", "no", "need"), row))
