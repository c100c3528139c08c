"""POST /pulltransactions/v1/query: the organisation's statement (Daraja's
Pull Transactions API; PROTOCOLS.md 4.5/4.6): {"ShortCode","StartDate",
"EndDate" ("YYYY-MM-DD HH:MM:SS", East Africa Time),"OffSetValue"} ->
{"ResponseRefID","ResponseCode":"1000","ResponseMessage":"Success",
"Response":[[{"transactionId","trxDate":"2025-01-24T10:56:11+03:00",
"msisdn":2547.. (a number),"sender","transactiontype","billreference",
"amount":"2697.0","organizationname"}]]}: every book entry of that
shortcode in the window, oldest first, pull_page_size (1000) from
OffSetValue.  Synchronous: no initiator, the bearer token only."""
import secrets

from .common import digits, eat_iso, eat_parse

# transactiontype per book entry: Daraja's statement says
# "c2b-buy-goods-debit" for a till; the others are ours, in its style.
TYPES = {"c2b": "c2b-pay-bill-debit", "stk": "c2b-pay-bill-debit",
         "b2c": "b2c-business-payment", "reversal": "reversal"}


def row(st, e):
    t = TYPES[e["type"]]
    if e.get("transaction_type") in ("CustomerBuyGoodsOnline", "Buy Goods"):
        t = "c2b-buy-goods-debit"
    return {"transactionId": e["receipt"], "trxDate": eat_iso(e["time"]),
            "msisdn": int(e["msisdn"]) if e["msisdn"].isdigit() else e["msisdn"],
            "sender": "MPESA", "transactiontype": t, "billreference": e["bill_ref"],
            "amount": "%d.0" % e["amount"], "organizationname": st.args.org_name}


def query(h, req, j, spec):
    st = h.state
    with st.lock:
        st.stats["pull"] += 1
    h._slow()
    if not h._payload_ok(req, j):
        return
    sc = digits(j.get("ShortCode"))
    if sc not in st.shortcodes():
        return h._bad(req, "ShortCode")
    start, end = eat_parse(j.get("StartDate")), eat_parse(j.get("EndDate"))
    if start is None:
        return h._bad(req, "StartDate")
    if end is None or end < start:
        return h._bad(req, "EndDate")
    off = digits(j.get("OffSetValue") if j.get("OffSetValue") is not None else "0")
    if off is None:
        return h._bad(req, "OffSetValue")
    with st.lock:
        # the window is whole seconds: an entry at 10:00:00.4 is in "...10:00:00"
        rows = [row(st, e) for e in st.book.statement(sc, start, end + 0.999)]
        page = rows[int(off):int(off) + st.pull_page_size]
    h.logline("PULL  %s %s .. %s offset %s -> %d of %d" % (
        sc, j.get("StartDate"), j.get("EndDate"), off, len(page), len(rows)))
    h._answer(req, 200, {"ResponseRefID": "%s-%s-%s" % (secrets.token_hex(2), secrets.token_hex(2),
                                                         secrets.token_hex(10)),
                         "ResponseCode": "1000", "ResponseMessage": "Success",
                         "Response": [page]})
