#!/usr/bin/env python3
"""The layer check (make test runs it first; any output is a failure).

    scripts/layers.py [SRC_DIR]      (default: the src/ beside this script)

Arrows point down only:  base <- net <- dom <- {ussd, sms, mpesa} <- main,
and ops may use every layer.  ussd, sms and mpesa never include each other.
src/app.h, the daemon's wiring (forward declarations only), is for the
channels and ops, never for base, net or dom.  SQL text lives only in
src/dom/ (and schema/, migrations/): a string literal outside dom that
reads like SQL fails the check.
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
ALLOWED = {
    'base': {'base'},
    'net': {'base', 'net'},
    'dom': {'base', 'net', 'dom'},
    'ussd': {'base', 'net', 'dom', 'ussd', 'app'},
    'sms': {'base', 'net', 'dom', 'sms', 'app'},
    'mpesa': {'base', 'net', 'dom', 'mpesa', 'app'},
    'ops': {'base', 'net', 'dom', 'ussd', 'sms', 'mpesa', 'ops', 'app'},
    'main': {'base', 'net', 'dom', 'ussd', 'sms', 'mpesa', 'ops', 'app'},
}
# The database client's own protocol, not the domain: the session setup
# every connection runs (statement_timeout, application_name), its LISTEN,
# and the health check's empty round trip (db_ping).  Exactly these
# literals in exactly this file; anything else there is a violation.
PROTOCOL_SQL = {
    ('net/db.c', "SELECT set_config('statement_timeout', $1, false),"),
    ('net/db.c', 'LISTEN %s'),
    ('net/db.c', 'SELECT 1'),
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
SQL = re.compile(r'\b(SELECT\s|INSERT\s+INTO|UPDATE\s+[a-z_]+\s+SET|DELETE\s+FROM|'
                 r'CREATE\s+(TABLE|INDEX|FUNCTION|OR)|ALTER\s+TABLE|LISTEN\s|NOTIFY\s|'
                 r'pg_advisory|RETURNING\s|ON\s+CONFLICT|FROM\s+[a-z_]+\s+WHERE)')


def layer_of(rel):
    if '/' not in rel:
        return 'main' if rel != 'app.h' else 'app'
    return rel.split('/', 1)[0]


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text)


def main():
    global ROOT
    if len(sys.argv) > 1:   # another tree (the check's own test)
        ROOT = sys.argv[1]
    bad = []
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if not f.endswith(('.c', '.h')):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            layer = layer_of(rel)
            if layer not in ALLOWED and layer != 'app':
                bad.append('%s: not in a layer folder (%s)' % (rel, ', '.join(sorted(ALLOWED))))
                continue
            text = open(path, encoding='utf-8').read()
            for m in INCLUDE.finditer(text):
                inc = m.group(1)
                line = text.count('\n', 0, m.start()) + 1
                target = layer_of(inc)
                if layer == 'app':
                    bad.append('%s:%d: app.h holds forward declarations only, not "%s"' % (rel, line, inc))
                elif target not in ALLOWED[layer]:
                    bad.append('%s:%d: %s may not include "%s" (%s)' % (rel, line, layer, inc, target))
                elif not os.path.exists(os.path.join(ROOT, inc)):
                    bad.append('%s:%d: "%s" is not src/<layer>/<name>.h' % (rel, line, inc))
            if layer == 'dom':
                continue
            code = strip_comments(text)
            for m in STRING.finditer(code):
                if SQL.search(m.group(1)) and (rel, m.group(1)) not in PROTOCOL_SQL:
                    line = code.count('\n', 0, m.start()) + 1
                    bad.append('%s:%d: SQL outside src/dom/: "%s"' % (rel, line, m.group(1)[:60]))
    for b in bad:
        print(b)
    if bad:
        print('layers: %d violation(s); the rules are in scripts/layers.py' % len(bad))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
