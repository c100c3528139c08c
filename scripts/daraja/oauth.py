"""GET /oauth/v1/generate: the access token (PROTOCOLS.md 4.1)."""
import base64
import secrets
import string
import time
import urllib.parse


def generate(h, query):
    st = h.state
    h._body()
    q = urllib.parse.parse_qs(query)
    auth = h.headers.get("Authorization") or ""
    ok = False
    if auth[:6].lower() == "basic ":
        try:
            k, _, s = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            ok = k == st.args.consumer_key and s == st.args.consumer_secret
        except (ValueError, UnicodeDecodeError):
            ok = False
    req = h._record({"grant_type": q.get("grant_type", [None])[0]}, "oauth")
    with st.lock:
        req["auth_ok"] = ok
    if h.pre(req, st.take_spec("oauth")):
        return
    if q.get("grant_type", [None])[0] != "client_credentials":
        with st.lock:
            st.stats["oauth_failures"] += 1
        h.logline("REFUSED token: Invalid grant type")
        return h._error(req, 400, "400.008.02", "Invalid grant type passed")
    if not ok:
        with st.lock:
            st.stats["oauth_failures"] += 1
        h.logline("REFUSED token: Invalid Authentication passed")
        return h._error(req, 400, "400.008.01", "Invalid Authentication passed")
    tok = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(28))
    with st.lock:
        ttl = st.token_ttl
        st.tokens[tok] = time.monotonic() + ttl
        st.stats["tokens_issued"] += 1
    h.logline("TOKEN issued, expires in %ss" % ttl)
    h._answer(req, 200, {"access_token": tok, "expires_in": str(ttl)})
