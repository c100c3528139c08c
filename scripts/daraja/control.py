"""POST /_control: sets the failure modes and settings (every key is
documented in README.md, the one place); it answers the new state."""
import json
import time

from .book import UTILITY, WORKING
from .common import MODES
from .state import APIS, SPEC_KEYS
from .stk import fire, settle

INTS = ("result_count", "callback_count", "callback_delay_ms", "late_ms", "twice_gap_ms",
        "push_error", "push_error_http", "drop", "drop_after_accept", "query_error",
        "slow_ms", "token_ttl", "result_delay_ms", "pull_page_size")
BOOLS = ("balance_item", "lock_subscriber", "c2b_validation")
STRS = ("initiator_name", "security_credential")
OTHER = {"reset", "result_code", "result_desc", "number_result", "callback", "push_error_code",
         "push_error_message", "expire_tokens", "decide", "decide_callback", "msisdn_format",
         "names", "opening", "set_balance"}
ACCOUNTS = {"working": WORKING, "utility": UTILITY}


def _refuse(h, text):
    h._send(400, text + "\n", "text/plain")


def check_spec(api, spec):
    """None when spec is a valid failure-mode spec for api, else why not."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        return "%s: a JSON object of failure modes (or null)" % api
    for k, v in spec.items():
        if k not in SPEC_KEYS:
            return "%s: unknown key %s (keys: %s)" % (api, k, ", ".join(sorted(SPEC_KEYS)))
        want = SPEC_KEYS[k]
        if isinstance(want, tuple) and v not in want:
            return "%s.%s: one of %s" % (api, k, ", ".join(want))
        if want in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return "%s.%s: a number" % (api, k)
        if want is str and not isinstance(v, str):
            return "%s.%s: a string" % (api, k)
    return None


def _check(c):
    bad = sorted(set(c) - set(INTS) - set(BOOLS) - set(STRS) - OTHER - set(APIS))
    if bad:
        return "unknown control keys: %s" % ", ".join(bad)
    if "callback" in c and c["callback"] not in MODES:
        return "callback must be one of %s" % ", ".join(MODES)
    if c.get("msisdn_format") not in (None, "masked", "hashed", "plain"):
        return "msisdn_format: masked, hashed or plain"
    for k in ("opening", "set_balance"):
        if k in c and (not isinstance(c[k], dict) or set(c[k]) - set(ACCOUNTS)):
            return "%s: {\"working\": KES, \"utility\": KES}" % k
    for api in APIS:
        if api in c:
            why = check_spec(api, c[api])
            if why:
                return why
    return None


def _legacy(st, c):
    """The STK and token keys, as they always were."""
    for k in INTS:
        if k in c:
            setattr(st, k, int(c[k] if c[k] is not None else 0))
    for k in BOOLS:
        if k in c:
            setattr(st, k, bool(c[k]))
    for k in STRS:
        if k in c:
            setattr(st, k, str(c[k]))
    if "result_code" in c:
        st.result_code = int(c["result_code"] or 0)
        st.result_desc = c.get("result_desc") or None
        st.result_count = int(c.get("result_count", -1))
    elif "result_desc" in c:
        st.result_desc = c["result_desc"] or None
    if "callback" in c:
        st.callback = c["callback"]
        st.callback_count = int(c.get("callback_count", -1))
    if "number_result" in c:
        nr = c["number_result"] or {}
        if not nr:
            st.number_result = {}
        for num, code in nr.items():
            num = str(num).lstrip("+")
            if code is None:
                st.number_result.pop(num, None)
            else:
                st.number_result[num] = int(code)
    if "push_error_code" in c:
        st.push_error_code = str(c["push_error_code"] or "500.001.1001")
        try:
            st.push_error_http = int(st.push_error_code.split(".")[0])
        except ValueError:
            pass
        if "push_error_http" in c:
            st.push_error_http = int(c["push_error_http"])
    if "push_error_message" in c:
        st.push_error_message = c["push_error_message"] or None
    if "msisdn_format" in c:
        st.msisdn_format = c["msisdn_format"]
    if c.get("expire_tokens"):
        now = time.monotonic()
        for t in st.tokens:
            st.tokens[t] = min(st.tokens[t], now - 1)


def _org(st, c):
    """The keys of the book and the organisation APIs."""
    for api in APIS:
        if api in c:
            if c[api]:
                st.specs[api] = dict(c[api], count=int(c[api].get("count", -1)))
            else:
                st.specs.pop(api, None)
    if "names" in c:
        for num, name in (c["names"] or {}).items():
            if name is None:
                st.names.pop(str(num), None)
            else:
                st.names[str(num)] = str(name)
        if not c["names"]:
            st.names = {}
    for k, v in (c.get("opening") or {}).items():
        st.book.opening[ACCOUNTS[k]] = int(v)
    for k, v in (c.get("set_balance") or {}).items():
        st.book.set_balance(ACCOUNTS[k], v)


def _decide(st, c, fire_list):
    d = c["decide"]
    ids = [i for i in st.push_order if st.pushes[i]["decided_at"] is None] \
        if d == "all" else ([d] if isinstance(d, str) else list(d))
    unknown = [i for i in ids if i not in st.pushes]
    ids = [i for i in ids if i in st.pushes]
    mono = time.monotonic()
    for i in ids:
        p = st.pushes[i]
        if p["decided_at"] is None or p["decided_at"] > mono:
            p["decided_at"] = mono
            p["decided"] = True
            settle(st, p)
            if c.get("decide_callback"):
                fire_list.append(i)
    return ids, unknown


def post(h):
    st = h.state
    try:
        c = json.loads(h._body() or b"{}")
        assert isinstance(c, dict)
    except (ValueError, AssertionError):
        return _refuse(h, "control wants a JSON object")
    why = _check(c)
    if why:
        return _refuse(h, why)
    fire_list, ids, unknown = [], [], []
    with st.lock:
        st.stats["control"] += 1
        if c.get("reset"):
            st.reset()
        _legacy(st, c)
        _org(st, c)
        if c.get("decide"):
            ids, unknown = _decide(st, c, fire_list)
        balance_item = st.balance_item
        view = st.control_view()
    if c.get("expire_tokens"):
        h.logline("CONTROL every token expired")
    if c.get("decide"):
        view["decided"] = ids
        view["unknown"] = unknown
        h.logline("CONTROL decided %s" % (", ".join(ids) or "nothing"))
    for api in APIS:
        if api in c:
            h.logline("CONTROL %s failure modes: %s" % (api, json.dumps(c[api])))
    for i in fire_list:
        h.poster.schedule(0, fire, h, i, balance_item)
    h._json(200, view)
