"""One USSD session in one call, for tests whose subject is not the menus
(M-Pesa, notices, the channels' agreement):

    from ussd_fixtures import ussd
    screen = ussd(chamad, "+254712000002", [PIN, "2", "1", "500", "1"])   # "CON ..." / "END ..."
"""
import random
import urllib.parse


def ussd(c, phone, inputs):
    """One USSD session: dial, then each input; returns the last screen."""
    sid = "ATUid_%032x" % random.getrandbits(128)
    done, screen = [], ""
    for inp in [None] + list(inputs):
        if inp is not None:
            done.append(inp)
        body = urllib.parse.urlencode({"sessionId": sid, "serviceCode": "*384*1#", "phoneNumber": phone,
                                       "networkCode": "63902", "text": "*".join(done)}).encode()
        r = c.post("/ussd/africastalking", body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200, r.body
        screen = r.body
    return screen
