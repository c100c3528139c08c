"""The test controls that read the state (GET /_requests, /_callbacks,
/_pushes, /_stats, /_control, /_book; DELETE /_requests) and POST /_book,
which puts a transaction in the book that nobody was told about."""
import json
import random
import time

from .book import TYPES
from .common import eat_parse

BOOK_KEYS = {"type", "amount", "bill_ref", "msisdn", "name", "shortcode", "receipt", "time",
             "originator_id", "conversation_id", "trans_type", "merchant_request_id"}


def get_requests(h):
    with h.state.lock:
        h._json(200, list(h.state.requests))


def get_callbacks(h):
    with h.state.lock:
        h._json(200, list(h.state.callbacks))


def push_view(p):
    v = {k: p[k] for k in ("checkout_request_id", "merchant_request_id", "amount", "phone",
                           "party_a", "party_b", "transaction_type", "account_reference",
                           "transaction_desc", "callback_url", "result_code", "result_desc",
                           "receipt", "transaction_date", "callback_mode", "time",
                           "callbacks_posted", "answer_lost")}
    v["decided"] = p["decided_at"] is not None and p["decided_at"] <= time.monotonic()
    return v


def get_pushes(h):
    st = h.state
    with st.lock:
        h._json(200, [push_view(st.pushes[i]) for i in st.push_order])


def get_stats(h):
    st = h.state
    with st.lock:
        s = dict(st.stats)
        s["uptime_s"] = round(time.time() - st.started, 3)
        h._json(200, s)


def get_control(h):
    with h.state.lock:
        h._json(200, h.state.control_view())


def get_book(h):
    st = h.state
    with st.lock:
        h._json(200, {"entries": st.book.view(), "balances": st.book.balances(),
                      "opening": dict(st.book.opening)})


def delete_requests(h):
    st = h.state
    with st.lock:
        n = len(st.requests)
        st.requests.clear()
        st.callbacks.clear()
    h._json(200, {"deleted": n})


def book_add(h):
    """POST /_book {"amount" (required), "type" ("c2b"), "bill_ref", "msisdn",
    "name", "shortcode" (--shortcode; --b2c-shortcode for "b2c"), "receipt"
    (fresh), "time" (epoch seconds or "YYYY-MM-DD HH:MM:SS" EAT; now),
    "originator_id", "conversation_id", "trans_type", "merchant_request_id"
    (stk)}: a money movement nobody posted anywhere.  An "stk" entry's
    conversation_id is its CheckoutRequestID: the STK query answers it as
    paid (stkquery.py).  Answers the entry."""
    st = h.state
    try:
        c = json.loads(h._body() or b"{}")
        assert isinstance(c, dict)
    except (ValueError, AssertionError):
        return h._json(400, {"error": "_book wants a JSON object"})
    bad = sorted(set(c) - BOOK_KEYS)
    if bad:
        return h._json(400, {"error": "unknown _book keys: %s" % ", ".join(bad)})
    typ = c.get("type") or "c2b"
    if typ not in TYPES or typ == "reversal":
        return h._json(400, {"error": "type: stk, c2b or b2c"})
    try:
        amount = int(str(c.get("amount")))
        assert amount >= 1
    except (ValueError, TypeError, AssertionError):
        return h._json(400, {"error": "amount must be a whole number >= 1"})
    t = c.get("time")
    if isinstance(t, str):
        t = eat_parse(t)
        if t is None:
            return h._json(400, {"error": "time: epoch seconds or YYYY-MM-DD HH:MM:SS"})
    extra = {}
    if typ == "stk":
        extra["merchant_request_id"] = str(c.get("merchant_request_id") or "%d-%d-1" % (
            random.randint(1000, 99999), random.randint(10000000, 99999999)))
    with st.lock:
        sc = str(c.get("shortcode") or (st.args.b2c_shortcode if typ == "b2c" else st.args.shortcode))
        receipt = str(c.get("receipt") or st.new_mpesa_id(t))
        st.ids.add(receipt)
        msisdn = str(c.get("msisdn") or "254708374149")
        e = st.book.add(typ, amount, sc, receipt, msisdn=msisdn,
                        name=c.get("name") or st.name_of(msisdn), bill_ref=c.get("bill_ref") or "",
                        originator_id=c.get("originator_id"),
                        conversation_id=c.get("conversation_id"), t=t, source="injected",
                        trans_type=c.get("trans_type") or "Pay Bill", confirmation_posted=False,
                        **extra)
    h.logline("BOOK  injected %s %s KES %d ref %s" % (typ, receipt, amount, e["bill_ref"]))
    h._json(200, dict(e))
