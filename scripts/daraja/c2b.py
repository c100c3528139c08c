"""C2B: POST /mpesa/c2b/v{1,2}/registerurl (Daraja) and POST /_c2b (a
customer pays the paybill: a test control), PROTOCOLS.md 4.5.  A payment
that passes validation is a book entry ("c2b") before its confirmation is
posted, so a lost confirmation still shows in Transaction Status and the
statement."""
import hashlib
import json
import re
import secrets
import time

from .book import UTILITY
from .common import FORBIDDEN_URL_WORDS, digits, eat_stamp, jdump, url_ok

PAY_KEYS = {"amount", "bill_ref", "first_name", "middle_name", "last_name", "msisdn",
            "trans_id", "twice", "shortcode", "trans_type", "msisdn_format", "timeout_s",
            "invoice_number", "lose_confirmation"}


def registerurl(h, req, j, spec):
    st = h.state
    h._slow()
    if not h._payload_ok(req, j):
        return
    sc = digits(j.get("ShortCode"))
    if not sc or not re.fullmatch(r"[0-9]{5,7}", sc):
        return h._bad(req, "ShortCode")
    if j.get("ResponseType") not in ("Completed", "Cancelled"):
        return h._bad(req, "ResponseType")
    for field in ("ConfirmationURL", "ValidationURL"):
        u = j.get(field)
        if field == "ValidationURL" and u in (None, ""):
            continue
        if not url_ok(u) or any(w in u.lower() for w in FORBIDDEN_URL_WORDS):
            return h._bad(req, field)
    version = "v2" if "/v2/" in h.path else "v1"
    with st.lock:
        st.c2b_urls[sc] = {"ShortCode": sc, "ResponseType": j["ResponseType"],
                           "ConfirmationURL": j["ConfirmationURL"],
                           "ValidationURL": j.get("ValidationURL") or None,
                           "version": version, "time": time.time()}
        st.c2b_last = sc
        st.stats["c2b_registrations"] += 1
    h.logline("C2B   registered %s (%s, %s): confirmation %s validation %s" % (
        sc, version, j["ResponseType"], j["ConfirmationURL"], j.get("ValidationURL") or "-"))
    h._answer(req, 200, {
        "OriginatorCoversationID": "%s-%s-%s" % (secrets.token_hex(2), secrets.token_hex(2),
                                                 secrets.token_hex(10)),
        "ResponseCode": "0", "ResponseDescription": "success"})


def shown_msisdn(msisdn, fmt):
    if fmt == "hashed":
        return hashlib.sha256(msisdn.encode()).hexdigest()
    if fmt == "plain":
        return msisdn
    return "%s ***** %s" % (msisdn[:4], msisdn[-3:])


def _validate(h, reg, body, tid, amount, timeout):
    """Calls the ValidationURL; returns the record of it (accepted: bool)."""
    st = h.state
    raw = jdump(body)
    status, answer = h.poster.post(reg["ValidationURL"], raw, timeout=timeout)
    verdict = None
    if status == 200:
        try:
            a = json.loads(answer)
            verdict = str(a.get("ResultCode")) == "0" if isinstance(a, dict) and "ResultCode" in a else None
        except ValueError:
            verdict = None
    how = "answer"
    if verdict is None:  # unreachable / unusable: the registered default
        verdict = reg["ResponseType"] == "Completed"
        how = "ResponseType %s" % reg["ResponseType"]
    v = {"url": reg["ValidationURL"], "body": body, "raw": raw, "http": status,
         "answer": answer, "accepted": verdict, "decided_by": how}
    with st.lock:
        st.stats["c2b_validations"] += 1
        st.callbacks.append({"kind": "c2b_validation", "url": v["url"], "body": body,
                             "raw": raw, "http": status, "answer": answer,
                             "time": time.time(), "trans_id": tid, "copy": 1})
        if not verdict:
            st.stats["c2b_rejected"] += 1
    h.logline("C2B   validation %s KES %d ref %s -> %s %s => %s" % (
        tid, amount, body["BillRefNumber"], status, (answer or "")[:120],
        "accepted" if verdict else "REJECTED") + (" (by %s)" % how if how != "answer" else ""))
    return v


def pay(h):
    st = h.state
    try:
        c = json.loads(h._body() or b"{}")
        assert isinstance(c, dict)
    except (ValueError, AssertionError):
        return h._json(400, {"error": "_c2b wants a JSON object"})
    bad = sorted(set(c) - PAY_KEYS)
    if bad:
        return h._json(400, {"error": "unknown _c2b keys: %s" % ", ".join(bad)})
    try:
        amount = int(str(c.get("amount")))
        assert amount >= 1
    except (ValueError, TypeError, AssertionError):
        return h._json(400, {"error": "amount must be a whole number >= 1"})
    with st.lock:
        sc = str(c.get("shortcode") or st.c2b_last or "")
        reg = st.c2b_urls.get(sc)
        validate = st.c2b_validation
        fmt = c.get("msisdn_format") or st.msisdn_format
    if reg is None:
        return h._json(409, {"error": "no C2B URLs registered for shortcode %r" % sc})
    spec = st.take_spec("c2b")
    lose = bool(c.get("lose_confirmation")) or spec.get("confirmation") == "lost"
    with st.lock:
        now = time.time()
        tid = str(c.get("trans_id") or st.new_mpesa_id(now))
        st.ids.add(tid)
        st.stats["c2b_payments"] += 1
    msisdn = str(c.get("msisdn") or "254708374149")
    first = str(c.get("first_name") if c.get("first_name") is not None else "John")
    body = {"TransactionType": c.get("trans_type") or "Pay Bill", "TransID": tid,
            "TransTime": eat_stamp(now), "TransAmount": str(amount),
            "BusinessShortCode": sc, "BillRefNumber": str(c.get("bill_ref") or ""),
            "InvoiceNumber": str(c.get("invoice_number") or ""), "OrgAccountBalance": "",
            "ThirdPartyTransID": "", "MSISDN": shown_msisdn(msisdn, fmt),
            "FirstName": first, "MiddleName": str(c.get("middle_name") or ""),
            "LastName": str(c.get("last_name") or "")}
    timeout = float(c.get("timeout_s") or 8)
    out = {"trans_id": tid, "accepted": True, "validation": None,
           "confirmation": None, "confirmations": [], "confirmation_lost": lose}
    if validate and reg["ValidationURL"]:
        out["validation"] = _validate(h, reg, body, tid, amount, timeout)
        if not out["validation"]["accepted"]:
            out["accepted"] = False
            return h._json(200, out)
    name = " ".join(x for x in (first, body["MiddleName"], body["LastName"]) if x)
    with st.lock:
        entry = st.book.add("c2b", amount, sc, tid, msisdn=msisdn, name=name,
                            bill_ref=body["BillRefNumber"], t=now, source="c2b",
                            trans_type=body["TransactionType"], confirmation_posted=not lose)
        body["OrgAccountBalance"] = "%d.00" % st.book.balances()[UTILITY]
        if lose:
            st.stats["c2b_confirmations_lost"] += 1
    out["entry"] = dict(entry)
    if lose:
        h.logline("C2B   payment %s KES %d ref %s: confirmation LOST (told to)" % (
            tid, amount, body["BillRefNumber"]))
        return h._json(200, out)
    _confirm(h, reg, body, tid, amount, 2 if c.get("twice") else 1, timeout, out)
    out["confirmation"] = out["confirmations"][0]
    h._json(200, out)


def _confirm(h, reg, body, tid, amount, copies, timeout, out):
    st = h.state
    raw = jdump(body)
    for copy in range(1, copies + 1):
        status, answer = h.poster.post(reg["ConfirmationURL"], raw, timeout=timeout)
        conf = {"url": reg["ConfirmationURL"], "body": body, "raw": raw, "http": status,
                "answer": answer}
        out["confirmations"].append(conf)
        with st.lock:
            st.stats["c2b_confirmations"] += 1
            st.stats["callbacks_posted" if isinstance(status, int) else "callback_errors"] += 1
            st.callbacks.append({"kind": "c2b_confirmation", "url": conf["url"], "body": body,
                                 "raw": raw, "http": status, "answer": answer,
                                 "time": time.time(), "trans_id": tid, "copy": copy})
        h.logline("C2B   confirmation %s KES %d ref %s from %s%s -> %s %s" % (
            tid, amount, body["BillRefNumber"], body["MSISDN"], " (copy 2)" if copy == 2 else "",
            status, (answer or "")[:120]))
