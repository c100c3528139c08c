"""POST /mpesa/b2c/v3/paymentrequest (and v1): business to customer
(PROTOCOLS.md 4.7).  The payment is carried out (a "b2c" book entry, out
of the Working account) when the request is accepted, before the Result
is posted: a Result that is lost, late or never asked for still leaves
the money paid, which Transaction Status then reports.  The emulator
does not dedupe OriginatorConversationID: a request sent twice is paid
twice (the worst case; tests count book entries to see "paid once")."""
from . import orgapi
from .book import CHARGES, UTILITY, WORKING
from .common import PHONE_RE, RESULT_DESC, digits, eat_dotted, whole_amount

COMMANDS = ("BusinessPayment", "SalaryPayment", "PromotionPayment")


def _check(h, req, j, v3):
    st = h.state
    oc = j.get("OriginatorConversationID")
    if v3 and (not isinstance(oc, str) or not oc or len(oc) > 100):
        return h._bad(req, "OriginatorConversationID")
    if not orgapi.check_common(h, req, j, "InitiatorName", COMMANDS):
        return None
    amount = whole_amount(j.get("Amount"))
    if amount is None or amount < 1:
        return h._bad(req, "Amount")
    if digits(j.get("PartyA")) not in st.shortcodes():
        return h._bad(req, "PartyA")
    phone = digits(j.get("PartyB"))
    if not phone or not PHONE_RE.match(phone):
        return h._bad(req, "PartyB")
    remarks = j.get("Remarks")
    if not isinstance(remarks, str) or not (1 <= len(remarks) <= 100):
        return h._bad(req, "Remarks")
    occasion = j.get("Occasion")
    if occasion is not None and (not isinstance(occasion, str) or len(occasion) > 100):
        return h._bad(req, "Occasion")
    return amount, digits(j.get("PartyA")), phone


def _decide(h, j, spec, amount):
    """(code, desc): 0 when it may be paid."""
    st = h.state
    f = orgapi.forced(spec)
    if f:
        return f
    code = orgapi.initiator_code(h, j, "InitiatorName")
    if code == 0 and amount < st.args.b2c_min:
        code = 2
    elif code == 0 and amount > st.args.b2c_max:
        code = 3
    elif code == 0 and st.book.balances()[WORKING] < amount:
        code = 1
    return code, RESULT_DESC[code]


def payment(h, req, j, spec):
    st = h.state
    with st.lock:
        st.stats["b2c"] += 1
    h._slow()
    if not h._payload_ok(req, j):
        return
    v3 = "/v3/" in h.path
    f = _check(h, req, j, v3)
    if f is None:
        return
    amount, party_a, phone = f
    oc, conv = orgapi.ids(j)
    strings = spec.get("strings")
    with st.lock:
        code, desc = _decide(h, j, spec, amount) if spec.get("result") != "timeout" else (None, "")
        if code == 0:
            receipt = st.new_mpesa_id()
            e = st.book.add("b2c", amount, party_a, receipt, msisdn=phone, name=st.name_of(phone),
                            bill_ref=j.get("Occasion") or "", originator_id=oc,
                            conversation_id=conv, command_id=j["CommandID"],
                            remarks=j["Remarks"], api_version="v3" if v3 else "v1")
            bal = st.book.balances()
            body = orgapi.result(0, desc, oc, conv, receipt, [
                ("TransactionAmount", amount), ("TransactionReceipt", receipt),
                ("B2CRecipientIsRegisteredCustomer", "Y"),
                ("B2CChargesPaidAccountAvailableFunds", bal[CHARGES]),
                ("ReceiverPartyPublicName", "%s - %s" % (phone, e["name"])),
                ("TransactionCompletedDateTime", eat_dotted(e["time"])),
                ("B2CUtilityAccountAvailableFunds", bal[UTILITY]),
                ("B2CWorkingAccountAvailableFunds", bal[WORKING])],
                ref=("QueueTimeoutURL", j["QueueTimeOutURL"]), strings=strings)
        elif code is not None:
            body = orgapi.result(code, desc, oc, conv, st.placeholder_id(),
                                 ref=("QueueTimeoutURL", j["QueueTimeOutURL"]), strings=strings)
        else:
            body = None
    h.logline("B2C   %s KES %d to %s -> %s%s (result %s)" % (
        oc, amount, phone, conv, "" if code is None else " code %s" % code,
        spec.get("result") or "normal"))
    # the Result is on its way before the answer: a hung answer ("hang":
    # "after") still leaves a payment made and its Result posted
    orgapi.deliver(h, "b2c", spec, j, body, oc, conv)
    orgapi.ack(h, req, oc, conv)
