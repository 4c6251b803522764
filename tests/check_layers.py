#!/usr/bin/env python3
"""The layering of common/ stays true: a module includes only its own layer or lower ones, every
include of a slex header names its folder, and no two modules include each other (directly or
through others).  The layer order is read from LAYERS below and must match the README's layout.

usage: check_layers.py SOURCE_DIR"""
import os
import re
import sys

# Lowest first.  pipeline/, stages/, tests/ and bench/ sit above all of them.
LAYERS = ["core", "corpus", "feat", "store", "cluster", "model", "run", "train", "eval"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    src = sys.argv[1]
    common = os.path.join(src, "common")
    errors = []
    graph = {}
    for layer in sorted(os.listdir(common)):
        path = os.path.join(common, layer)
        if not os.path.isdir(path):
            errors.append(f"common/{layer}: a file outside the layer folders")
            continue
        if layer not in LAYERS:
            errors.append(f"common/{layer}/: not a known layer (add it to LAYERS in {__file__} "
                          "and to the README's layout)")
            continue
        for name in sorted(os.listdir(path)):
            if not name.endswith((".c", ".h")):
                continue
            module = f"{layer}/{os.path.splitext(name)[0]}"
            text = open(os.path.join(path, name), encoding="utf-8").read()
            for inc in INCLUDE.findall(text):
                if "/" not in inc:
                    errors.append(f"common/{layer}/{name}: #include \"{inc}\" does not name its folder")
                    continue
                inc_layer = inc.split("/")[0]
                if inc_layer not in LAYERS:
                    errors.append(f"common/{layer}/{name}: #include \"{inc}\": unknown layer")
                    continue
                if not os.path.exists(os.path.join(common, inc)):
                    errors.append(f"common/{layer}/{name}: #include \"{inc}\": no such header")
                    continue
                if LAYERS.index(inc_layer) > LAYERS.index(layer):
                    errors.append(f"common/{layer}/{name}: includes {inc} from the higher layer "
                                  f"{inc_layer}/ ({layer}/ may use only {', '.join(LAYERS[:LAYERS.index(layer) + 1])})")
                target = os.path.splitext(inc)[0]
                if target != module:
                    graph.setdefault(module, set()).add(target)
    # Cycles between modules (a .c and its .h are one module).
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                errors.append("include cycle: " + " -> ".join(cycle))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    for e in errors:
        print(e)
    if errors:
        return 1
    print(f"layering: {len(graph)} modules with includes, order {' < '.join(LAYERS)}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
