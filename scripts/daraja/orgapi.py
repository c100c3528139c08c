"""What the asynchronous organisation APIs share (B2C, Transaction Status,
Account Balance, Reversal; PROTOCOLS.md 4.7-4.9): the initiator check,
the synchronous acknowledgement, the Result body, and its delivery to
ResultURL (or QueueTimeOutURL) under the API's failure mode."""
import json
import time

from .common import ORG_ACCEPTED, RESULT_DESC, conversation_id, jdump, originator_id, url_ok

# What QueueTimeOutURL gets when a request "expired in Safaricom's queue"
# (result "timeout"): the Result shape with ResultType 1; the request was
# not carried out.  Daraja documents the shape, not this code: ours.
TIMEOUT_CODE = 1037
TIMEOUT_DESC = "The request timed out in the queue and was not processed."


def check_common(h, req, j, initiator_key, command_ids):
    """Initiator name present, SecurityCredential present, CommandID known,
    ResultURL and QueueTimeOutURL usable: else the 400 answer, False.
    A *wrong* initiator or credential is no 400: its Result says 2001."""
    if not isinstance(j.get(initiator_key), str) or not j[initiator_key]:
        return h._bad(req, initiator_key) or False
    if not isinstance(j.get("SecurityCredential"), str) or not j["SecurityCredential"]:
        return h._bad(req, "SecurityCredential") or False
    if j.get("CommandID") not in command_ids:
        return h._bad(req, "CommandID") or False
    for field in ("QueueTimeOutURL", "ResultURL"):
        if not url_ok(j.get(field)):
            return h._bad(req, field) or False
    return True


def initiator_code(h, j, initiator_key):
    """0, or 2001 when the initiator name or SecurityCredential is not the
    one configured (--initiator-name, --security-credential, /_control)."""
    st = h.state
    with st.lock:
        ok = j.get(initiator_key) == st.initiator_name and \
            j.get("SecurityCredential") == st.security_credential
    return 0 if ok else 2001


def ids(j):
    """(OriginatorConversationID: the caller's or a fresh one, ConversationID)."""
    oc = j.get("OriginatorConversationID")
    return (oc if isinstance(oc, str) and oc else originator_id()), conversation_id()


def ack(h, req, oc, conv):
    h._answer(req, 200, {"OriginatorConversationID": oc, "ConversationID": conv,
                         "ResponseCode": "0", "ResponseDescription": ORG_ACCEPTED})


def forced(spec):
    """The failure spec forces: (code, desc) or None."""
    if spec.get("result_code") in (None, 0, "0"):
        return None
    code = spec["result_code"]
    code = int(code) if isinstance(code, str) and code.isdigit() else code
    return code, spec.get("result_desc") or RESULT_DESC.get(code, "An error occurred.")


def result(code, desc, oc, conv, txid, params=None, ref=None, strings=False, rtype=0):
    """{"Result": ...} as Daraja posts it; params [(Key, Value or None)];
    strings: every number as a JSON string (Daraja sends both)."""
    def val(v):
        return str(v) if strings and isinstance(v, (int, float)) else v
    r = {"ResultType": rtype, "ResultCode": val(code), "ResultDesc": desc,
         "OriginatorConversationID": oc, "ConversationID": conv, "TransactionID": txid}
    if params is not None:
        r["ResultParameters"] = {"ResultParameter": [
            {"Key": k} if v is None else {"Key": k, "Value": val(v)} for k, v in params]}
    if ref:
        r["ReferenceData"] = {"ReferenceItem": {"Key": ref[0], "Value": ref[1]}}
    return {"Result": r}


def deliver(h, api, spec, j, body, oc, conv):
    """Posts body to ResultURL per spec "result": normal (after delay_ms,
    default result_delay_ms), twice, late (after late_ms), never, timeout
    (a timeout Result to QueueTimeOutURL instead)."""
    st = h.state
    mode = spec.get("result") or "normal"
    with st.lock:
        delay = (spec.get("delay_ms") if spec.get("delay_ms") is not None
                 else st.result_delay_ms) / 1000.0
        if mode == "late":
            delay = max(delay, (spec.get("late_ms") or st.late_ms) / 1000.0)
        gap = st.twice_gap_ms / 1000.0
    url, kind = j["ResultURL"], api + "_result"
    if mode == "timeout":
        url, kind = j["QueueTimeOutURL"], api + "_timeout"
        body = result(TIMEOUT_CODE, TIMEOUT_DESC, oc, conv, "", strings=spec.get("strings"),
                      rtype=1, ref=("QueueTimeoutURL", j["QueueTimeOutURL"]))
    if mode == "never":
        h.logline("RESULT %s %s %s: never posted (told to)" % (api, oc, conv))
        return
    h.poster.schedule(delay, _post, h, kind, url, jdump(body), 2 if mode == "twice" else 1,
                      gap, oc, conv)


def _post(h, kind, url, raw, copies, gap, oc, conv):
    st = h.state
    for copy in range(1, copies + 1):
        if copy == 2 and gap > 0:
            time.sleep(gap)
        status, answer = h.poster.post(url, raw)
        with st.lock:
            st.stats["results_posted"] += 1
            st.stats["callbacks_posted" if isinstance(status, int) else "callback_errors"] += 1
            st.callbacks.append({"kind": kind, "url": url, "body": json.loads(raw), "raw": raw,
                                 "http": status, "answer": answer, "time": time.time(),
                                 "originator_id": oc, "conversation_id": conv, "copy": copy})
        h.logline("RESULT %s %s %s%s -> %s %s" % (kind, oc, conv, " (copy 2)" if copy == 2 else "",
                                                  status, (answer or "")[:120].replace("\n", " ")))
