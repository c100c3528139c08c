"""The layer check (scripts/layers.py, the first step of make test) holds on
this tree and refuses each kind of violation in a copy of it."""
import os
import shutil
import subprocess
import sys
import tempfile

from harness import ROOT

CHECK = os.path.join(ROOT, "scripts", "layers.py")


def check(src):
    return subprocess.run([sys.executable, CHECK, src], capture_output=True, text=True)


def with_change(path, text, fn):
    """Runs the check on a copy of src/ where path (relative) gets text
    appended (or is created)."""
    tmp = tempfile.mkdtemp(prefix="layers-")
    try:
        src = os.path.join(tmp, "src")
        shutil.copytree(os.path.join(ROOT, "src"), src)
        full = os.path.join(src, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "a") as f:
            f.write(text)
        fn(check(src))
    finally:
        shutil.rmtree(tmp)


def test_layers_hold_and_each_violation_is_refused(env):
    r = check(os.path.join(ROOT, "src"))
    assert r.returncode == 0 and r.stdout == "", r.stdout

    def refused(what):
        def fn(r):
            assert r.returncode == 1 and what in r.stdout, (what, r.stdout)
        return fn

    # an arrow pointing up, or sideways between channels
    with_change("base/util.c", '\n#include "net/db.h"\n', refused('base may not include "net/db.h"'))
    with_change("net/httpc.c", '\n#include "dom/pin.h"\n', refused('net may not include "dom/pin.h"'))
    with_change("dom/user.c", '\n#include "app.h"\n', refused('dom may not include "app.h"'))
    with_change("dom/user.c", '\n#include "ussd/ussd.h"\n', refused('dom may not include "ussd/ussd.h"'))
    with_change("ussd/act_auth.c", '\n#include "sms/sms.h"\n', refused('ussd may not include "sms/sms.h"'))
    with_change("sms/sms_cmd.c", '\n#include "mpesa/mpesa.h"\n', refused('sms may not include "mpesa/mpesa.h"'))
    with_change("mpesa/stk.c", '\n#include "ussd/act.h"\n', refused('mpesa may not include "ussd/act.h"'))
    # SQL outside dom, in any spelling the check knows
    for sql in ("SELECT id FROM users WHERE phone = $1", "INSERT INTO notifications (x) VALUES ($1)",
                "UPDATE users SET full_name = $2", "DELETE FROM invites WHERE id = $1"):
        with_change("sms/sms_cmd.c", '\nstatic const char *q = "%s";\n' % sql, refused("SQL outside src/dom/"))
    # ... while the same text inside dom is what dom is for
    with_change("dom/user.c", '\nstatic const char *q = "SELECT id FROM users WHERE phone = $1";\n',
                lambda r: (r.returncode == 0) or (_ for _ in ()).throw(AssertionError(r.stdout)))
    # a file outside the layer folders, and app.h growing an include
    with_change("stray.c", "int stray;\n", lambda r: None)   # main-level files are allowed
    with_change("app.h", '\n#include "net/db.h"\n', refused("app.h holds forward declarations only"))
    with_change("misc/x.c", "int x;\n", refused("not in a layer folder"))
