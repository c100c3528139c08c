"""The transaction book: every money movement the emulator made (an STK
payment that succeeded, a C2B payment, a B2C payment, a reversal, or an
entry a test put there), each with its M-Pesa receipt.  Transaction
Status, the STK query, Account Balance and the statement all answer from
it; the account balances follow from it and the opening balances.

Amounts are whole shillings (Daraja has no cents)."""
import time

from .common import eat_iso, eat_stamp

WORKING = "Working Account"
UTILITY = "Utility Account"
CHARGES = "Charges Paid Account"
TYPES = ("stk", "c2b", "b2c", "reversal")


def _effect(e, by_receipt):
    """(account, signed shillings) an entry moves: collections (STK, C2B)
    land in the Utility account, B2C pays out of the Working account, and
    a reversal takes back from the account its original went into."""
    if e["type"] in ("stk", "c2b"):
        return UTILITY, e["amount"]
    if e["type"] == "b2c":
        return WORKING, -e["amount"]
    orig = by_receipt.get(e.get("reverses"))
    if orig is not None and orig["type"] == "b2c":
        return WORKING, e["amount"]
    return UTILITY, -e["amount"]


class Book:
    def __init__(self, lock, args):
        self.lock = lock
        self.args = args
        self.entries = []
        self.by_receipt = {}
        self.by_checkout = {}     # an STK entry's CheckoutRequestID -> entry
        self.opening = {}
        self.reset_opening()

    def reset_opening(self):
        with self.lock:
            self.opening = {WORKING: int(self.args.opening_working),
                            UTILITY: int(self.args.opening_utility), CHARGES: 0}

    def add(self, type, amount, shortcode, receipt, msisdn="", name="", bill_ref="",
            originator_id=None, conversation_id=None, t=None, source="api", **extra):
        assert type in TYPES, type
        t = time.time() if t is None else t
        e = {"receipt": receipt, "type": type, "amount": int(amount), "shortcode": str(shortcode),
             "bill_ref": bill_ref or "", "msisdn": str(msisdn or ""), "name": name or "",
             "originator_id": originator_id, "conversation_id": conversation_id,
             "time": t, "trx_date": eat_stamp(t), "status": "Completed", "source": source,
             "reverses": None, "reversed_by": None, "confirmation_posted": None}
        e.update(extra)
        with self.lock:
            e["seq"] = len(self.entries) + 1
            self.entries.append(e)
            self.by_receipt.setdefault(receipt, e)
            if type == "stk" and conversation_id:
                self.by_checkout.setdefault(conversation_id, e)
            if e["reverses"] and e["reverses"] in self.by_receipt:
                orig = self.by_receipt[e["reverses"]]
                orig["reversed_by"] = receipt
                orig["status"] = "Reversed"
        return e

    def find(self, receipt):
        with self.lock:
            return self.by_receipt.get(receipt)

    def stk_by_checkout(self, cid):
        """The STK payment with this CheckoutRequestID (its conversation_id),
        or None: what the STK query answers for a push it did not see."""
        with self.lock:
            return self.by_checkout.get(cid)

    def by_originator(self, oc):
        """Every entry made for this OriginatorConversationID, oldest first
        (more than one: the caller sent the same request twice and was paid
        twice: the emulator, like the worst case, does not dedupe)."""
        with self.lock:
            return [e for e in self.entries if oc is not None and e["originator_id"] == oc]

    def balances(self):
        """{account name: shillings} after every entry."""
        with self.lock:
            out = dict(self.opening)
            for e in self.entries:
                acct, delta = _effect(e, self.by_receipt)
                out[acct] += delta
            return out

    def set_balance(self, account, amount):
        """Moves the opening balance so that account's balance is amount now."""
        with self.lock:
            self.opening[account] += int(amount) - self.balances()[account]

    def statement(self, shortcode, start, end):
        """Entries of shortcode with start <= time <= end, oldest first."""
        with self.lock:
            return [e for e in self.entries
                    if e["shortcode"] == str(shortcode) and start <= e["time"] <= end]

    def view(self):
        with self.lock:
            return [dict(e, trx_iso=eat_iso(e["time"])) for e in self.entries]
