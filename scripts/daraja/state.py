"""The emulator's state: what the command line and /_control set, the
tokens, the requests and callbacks it saw, the STK pushes and C2B
registrations, and the transaction book (book.py)."""
import secrets
import threading
import time

from .book import Book
from .common import ALNUM, EAT

# The APIs whose failure modes /_control sets one by one (README.md,
# "Failure modes per API"); the key in /_control is the API's name.
APIS = ("oauth", "stk_push", "stk_query", "c2b", "b2c", "status", "balance", "reversal", "pull",
        "registerurl")
SPEC_KEYS = {
    "result": ("normal", "never", "twice", "late", "timeout"),
    "count": int, "delay_ms": int, "late_ms": int, "result_code": None, "result_desc": str,
    "contradict": ("amount", "account", "shortcode", "not_found", "failed"),
    "sync_error": str, "sync_http": int, "sync_message": str,
    "hang": ("before", "after"), "hang_s": float, "drop": ("before", "after"),
    "confirmation": ("normal", "lost"), "strings": bool,
}
STATS = ("requests", "tokens_issued", "oauth_failures", "auth_failures", "bad_requests",
         "pushes", "pushes_accepted", "push_errors", "dropped", "dropped_after_accept",
         "queries", "queries_pending", "queries_decided", "queries_unknown", "query_errors",
         "callbacks_posted", "callback_errors", "c2b_registrations", "c2b_payments",
         "c2b_validations", "c2b_rejected", "c2b_confirmations", "c2b_confirmations_lost",
         "control", "b2c", "status", "balance", "reversal", "pull", "results_posted",
         "hung", "sync_errors")


class State:
    def __init__(self, args):
        # re-entrant: the book takes the same lock, sometimes under it
        self.lock = threading.RLock()
        self.args = args
        self.started = time.time()
        self.tokens = {}          # token -> expiry (monotonic)
        self.requests = []
        self.callbacks = []
        self.pushes = {}          # CheckoutRequestID -> push dict
        self.push_order = []
        self.c2b_urls = {}        # shortcode -> registration
        self.c2b_last = None
        self.ids = set()          # receipts and TransIDs handed out
        self.seq = 0
        self.stats = dict.fromkeys(STATS, 0)
        self.book = Book(self.lock, args)
        self.token_ttl = args.token_ttl
        self.reset()

    def reset(self):
        a = self.args
        self.result_code = a.result_code
        self.result_desc = None
        self.result_count = -1
        self.number_result = {}
        self.callback = a.callback
        self.callback_count = -1
        self.callback_delay_ms = a.callback_delay_ms
        self.late_ms = a.late_ms
        self.twice_gap_ms = 100
        self.balance_item = False
        self.push_error = 0
        self.push_error_code = "500.001.1001"
        self.push_error_message = None
        self.push_error_http = 500
        self.lock_subscriber = False
        self.drop = 0
        self.drop_after_accept = 0
        self.query_error = 0
        self.slow_ms = 0
        self.token_ttl = a.token_ttl
        self.c2b_validation = True
        self.msisdn_format = "masked"
        self.result_delay_ms = a.result_delay_ms
        self.initiator_name = a.initiator_name
        self.security_credential = a.security_credential
        self.pull_page_size = 1000
        self.names = {}           # msisdn -> the name M-Pesa shows for it
        self.specs = {}           # api -> failure-mode spec (README.md)
        self.book.reset_opening()

    def take_spec(self, api):
        """The failure-mode spec for this one request to api ({} = normal);
        counts it down (count -1: until reset or changed)."""
        with self.lock:
            spec = self.specs.get(api)
            if not spec:
                return {}
            out = dict(spec)
            if spec.get("count", -1) > 0:
                spec["count"] -= 1
                if spec["count"] == 0:
                    del self.specs[api]
            return out

    def name_of(self, msisdn):
        return self.names.get(str(msisdn), "John Doe")

    def shortcodes(self):
        return {str(self.args.shortcode), str(self.args.b2c_shortcode)}

    def control_view(self):
        keys = ("result_code", "result_desc", "result_count", "callback", "callback_count",
                "callback_delay_ms", "late_ms", "twice_gap_ms", "balance_item", "push_error",
                "push_error_code", "push_error_message", "push_error_http", "lock_subscriber",
                "drop", "drop_after_accept", "query_error", "slow_ms", "token_ttl",
                "c2b_validation", "msisdn_format", "result_delay_ms", "initiator_name",
                "security_credential", "pull_page_size")
        v = {k: getattr(self, k) for k in keys}
        v["number_result"] = dict(self.number_result)
        v["names"] = dict(self.names)
        v["specs"] = {k: dict(s) for k, s in self.specs.items()}
        v["shortcode"] = self.args.shortcode
        v["b2c_shortcode"] = self.args.b2c_shortcode
        v["consumer_key"] = self.args.consumer_key
        v["opening"] = dict(self.book.opening)
        v["balances"] = self.book.balances()
        now = time.monotonic()
        v["tokens_valid"] = sum(1 for e in self.tokens.values() if e > now)
        v["c2b_registrations"] = dict(self.c2b_urls)
        return v

    def next_seq(self):
        self.seq += 1
        return self.seq

    def new_mpesa_id(self, t=None):
        """10 uppercase alnum, like NLJ7RT61SV: year letter (A = 2006),
        month letter, then 8 random; unique for this process."""
        tm = time.gmtime((t or time.time()) + EAT)
        y = chr(ord("A") + (tm.tm_year - 2006) % 26)
        m = chr(ord("A") + tm.tm_mon - 1)
        while True:
            r = y + m + "".join(secrets.choice(ALNUM) for _ in range(8))
            if r not in self.ids:
                self.ids.add(r)
                return r

    def placeholder_id(self, t=None):
        """What a failed result carries as TransactionID (LGR0000000): the
        year and month letters and zeros; never a receipt."""
        tm = time.gmtime((t or time.time()) + EAT)
        return chr(ord("A") + (tm.tm_year - 2006) % 26) + chr(ord("A") + tm.tm_mon - 1) + "R0000000"
