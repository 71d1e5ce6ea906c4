#!/usr/bin/env python3
"""Checks one injected page for bench/run.sh (verify kind "inject").

    inject_check.py PAGE BODY [CHECK...]

PAGE is the storefront's page, BODY what the front sent. BODY must be PAGE
with exactly one <script type="application/json" id="loyalty-data">
element inserted right before PAGE's first </head>, every other byte
unchanged; the element's text (the fragment) must hold no raw < > &
(safe inside <script>) and parse as a JSON object. Then each CHECK:

    exact=TEXT        the fragment is exactly TEXT
    KEY=VALUE         member KEY equals VALUE (compared as text; numbers
                      in their JSON form, e.g. points=1234)
    has=KEY           member KEY is present
    offers-start=JSON the fragment's offers begin with this JSON array
    offer=ID          an offer with this "id" is in offers

Exit 0 when everything holds, else 1 with the reasons on stderr.
"""
import json
import sys

OPEN = b'<script type="application/json" id="loyalty-data">'
CLOSE = b'</script>'
MARKER = b'</head>'


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def main(argv):
    if len(argv) < 3:
        fail(__doc__)
    with open(argv[1], 'rb') as f:
        page = f.read()
    with open(argv[2], 'rb') as f:
        body = f.read()

    at = page.find(MARKER)
    if at < 0:
        fail('the page has no </head>')
    if body.count(OPEN) != 1:
        fail('%d loyalty-data elements, expected 1' % body.count(OPEN))
    if not body.startswith(page[:at] + OPEN):
        fail('the body differs from the page before the element')
    rest = page[at:]
    if not body.endswith(CLOSE + rest):
        fail('the element is not followed by the rest of the page, byte for byte')
    frag = body[at + len(OPEN):len(body) - len(CLOSE) - len(rest)]
    if len(body) != at + len(OPEN) + len(frag) + len(CLOSE) + len(rest):
        fail('the element overlaps the page')
    for c in b'<>&':
        if bytes([c]) in frag:
            fail('raw %r in the fragment: %s' % (chr(c), frag[:200]))
    try:
        doc = json.loads(frag.decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as e:
        fail('the fragment is not JSON (%s): %s' % (e, frag[:200]))
    if not isinstance(doc, dict):
        fail('the fragment is not a JSON object: %s' % frag[:200])

    bad = []
    for check in argv[3:]:
        key, _, want = check.partition('=')
        if key == 'exact':
            if frag.decode('utf-8') != want:
                bad.append('fragment %s, expected %s' % (frag.decode('utf-8'), want))
        elif key == 'has':
            if want not in doc:
                bad.append('no member %s in %s' % (want, frag[:200]))
        elif key == 'offers-start':
            expect = json.loads(want)
            got = doc.get('offers', [])
            if got[:len(expect)] != expect:
                bad.append('offers %s do not start with %s' % (json.dumps(got)[:300], want[:300]))
        elif key == 'offer':
            if not any(isinstance(o, dict) and o.get('id') == want for o in doc.get('offers', [])):
                bad.append('no offer %s in %s' % (want, json.dumps(doc.get('offers'))[:300]))
        else:
            got = doc.get(key)
            text = got if isinstance(got, str) else json.dumps(got)
            if got is None or text != want:
                bad.append('%s = %s, expected %s' % (key, text, want))
    if bad:
        fail('; '.join(bad))
    print(frag.decode('utf-8'))


if __name__ == '__main__':
    main(sys.argv)
