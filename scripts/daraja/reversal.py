"""POST /mpesa/reversal/v1/request (PROTOCOLS.md 4.9): reverses a book
entry (an STK or C2B payment, or a B2C payment) by its receipt; the
reversal is a "reversal" book entry, so the money leaves the balance the
original went into, and the original's TransactionStatus becomes
"Reversed".  Result codes of ours where Daraja documents none: R000001
(already reversed), R000002 (unknown receipt, or an Amount other than
the original's)."""
from . import orgapi
from .book import UTILITY, WORKING
from .common import RESULT_DESC, digits, eat_stamp, whole_amount


def _check(h, req, j):
    if not orgapi.check_common(h, req, j, "Initiator", ("TransactionReversal",)):
        return None
    if not isinstance(j.get("TransactionID"), str) or not j["TransactionID"]:
        return h._bad(req, "TransactionID")
    amount = whole_amount(j.get("Amount"))
    if amount is None or amount < 1:
        return h._bad(req, "Amount")
    if digits(j.get("ReceiverParty")) not in h.state.shortcodes():
        return h._bad(req, "ReceiverParty")
    if digits(j.get("RecieverIdentifierType")) not in ("1", "2", "4", "11"):  # sic
        return h._bad(req, "RecieverIdentifierType")
    return amount


def _decide(h, j, spec, orig, amount):
    st = h.state
    f = orgapi.forced(spec)
    if f:
        return f
    if orgapi.initiator_code(h, j, "Initiator"):
        return 2001, RESULT_DESC[2001]
    if orig is None or orig["type"] == "reversal" or orig["amount"] != amount:
        return "R000002", RESULT_DESC["R000002"] if orig is None or orig["amount"] == amount \
            else "The Amount does not match the original transaction."
    if orig["reversed_by"]:
        return "R000001", RESULT_DESC["R000001"]
    acct = WORKING if orig["type"] == "b2c" else UTILITY
    if orig["type"] != "b2c" and st.book.balances()[acct] < amount:
        return 1, RESULT_DESC[1]
    return 0, RESULT_DESC[0]


def request(h, req, j, spec):
    st = h.state
    with st.lock:
        st.stats["reversal"] += 1
    h._slow()
    if not h._payload_ok(req, j):
        return
    amount = _check(h, req, j)
    if amount is None:
        return
    oc, conv = orgapi.ids(j)
    ref = ("QueueTimeoutURL", j["QueueTimeOutURL"])
    with st.lock:
        orig = st.book.find(j["TransactionID"])
        code, desc = _decide(h, j, spec, orig, amount) if spec.get("result") != "timeout" \
            else (None, "")
        if code == 0:
            e = st.book.add("reversal", amount, orig["shortcode"], st.new_mpesa_id(),
                            msisdn=orig["msisdn"], name=orig["name"], bill_ref=orig["bill_ref"],
                            originator_id=oc, conversation_id=conv, reverses=orig["receipt"],
                            reverses_type=orig["type"], remarks=j.get("Remarks"))
            acct = WORKING if orig["type"] == "b2c" else UTILITY
            bal = st.book.balances()[acct]
            org = "%s - %s" % (orig["shortcode"], st.args.org_name)
            person = "%s - %s" % (orig["msisdn"], orig["name"] or st.name_of(orig["msisdn"]))
            body = orgapi.result(0, desc, oc, conv, e["receipt"], [
                ("DebitAccountBalance", "%s|KES|%d.00|%d.00|0.00|0.00" % (acct, bal, bal)),
                ("Amount", amount), ("TransCompletedTime", int(eat_stamp(e["time"]))),
                ("OriginalTransactionID", orig["receipt"]), ("Charge", 0),
                ("CreditPartyPublicName", org if orig["type"] == "b2c" else person),
                ("DebitPartyPublicName", person if orig["type"] == "b2c" else org)],
                ref=ref, strings=spec.get("strings"))
        elif code is not None:
            body = orgapi.result(code, desc, oc, conv, st.placeholder_id(), ref=ref,
                                 strings=spec.get("strings"))
        else:
            body = None
    h.logline("REVERSAL %s KES %d -> %s%s" % (j["TransactionID"], amount, conv,
                                              "" if code is None else " code %s" % code))
    orgapi.deliver(h, "reversal", spec, j, body, oc, conv)
    orgapi.ack(h, req, oc, conv)
