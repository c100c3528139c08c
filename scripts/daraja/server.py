"""The HTTP side: the server, the request plumbing every API shares
(body, recording, bearer token, error bodies, the per-API failure modes
that act before or instead of an answer) and the routing table."""
import http.server
import json
import socket
import time

from . import b2c, balance, c2b, control, oauth, pull, reversal, status, stk, stkquery, views
from .common import ERRMSG, jdump, request_id

# POST path -> (API name for /_requests and the failure modes, handler(h, req, j))
API_ROUTES = {
    "/mpesa/stkpush/v1/processrequest": ("stk_push", stk.push),
    "/mpesa/stkpushquery/v1/query": ("stk_query", stkquery.query),
    "/mpesa/c2b/v1/registerurl": ("registerurl", c2b.registerurl),
    "/mpesa/c2b/v2/registerurl": ("registerurl", c2b.registerurl),
    "/mpesa/b2c/v3/paymentrequest": ("b2c", b2c.payment),
    "/mpesa/b2c/v1/paymentrequest": ("b2c", b2c.payment),
    "/mpesa/transactionstatus/v1/query": ("status", status.query),
    "/mpesa/accountbalance/v1/query": ("balance", balance.query),
    "/mpesa/reversal/v1/request": ("reversal", reversal.request),
    "/pulltransactions/v1/query": ("pull", pull.query),
}
# test controls: loopback only, never part of Daraja (README.md)
CONTROL_POST = {"/_control": control.post, "/_c2b": c2b.pay, "/_book": views.book_add}
CONTROL_GET = {"/_requests": views.get_requests, "/_callbacks": views.get_callbacks,
               "/_pushes": views.get_pushes, "/_stats": views.get_stats,
               "/_control": views.get_control, "/_book": views.get_book}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "daraja-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    state = None      # set in main
    poster = None
    logline = None
    after = None      # "hang" | "drop": what replaces this request's answer

    def log_message(self, fmt, *args):  # quiet: --log has the useful lines
        pass

    # -- routes ---------------------------------------------------------

    def do_GET(self):
        self.after = None
        path, _, query = self.path.partition("?")
        if path == "/oauth/v1/generate":
            return oauth.generate(self, query)
        if path in CONTROL_GET:
            return CONTROL_GET[path](self)
        if path == "/healthz":
            return self._send(200, "ok\n", "text/plain")
        self._not_found()

    def do_DELETE(self):
        self._body()
        if self.path.partition("?")[0] == "/_requests":
            return views.delete_requests(self)
        self._not_found()

    def do_POST(self):
        self.after = None
        path = self.path.partition("?")[0]
        if path in CONTROL_POST:
            return CONTROL_POST[path](self)
        if path in API_ROUTES:
            api, fn = API_ROUTES[path]
            req, j = self._api_json(api)
            spec = self.state.take_spec(api)
            if self.pre(req, spec):
                return
            return fn(self, req, j, spec)
        self._body()
        self._not_found()

    def _not_found(self):
        self._json(404, {"requestId": "", "errorCode": "404.001.01",
                         "errorMessage": "Resource not found"})

    # -- failure modes that replace the answer ---------------------------

    def pre(self, req, spec):
        """Applies spec's hang/drop/sync_error before the API does anything;
        True when the request is finished (nothing was processed)."""
        st = self.state
        self.after = "hang" if spec.get("hang") == "after" else \
            "drop" if spec.get("drop") == "after" else None
        self.hang_s = float(spec.get("hang_s") or 30)
        if spec.get("hang") == "before" or spec.get("drop") == "before":
            self.after = "hang" if spec.get("hang") == "before" else "drop"
            self.logline("%s %s: no answer, nothing done (told to)" % (
                self.after.upper(), req["api"]))
            self._lose(req)
            return True
        if spec.get("sync_error"):
            code = str(spec["sync_error"])
            try:
                http_status = int(spec.get("sync_http") or code.split(".")[0])
            except ValueError:
                http_status = 500
            with st.lock:
                st.stats["sync_errors"] += 1
            self.logline("%s -> HTTP %d %s (told to fail)" % (req["api"], http_status, code))
            self._error(req, http_status, code,
                        spec.get("sync_message") or ERRMSG.get(code, "Internal Server Error"))
            return True
        return False

    def _lose(self, req):
        """No answer: the connection closes at once ("drop") or is held
        open for hang_s and then closed ("hang": the client times out)."""
        st = self.state
        with st.lock:
            req["http"] = "hung" if self.after == "hang" else "dropped"
            st.stats["hung" if self.after == "hang" else "dropped"] += 1
        if self.after == "hang":
            time.sleep(self.hang_s)
        self._drop()

    # -- plumbing -------------------------------------------------------

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, body, ctype="application/json"):
        if isinstance(body, str):
            body = body.encode()
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                % (status, phrase, ctype, len(body)))
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode() + b"\r\n" + body)

    def _json(self, status, obj):
        self._send(status, jdump(obj))

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _record(self, body, api=None):
        st = self.state
        with st.lock:
            st.stats["requests"] += 1
            req = {"seq": st.next_seq(), "time": time.time(), "method": self.command,
                   "path": self.path, "api": api, "auth_ok": None, "body": body, "http": None,
                   "error": None, "response": None}
            st.requests.append(req)
        return req

    def _answer(self, req, status, obj):
        with self.state.lock:
            req["http"] = status
            req["response"] = obj
            if isinstance(obj, dict) and "errorCode" in obj:
                req["error"] = obj["errorCode"]
        if self.after:
            # processed, but the answer never reaches the caller
            self.logline("%s the answer to %s (told to)" % (self.after.upper(), req["api"]))
            return self._lose(req)
        self._json(status, obj)

    def _error(self, req, status, code, message):
        self._answer(req, status, {"requestId": request_id(),
                                   "errorCode": code, "errorMessage": message})

    def _bad(self, req, field):
        with self.state.lock:
            self.state.stats["bad_requests"] += 1
        self.logline("REFUSED %s: Invalid %s" % (self.path.partition("?")[0], field))
        self._error(req, 400, "400.002.02", "Bad Request - Invalid %s" % field)

    def _bearer_ok(self, req):
        st = self.state
        h = self.headers.get("Authorization") or ""
        tok = h[7:].strip() if h[:7].lower() == "bearer " else None
        with st.lock:
            exp = st.tokens.get(tok) if tok else None
            ok = exp is not None and exp > time.monotonic()
            req["auth_ok"] = ok
            if not ok:
                st.stats["auth_failures"] += 1
        if not ok:
            self.logline("REFUSED %s: Invalid Access Token (%s)" % (
                self.path.partition("?")[0],
                "none" if not tok else "expired" if exp is not None else "unknown"))
            self._error(req, 404, "404.001.03", "Invalid Access Token")
        return ok

    def _api_json(self, api=None):
        """Reads the body; returns (req, dict or None)."""
        raw = self._body()
        try:
            j = json.loads(raw or b"null")
        except ValueError:
            j = None
        req = self._record(j if j is not None else raw.decode("utf-8", "replace"), api)
        return req, (j if isinstance(j, dict) else None)

    def _slow(self):
        with self.state.lock:
            ms = self.state.slow_ms
        if ms > 0:
            time.sleep(ms / 1000.0)

    def _payload_ok(self, req, j):
        """The bearer token and a JSON object body, else the error answer."""
        if not self._bearer_ok(req):
            return False
        if j is None:
            with self.state.lock:
                self.state.stats["bad_requests"] += 1
            self._error(req, 400, "400.002.05", "Invalid Request Payload")
            return False
        return True
