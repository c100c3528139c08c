"""POST /mpesa/stkpushquery/v1/query: what became of an STK push
(PROTOCOLS.md 4.2).  A decided push that succeeded answers from the book:
its entry is made here if the callback thread has not made it yet.  A
CheckoutRequestID the emulator never pushed is answered from the book
too: an "stk" entry put there with POST /_book and that conversation_id
is a payment that succeeded (ResultCode 0), so a bench or test can post
callbacks for checkouts it made up and still have them confirmed.
Failure modes (spec "stk_query"): contradict "failed" (a paid push is
reported cancelled, 1032), "not_found" (400 Invalid CheckoutRequestID),
"amount"/"account" have no field here and are ignored."""
import time

from . import stk
from .common import QUERY_ACCEPTED, RESULT_DESC


def query(h, req, j, spec):
    st = h.state
    with st.lock:
        st.stats["queries"] += 1
    h._slow()
    if not h._payload_ok(req, j) or not stk.check_express(h, req, j):
        return
    cid = j.get("CheckoutRequestID")
    contradict = spec.get("contradict")
    with st.lock:
        p = st.pushes.get(cid) if isinstance(cid, str) else None
        booked = st.book.stk_by_checkout(cid) if p is None and isinstance(cid, str) else None
        if contradict == "not_found":
            p = booked = None
        if p is None and booked is None:
            st.stats["queries_unknown"] += 1
        busy = st.query_error > 0
        if busy:
            st.query_error -= 1
            st.stats["query_errors"] += 1
    if busy:
        h.logline("QUERY %s -> HTTP 500 500.003.02 (told to fail)" % cid)
        return h._error(req, 500, "500.003.02", "System is busy. Please try again in few minutes.")
    if p is None and booked is None:
        h.logline("QUERY %s -> unknown" % cid)
        return h._bad(req, "CheckoutRequestID")
    if p is None:
        return _answer_booked(h, req, cid, booked, contradict)
    with st.lock:
        decided = p["decided_at"] is not None and p["decided_at"] <= time.monotonic()
        st.stats["queries_decided" if decided else "queries_pending"] += 1
        if decided:
            stk.settle(st, p)
    if not decided:
        h.logline("QUERY %s -> being processed" % cid)
        return h._error(req, 500, "500.001.1001", "The transaction is being processed")
    code, desc = p["result_code"], p["result_desc"]
    if contradict == "failed":
        code, desc = 1032, RESULT_DESC[1032]
    h.logline("QUERY %s -> result %d %s%s" % (cid, code, desc,
                                             " (contradicting)" if contradict else ""))
    h._answer(req, 200, {
        "ResponseCode": "0", "ResponseDescription": QUERY_ACCEPTED,
        "MerchantRequestID": p["merchant_request_id"], "CheckoutRequestID": cid,
        "ResultCode": str(code), "ResultDesc": desc})


def _answer_booked(h, req, cid, e, contradict):
    """A checkout known only from its book entry (no push): paid, decided."""
    with h.state.lock:
        h.state.stats["queries_decided"] += 1
    code = 1032 if contradict == "failed" else 0
    h.logline("QUERY %s -> result %d from the book (%s)%s" % (
        cid, code, e["receipt"], " (contradicting)" if contradict else ""))
    h._answer(req, 200, {
        "ResponseCode": "0", "ResponseDescription": QUERY_ACCEPTED,
        "MerchantRequestID": e.get("merchant_request_id") or "", "CheckoutRequestID": cid,
        "ResultCode": str(code), "ResultDesc": RESULT_DESC[code]})
