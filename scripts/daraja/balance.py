"""POST /mpesa/accountbalance/v1/query (PROTOCOLS.md 4.9): the balances
that follow from the book, posted to ResultURL as the AccountBalance
parameter: "Working Account|KES|<available>|<current>|0.00|0.00&Utility
Account|KES|...&Charges Paid Account|KES|..." (amounts with two
decimals), plus BOCompletedTime."""
import time

from . import orgapi
from .book import CHARGES, UTILITY, WORKING
from .common import RESULT_DESC, digits, eat_stamp


def account_balance_text(bal):
    return "&".join("%s|KES|%d.00|%d.00|0.00|0.00" % (name, bal[name], bal[name])
                    for name in (WORKING, UTILITY, CHARGES))


def query(h, req, j, spec):
    st = h.state
    with st.lock:
        st.stats["balance"] += 1
    h._slow()
    if not h._payload_ok(req, j):
        return
    if not orgapi.check_common(h, req, j, "Initiator", ("AccountBalance",)):
        return
    if digits(j.get("PartyA")) not in st.shortcodes():
        return h._bad(req, "PartyA")
    if digits(j.get("IdentifierType")) not in ("1", "2", "4"):
        return h._bad(req, "IdentifierType")
    oc, conv = orgapi.ids(j)
    ref = ("QueueTimeoutURL", j["QueueTimeOutURL"])
    with st.lock:
        f = orgapi.forced(spec) or ((2001, RESULT_DESC[2001])
                                    if orgapi.initiator_code(h, j, "Initiator") else None)
        text = account_balance_text(st.book.balances())
        if f:
            body = orgapi.result(f[0], f[1], oc, conv, st.placeholder_id(), ref=ref,
                                 strings=spec.get("strings"))
        else:
            body = orgapi.result(0, RESULT_DESC[0], oc, conv, st.placeholder_id(), [
                ("AccountBalance", text), ("BOCompletedTime", int(eat_stamp(time.time())))],
                ref=ref, strings=spec.get("strings"))
    h.logline("BALANCE %s -> %s" % (conv, "code %s" % f[0] if f else text))
    orgapi.deliver(h, "balance", spec, j, body, oc, conv)
    orgapi.ack(h, req, oc, conv)
