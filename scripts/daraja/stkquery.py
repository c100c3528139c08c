"""POST /mpesa/stkpushquery/v1/query: what became of an STK push
(PROTOCOLS.md 4.2).  A decided push that succeeded answers from the book:
its entry is made here if the callback thread has not made it yet.
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
        if contradict == "not_found":
            p = None
        if p is None:
            st.stats["queries_unknown"] += 1
        busy = st.query_error > 0
        if busy:
            st.query_error -= 1
            st.stats["query_errors"] += 1
    if busy:
        h.logline("QUERY %s -> HTTP 500 500.003.02 (told to fail)" % cid)
        return h._error(req, 500, "500.003.02", "System is busy. Please try again in few minutes.")
    if p is None:
        h.logline("QUERY %s -> unknown" % cid)
        return h._bad(req, "CheckoutRequestID")
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
