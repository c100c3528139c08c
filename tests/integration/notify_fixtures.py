"""What outbox rows say.  A row holds a template key and its variables until
the sender renders it (then body holds the text that went out), so a test
that reads a message asks `chamad outbox-text`: the text as sent, or as the
sender would render it now from the menus, in the recipient's language.

    from notify_fixtures import outbox_texts
    outbox_texts(env, url, "kind = 'receipt'")   # ["ChamaSmart: ...", ...] in id order
"""
import json
import os
import subprocess

from harness import ROOT, check_sanitizers


def outbox_rows(env, url, where):
    """[{"id", "status", "text" or "error"}] of the rows matching where, by id."""
    ids = [r[0] for r in env.psql("SELECT id FROM notifications WHERE %s ORDER BY id" % where, url)]
    if not ids:
        return []
    p = subprocess.run([env.bin, "outbox-text"] + ids, capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, CHAMAD_DATABASE_URL=url or env.db_url))
    check_sanitizers(p.stdout + p.stderr)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]


def outbox_texts(env, url, where):
    """The text of each row matching where, by id; fails on a row that cannot be rendered."""
    rows = outbox_rows(env, url, where)
    assert all("text" in r for r in rows), rows
    return [r["text"] for r in rows]
