"""Constants and small helpers every part of the emulator shares."""
import calendar
import json
import random
import re
import secrets
import string
import time
import urllib.parse

SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"

RESULT_DESC = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule: less than the minimum transaction amount.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    4: "Declined due to limit rule: would exceed daily transfer limit.",
    8: "Declined due to limit rule: would exceed the maximum balance.",
    11: "The DebitParty is in an invalid state.",
    15: "Duplicate detected.",
    17: "Rule limited.",
    20: "Unresolved Initiator.",
    1001: "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    1019: "Transaction has expired",
    1025: "An error occurred while sending a push request",
    1032: "Request cancelled by user",
    1037: "DS timeout user cannot be reached",
    2001: "The initiator information is invalid.",
    2028: "The request is not permitted according to product assignment",
    2032: "The transaction receipt number does not exist.",
    2040: "Credit Party customer type (Unregistered or Registered Customer) can't be supported by the service.",
    8006: "The security credential is locked",
    9999: "An error occurred while sending a push request",
    "R000001": "The transaction has already been reversed.",
    "R000002": "The OriginalTransactionID is invalid.",
}
ERRMSG = {
    "500.001.1001": "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    "500.003.02": "System is busy. Please try again in few minutes.",
    "500.003.03": "Quota Violation",
    "500.003.1001": "Internal Server Error",
    "404.001.03": "Invalid Access Token",
    "400.002.05": "Invalid Request Payload",
}
ACCEPTED = "Success. Request accepted for processing"
QUERY_ACCEPTED = "The service request has been accepted successsfully"  # sic
ORG_ACCEPTED = "Accept the service request successfully."
MODES = ("normal", "twice", "late", "never", "wrong_amount", "pending")
PHONE_RE = re.compile(r"^254[17][0-9]{8}$")
FORBIDDEN_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
ALNUM = string.ascii_uppercase + string.digits
EAT = 3 * 3600


def eat_stamp(t):
    """YYYYMMDDHHmmss in East Africa Time (what Daraja sends), whatever TZ is."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t + EAT))


def eat_iso(t):
    """2025-01-24T10:56:11+03:00: the Pull Transactions trxDate."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+03:00", time.gmtime(t + EAT))


def eat_dotted(t):
    """17.07.2017 10:54:57: B2C's TransactionCompletedDateTime."""
    return time.strftime("%d.%m.%Y %H:%M:%S", time.gmtime(t + EAT))


def eat_parse(text):
    """'YYYY-MM-DD HH:MM:SS' (hour may have one digit) in EAT -> epoch, or None."""
    if not isinstance(text, str):
        return None
    try:
        tm = time.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return calendar.timegm(tm) - EAT


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"))


def url_ok(u):
    if not isinstance(u, str) or not u:
        return False
    p = urllib.parse.urlsplit(u)
    return p.scheme in ("http", "https") and bool(p.hostname)


def digits(v):
    """A digit string from a JSON string or integer (never a bool), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and v.isdigit():
        return v
    return None


def whole_amount(v):
    """Daraja amounts are whole shillings: a JSON integer or a digit string;
    10.5, "10.5" and 10.0 are refused (None)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"[0-9]{1,9}", v.strip()):
        return int(v.strip())
    return None


def request_id():
    return "%d-%d-1" % (random.randint(1000, 99999), random.randint(1000000, 99999999))


def originator_id():
    """Daraja's own OriginatorConversationID when the caller gave none."""
    return "%d-%d-%d" % (random.randint(1000, 99999), random.randint(100000, 99999999),
                         random.randint(1, 9))


def conversation_id(t=None):
    """AG_20240702_20303738b089a9fb5233."""
    return "AG_%s_%s" % (time.strftime("%Y%m%d", time.gmtime((t or time.time()) + EAT)),
                         secrets.token_hex(10))
