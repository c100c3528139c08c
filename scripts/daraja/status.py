"""POST /mpesa/transactionstatus/v1/query (PROTOCOLS.md 4.8): answers
from the book, by TransactionID (the receipt) or, when no TransactionID
is given, by OriginatorConversationID (the one a B2C request carried).
The Result goes to ResultURL; its top-level OriginatorConversationID and
ConversationID are the query's (the ConversationID is the one the
acknowledgement gave), the parameters name the transaction's own.

Failure modes (spec "status"): contradict "amount" (Amount + 1),
"account" (another TransactionReason), "shortcode" (another shortcode in
the organisation's party name), "failed" (TransactionStatus "Failed"),
"not_found" (2032, as if it never happened); plus result_code and every
delivery mode of orgapi.deliver."""
from . import orgapi
from .common import RESULT_DESC, digits

REASON = {"c2b": "Pay Bill", "stk": "Pay Bill Online", "reversal": "Reversal",
          "BusinessPayment": "Business Payment to Customer via API",
          "SalaryPayment": "Salary Payment via API",
          "PromotionPayment": "Promotion Payment via API"}


def _check(h, req, j):
    if not orgapi.check_common(h, req, j, "Initiator", ("TransactionStatusQuery",)):
        return False
    txid, oc = j.get("TransactionID"), j.get("OriginatorConversationID")
    if txid not in (None, "") and not isinstance(txid, str):
        return h._bad(req, "TransactionID") or False
    if not txid and not (isinstance(oc, str) and oc):
        return h._bad(req, "TransactionID") or False
    if digits(j.get("PartyA")) not in h.state.shortcodes():
        return h._bad(req, "PartyA") or False
    if digits(j.get("IdentifierType")) not in ("1", "2", "4"):
        return h._bad(req, "IdentifierType") or False
    return True


def _lookup(st, j):
    txid = j.get("TransactionID")
    if txid:
        return st.book.find(txid)
    found = st.book.by_originator(j.get("OriginatorConversationID"))
    return found[0] if found else None


def _params(st, e, contradict):
    """The ResultParameters for book entry e, as Daraja names them."""
    org = "%s - %s" % (e["shortcode"], st.args.org_name)
    if contradict == "shortcode":
        org = "%s - %s" % ("9" + e["shortcode"][1:], st.args.org_name)
    person = "%s - %s" % (e["msisdn"], e["name"] or st.name_of(e["msisdn"]))
    out_of_org = e["type"] == "b2c" or (e["type"] == "reversal" and e.get("reverses_type") != "b2c")
    debit, credit = (org, person) if out_of_org else (person, org)
    # TransactionReason carries a C2B payment's BillRefNumber (and an STK
    # push's AccountReference): what Daraja shows there is not documented
    # for C2B; the emulator puts the account the customer typed, so a
    # verifier can compare the account it was told in the confirmation.
    reason = e["bill_ref"] if e["type"] in ("c2b", "stk") else None
    if contradict == "account":
        reason = "X" + (reason or "") + "9"
    amount = e["amount"] + (1 if contradict == "amount" else 0)
    status = "Failed" if contradict == "failed" else e["status"]
    return [("DebitPartyName", debit), ("CreditPartyName", credit),
            ("OriginatorConversationID", e["originator_id"] or ""),
            ("InitiatedTime", int(e["trx_date"])), ("CreditPartyCharges", None),
            ("DebitAccountType", "Working Account" if e["type"] == "b2c" else
             "MMF Account For Customer"),
            ("TransactionReason", reason),
            ("ReasonType", REASON.get(e.get("command_id") or e["type"], e["type"])),
            ("TransactionStatus", status), ("FinalisedTime", int(e["trx_date"])),
            ("Amount", amount), ("ConversationID", e["conversation_id"] or ""),
            ("ReceiptNo", e["receipt"])]


def query(h, req, j, spec):
    st = h.state
    with st.lock:
        st.stats["status"] += 1
    h._slow()
    if not h._payload_ok(req, j) or not _check(h, req, j):
        return
    oc, conv = orgapi.ids(j)
    contradict, strings = spec.get("contradict"), spec.get("strings")
    ref = ("Occasion", j.get("Occasion") or "")
    with st.lock:
        e = _lookup(st, j)
        f = orgapi.forced(spec) or ((2001, RESULT_DESC[2001])
                                    if orgapi.initiator_code(h, j, "Initiator") else None)
        if f is None and (e is None or contradict == "not_found"):
            f = (2032, RESULT_DESC[2032])
        if f:
            body = orgapi.result(f[0], f[1], oc, conv, j.get("TransactionID") or st.placeholder_id(),
                                 ref=ref, strings=strings)
        else:
            body = orgapi.result(0, RESULT_DESC[0], oc, conv, e["receipt"],
                                 _params(st, e, contradict), ref=ref, strings=strings)
    h.logline("STATUS %s -> %s%s (result %s)" % (
        j.get("TransactionID") or "originator " + str(j.get("OriginatorConversationID")),
        "code %s" % f[0] if f else "found %s" % e["receipt"],
        " contradicting: " + contradict if contradict else "", spec.get("result") or "normal"))
    orgapi.deliver(h, "status", spec, j, body, oc, conv)
    orgapi.ack(h, req, oc, conv)
