"""POST /mpesa/stkpush/v1/processrequest (M-Pesa Express) and the STK
callback it posts later (PROTOCOLS.md 4.2, 4.3).  A push that succeeds
becomes a book entry ("stk") when its outcome is decided."""
import base64
import json
import random
import re
import time

from .common import ACCEPTED, EAT, ERRMSG, PHONE_RE, RESULT_DESC, digits, eat_stamp, jdump, \
    url_ok, whole_amount


def password_ok(st, shortcode, password, timestamp):
    want = base64.b64encode(("%s%s%s" % (shortcode, st.args.passkey, timestamp))
                            .encode()).decode()
    return password == want


def timestamp_ok(ts):
    if not isinstance(ts, str) or not re.fullmatch(r"[0-9]{14}", ts):
        return False
    try:
        time.strptime(ts, "%Y%m%d%H%M%S")
        return True
    except ValueError:
        return False


def check_express(h, req, j):
    """BusinessShortCode, Password, Timestamp: shared by push and query."""
    sc = str(h.state.args.shortcode)
    bsc = j.get("BusinessShortCode")
    if isinstance(bsc, bool) or not isinstance(bsc, (int, str)) or str(bsc) != sc:
        return h._bad(req, "BusinessShortCode") or False
    ts = j.get("Timestamp")
    if not isinstance(j.get("Password"), str) or not password_ok(h.state, sc, j.get("Password"), ts):
        return h._bad(req, "Password") or False
    if not timestamp_ok(ts):
        return h._bad(req, "Timestamp") or False
    return True


def _check_fields(h, req, j):
    """The push's own fields, in Daraja's order; (amount, phone, ...) or None."""
    tt = j.get("TransactionType")
    if tt not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
        return h._bad(req, "TransactionType")
    amount = whole_amount(j.get("Amount"))
    if amount is None or amount < 1:
        return h._bad(req, "Amount")
    phone_a = digits(j.get("PartyA"))
    if not phone_a or not PHONE_RE.match(phone_a):
        return h._bad(req, "PartyA")
    party_b = digits(j.get("PartyB"))
    if not party_b or not re.fullmatch(r"[0-9]{5,12}", party_b):
        return h._bad(req, "PartyB")
    phone = digits(j.get("PhoneNumber"))
    if not phone or not PHONE_RE.match(phone):
        return h._bad(req, "PhoneNumber")
    if not url_ok(j.get("CallBackURL")):
        return h._bad(req, "CallBackURL")
    ref = j.get("AccountReference")
    if not isinstance(ref, str) or not (1 <= len(ref) <= 12):
        return h._bad(req, "AccountReference")
    desc = j.get("TransactionDesc")
    if desc is not None and (not isinstance(desc, str) or len(desc) > 13):
        return h._bad(req, "TransactionDesc")
    return tt, amount, phone_a, party_b, phone, ref, desc


def _refusal(st, phone):
    """(http, errorCode, message) when push_error or lock_subscriber refuse it."""
    mono = time.monotonic()
    locked = st.lock_subscriber and any(
        p["phone"] == phone and (p["decided_at"] is None or p["decided_at"] > mono)
        for p in st.pushes.values())
    if locked:
        st.stats["push_errors"] += 1
        return 500, "500.001.1001", ERRMSG["500.001.1001"]
    if st.push_error > 0:
        st.push_error -= 1
        st.stats["push_errors"] += 1
        code = st.push_error_code
        return st.push_error_http, code, st.push_error_message or ERRMSG.get(code, "Internal Server Error")
    return None


def _outcome(st, phone, tt, party_b):
    """The push's result and callback mode, chosen now (counts down)."""
    sc = str(st.args.shortcode)
    if phone in st.number_result:
        code, rdesc = st.number_result[phone], None
    elif tt == "CustomerPayBillOnline" and party_b != sc:
        code, rdesc = 2028, None
    else:
        code, rdesc = st.result_code, st.result_desc
        if st.result_count > 0:
            st.result_count -= 1
            if st.result_count == 0:
                st.result_code, st.result_desc, st.result_count = st.args.result_code, None, -1
    mode = st.callback
    if st.callback_count > 0:
        st.callback_count -= 1
        if st.callback_count == 0:
            st.callback, st.callback_count = st.args.callback, -1
    return int(code), rdesc, mode


def push(h, req, j, spec):
    st = h.state
    with st.lock:
        st.stats["pushes"] += 1
        drop = st.drop > 0
        if drop:
            st.drop -= 1
            st.stats["dropped"] += 1
            req["http"] = "dropped"
    if drop:
        h.logline("DROPPED an STK push (no answer, nothing done)")
        return h._drop()
    h._slow()
    if not h._payload_ok(req, j) or not check_express(h, req, j):
        return
    f = _check_fields(h, req, j)
    if f is None:
        return
    tt, amount, phone_a, party_b, phone, ref, desc = f
    with st.lock:
        err = _refusal(st, phone)
    if err:
        h.logline("PUSH  %s KES %d ref %s -> REFUSED HTTP %d %s %s" % (
            phone, amount, ref, err[0], err[1], err[2]))
        return h._error(req, *err)
    now, mono = time.time(), time.monotonic()
    with st.lock:
        code, rdesc, mode = _outcome(st, phone, tt, party_b)
        delay = st.callback_delay_ms / 1000.0
        late = max(st.late_ms / 1000.0, delay)
        drop_after = st.drop_after_accept > 0
        if drop_after:
            st.drop_after_accept -= 1
            st.stats["dropped_after_accept"] += 1
        cid = "ws_CO_%s%s%09d" % (time.strftime("%d%m%Y%H%M%S", time.gmtime(now + EAT)),
                                  "%03d" % int((now % 1) * 1000), random.randint(0, 999999999))
        while cid in st.pushes:
            cid = cid[:-9] + "%09d" % random.randint(0, 999999999)
        p = {
            "checkout_request_id": cid,
            "merchant_request_id": "%d-%d-1" % (random.randint(1000, 99999),
                                                random.randint(10000000, 99999999)),
            "amount": amount, "phone": phone, "party_a": phone_a, "party_b": party_b,
            "transaction_type": tt, "account_reference": ref, "transaction_desc": desc,
            "callback_url": j["CallBackURL"], "result_code": code,
            "result_desc": rdesc or RESULT_DESC.get(code, "An error occurred."),
            "receipt": st.new_mpesa_id(now + delay) if code == 0 else None,
            "transaction_date": eat_stamp(now + delay), "settle_time": now + delay,
            "callback_mode": mode, "time": now,
            "decided_at": None if mode == "pending" else mono + delay,
            "decided": False, "callbacks_posted": 0, "answer_lost": drop_after, "booked": False,
        }
        st.pushes[cid] = p
        st.push_order.append(cid)
        st.stats["pushes_accepted"] += 1
        balance_item = st.balance_item
    h.logline("PUSH  %s KES %d ref %s -> %s (result %d, callback %s%s)" % (
        phone, amount, ref, cid, p["result_code"], mode,
        "" if mode == "pending" else " in %dms" % int((late if mode == "late" else delay) * 1000)))
    if mode in ("normal", "twice", "wrong_amount"):
        h.poster.schedule(delay, fire, h, cid, balance_item)
    elif mode in ("late", "never"):
        h.poster.schedule(delay, mark_decided, h, cid)
        if mode == "late":
            h.poster.schedule(late, fire, h, cid, balance_item)
    if drop_after:
        req["http"] = "dropped"
        h.logline("DROPPED the answer to accepted push %s" % cid)
        return h._drop()
    h._answer(req, 200, {
        "MerchantRequestID": p["merchant_request_id"], "CheckoutRequestID": cid,
        "ResponseCode": "0", "ResponseDescription": ACCEPTED, "CustomerMessage": ACCEPTED})


def settle(st, p):
    """A decided push that succeeded is a payment: its book entry, once.
    Called with st.lock held."""
    if p["booked"] or p["result_code"] != 0:
        return
    p["booked"] = True
    st.book.add("stk", p["amount"], p["party_b"], p["receipt"], msisdn=p["phone"],
                name=st.name_of(p["phone"]), bill_ref=p["account_reference"],
                conversation_id=p["checkout_request_id"], t=p["settle_time"], source="stk",
                merchant_request_id=p["merchant_request_id"],
                transaction_type=p["transaction_type"])


def mark_decided(h, cid):
    st = h.state
    with st.lock:
        p = st.pushes[cid]
        if p["decided"]:
            return
        p["decided"] = True
        settle(st, p)
    h.logline("DECIDE %s result %d%s (callback %s)" % (
        cid, p["result_code"], " receipt " + p["receipt"] if p["receipt"] else "",
        p["callback_mode"]))


def callback_text(p, amount_delta=0, balance_item=False):
    """The STK callback as Daraja writes it: Amount with two decimals,
    TransactionDate and PhoneNumber as bare integers."""
    out = ['{"Body":{"stkCallback":{"MerchantRequestID":', jdump(p["merchant_request_id"]),
           ',"CheckoutRequestID":', jdump(p["checkout_request_id"]),
           ',"ResultCode":', str(int(p["result_code"])),
           ',"ResultDesc":', jdump(p["result_desc"])]
    if p["result_code"] == 0:
        items = ['{"Name":"Amount","Value":%d.00}' % (p["amount"] + amount_delta),
                 '{"Name":"MpesaReceiptNumber","Value":%s}' % jdump(p["receipt"])]
        if balance_item:
            items.append('{"Name":"Balance"}')
        items += ['{"Name":"TransactionDate","Value":%s}' % p["transaction_date"],
                  '{"Name":"PhoneNumber","Value":%d}' % int(p["phone"])]
        out.append(',"CallbackMetadata":{"Item":[%s]}' % ",".join(items))
    out.append("}}}")
    return "".join(out)


def fire(h, cid, balance_item):
    st = h.state
    with st.lock:
        p = st.pushes[cid]
        p["decided"] = True
        if p["decided_at"] is None or p["decided_at"] > time.monotonic():
            p["decided_at"] = time.monotonic()
        settle(st, p)
        mode = p["callback_mode"]
        gap = st.twice_gap_ms / 1000.0
    raw = callback_text(p, 1 if mode == "wrong_amount" else 0, balance_item)
    for copy in ((1, 2) if mode == "twice" else (1,)):
        if copy == 2 and gap > 0:
            time.sleep(gap)
        status, answer = h.poster.post(p["callback_url"], raw)
        with st.lock:
            p["callbacks_posted"] += 1
            st.callbacks.append({
                "kind": "stk", "url": p["callback_url"], "body": json.loads(raw), "raw": raw,
                "http": status, "answer": answer, "time": time.time(),
                "checkout_request_id": cid, "copy": copy})
            st.stats["callbacks_posted" if isinstance(status, int) else "callback_errors"] += 1
        h.logline("CALLBACK %s result %d%s%s%s -> %s %s" % (
            cid, p["result_code"],
            " receipt %s KES %d.00" % (p["receipt"], p["amount"] + (mode == "wrong_amount"))
            if p["result_code"] == 0 else " " + p["result_desc"],
            " (copy 2)" if copy == 2 else "",
            " (wrong amount)" if mode == "wrong_amount" else "",
            status, (answer or "")[:120].replace("\n", " ")))
