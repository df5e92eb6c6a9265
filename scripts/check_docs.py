#!/usr/bin/env python3
"""Run the SQL examples of docs pages and compare with the shown output,
so that the documentation cannot drift from the code (the "docs" suite of
scripts/test.sh).

A ```sql block followed directly (blank lines allowed) by a plain ``` or
```text block: the text block is the expected psql output.  A ```sql block
preceded by <!-- skip --> is not run.  <!-- setup\n...SQL...\n--> runs
hidden SQL at that point.  Each page runs in a fresh database, in one psql
session (-X -q, SHOW_CONTEXT never), as the superuser postgres.
"""
import os, re, subprocess, sys, difflib

def parse(path):
    lines = open(path).read().split('\n')
    items = []  # (kind, text, lineno)
    i = 0
    skip_next = False
    while i < len(lines):
        l = lines[i]
        if l.strip() == '<!-- skip -->':
            skip_next = True; i += 1; continue
        if l.strip() == '<!-- setup':
            j = i + 1; buf = []
            while lines[j].strip() != '-->':
                buf.append(lines[j]); j += 1
            items.append(('setup', '\n'.join(buf), i + 1)); i = j + 1; continue
        m = re.match(r'^```(\w*)\s*$', l)
        if m:
            lang = m.group(1); j = i + 1; buf = []
            while not lines[j].startswith('```'):
                buf.append(lines[j]); j += 1
            if lang == 'sql':
                items.append(('skip' if skip_next else 'sql', '\n'.join(buf), i + 1))
            elif lang in ('', 'text'):
                items.append(('out', '\n'.join(buf), i + 1))
            else:
                items.append(('other', '', i + 1))
            skip_next = False
            i = j + 1; continue
        if l.strip():
            items.append(('prose', '', i + 1))
        i += 1
    return items

def main():
    db = 'doccheck'
    bad = 0
    for path in sys.argv[1:]:
        page_bad = bad
        items = parse(path)
        subprocess.run(['psql', '-X', '-q', '-d', 'postgres', '-c', 'SET client_min_messages = warning', '-c', f'DROP DATABASE IF EXISTS {db}', '-c', f'CREATE DATABASE {db}'], check=True)
        subprocess.run(['psql', '-X', '-q', '-d', db, '-c', 'CREATE EXTENSION consent'], check=True)
        script = ['\\set SHOW_CONTEXT never']
        blocks = []
        for k, (kind, text, ln) in enumerate(items):
            if kind == 'setup':
                script.append(f"\\echo '@@HIDDEN@@'")
                script.append(text)
            elif kind == 'sql':
                exp = None
                if k + 1 < len(items) and items[k + 1][0] == 'out':
                    exp = items[k + 1][1]
                n = len(blocks)
                blocks.append((ln, text, exp))
                script.append(f"\\echo '@@BLOCK {n}@@'")
                script.append(text)
        script.append("\\echo '@@END@@'")
        p = subprocess.run(['stdbuf', '-o0', 'psql', '-X', '-q', '-d', db],
                           input='\n'.join(script) + '\n', stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = p.stdout
        parts = re.split(r'^@@(BLOCK \d+|HIDDEN|END)@@\n', out, flags=re.M)
        # parts: [pre, tag, body, tag, body, ...]
        got = {}
        for t, body in zip(parts[1::2], parts[2::2]):
            if t.startswith('BLOCK'):
                got[int(t.split()[1])] = body
            elif t == 'HIDDEN' and 'ERROR' in body:
                print(f'{path}: hidden setup printed:\n{body}'); bad += 1
        for n, (ln, text, exp) in enumerate(blocks):
            actual = got.get(n, '<missing>').rstrip('\n')
            if exp is None:
                if 'ERROR' in actual:
                    print(f'{path}:{ln}: unexpected error in block without output:\n{actual}\n'); bad += 1
                continue
            norm = lambda x: re.sub(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00', '<ts>', x)
            actual = norm(actual); exp = norm(exp)
            if actual != exp.rstrip('\n'):
                bad += 1
                print(f'{path}:{ln}: output differs')
                for d in difflib.unified_diff(exp.rstrip('\n').split('\n'), actual.split('\n'), 'shown', 'actual', lineterm=''):
                    print('   ' + d)
        if bad == page_bad:
            print(f'ok: {path} ({len(blocks)} examples)')
        else:
            print(f'FAILED: {path} ({bad - page_bad} differences in {len(blocks)} examples)')
    print('FAILURES:', bad)
    sys.exit(1 if bad else 0)

main()
