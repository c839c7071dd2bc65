#!/usr/bin/env python3
"""Writes the emoji dataset's inputs for coca-shard from the unpacked npm packages.

  emoji_captions.py NPM_DIR WORK_DIR [--hold-out VENDOR]

NPM_DIR/<set>/package/{emoji.json,img/<set>/64/*.png} for set in apple, google, facebook,
twitter. Writes WORK_DIR/train.tsv (filepath, title; paths relative to NPM_DIR),
WORK_DIR/train_captions.txt (one caption a line, for the tokenizer), and the held-out
classification layout WORK_DIR/twitter/<class folder>/<image> (symlinks) with
WORK_DIR/twitter_classnames.txt. Caption templates are documented in data_tools/README.md.

--hold-out VENDOR (apple, google or facebook) makes the validation split instead: train.tsv
without VENDOR's rows (the other rows and their captions unchanged) and the classification
layout WORK_DIR/VENDOR/ with WORK_DIR/VENDOR_classnames.txt, made as twitter's is.
Standard library only; deterministic.
"""
import json
import os
import sys

TRAIN_SETS = ["apple", "google", "facebook"]
EVAL_SET = "twitter"
TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}
TEMPLATES = [
    "an emoji of {name}",
    "{name}",
    "{name} in the {style} emoji style",
    "{name}, an emoji from the {subcategory} group",
    "{name} ({category})",
]


def tone_phrase(key):
    parts = [TONES.get(p, "") for p in key.split("-")]
    parts = [p for p in parts if p]
    if not parts:
        return ""
    if len(parts) > 1 and len(set(parts)) == 1:
        return parts[0]
    return " and ".join(parts)


def variants(entry):
    """(image file, display name, has_img flags) for the emoji and its skin-tone variants."""
    name = entry["name"].lower()
    yield entry["image"], name, entry, 0
    for i, (key, var) in enumerate(sorted(entry.get("skin_variations", {}).items())):
        tone = tone_phrase(key)
        yield var["image"], f"{name} with {tone}" if tone else name, var, i + 1


def write_eval_layout(emoji, npm_dir, work, eval_set):
    """WORK/<eval_set>/<class folder>/<image> symlinks, every image of eval_set labelled with
    its emoji's name (skin tones share it), and WORK/<eval_set>_classnames.txt."""
    names = sorted({e["name"].lower() for e in emoji if e.get(f"has_img_{eval_set}")})
    folder_of = {n: f"c{i:04d}" for i, n in enumerate(names)}
    eval_root = os.path.join(work, eval_set)
    src_root = os.path.abspath(os.path.join(npm_dir, eval_set, "package", "img", eval_set, "64"))
    n_eval = 0
    for e in emoji:
        for image, _, flags, _ in variants(e):
            if not flags.get(f"has_img_{eval_set}") or not os.path.exists(os.path.join(src_root, image)):
                continue
            d = os.path.join(eval_root, folder_of[e["name"].lower()])
            os.makedirs(d, exist_ok=True)
            link = os.path.join(d, image)
            if not os.path.lexists(link):
                os.symlink(os.path.join(src_root, image), link)
            n_eval += 1
    with open(os.path.join(work, f"{eval_set}_classnames.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    return n_eval, len(names)


def main():
    args = sys.argv[1:]
    hold_out = None
    if len(args) == 4 and args[2] == "--hold-out" and args[3] in TRAIN_SETS:
        hold_out = args[3]
    elif len(args) != 2:
        sys.exit(f"usage: emoji_captions.py NPM_DIR WORK_DIR [--hold-out {'|'.join(TRAIN_SETS)}]")
    npm_dir, work = args[0], args[1]
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(npm_dir, "apple", "package", "emoji.json"), encoding="utf-8") as f:
        emoji = sorted(json.load(f), key=lambda e: e["sort_order"])
    rows, captions, counts = [], [], {}
    for si, style in enumerate(TRAIN_SETS):
        if style == hold_out:
            continue
        root = os.path.join(npm_dir, style, "package", "img", style, "64")
        n = 0
        for e in emoji:
            for image, name, flags, vi in variants(e):
                if not flags.get(f"has_img_{style}"):
                    continue
                rel = os.path.join(style, "package", "img", style, "64", image)
                if not os.path.exists(os.path.join(npm_dir, rel)):
                    continue  # listed but not shipped: coca-shard would count it as missing
                t = TEMPLATES[(e["sort_order"] + vi + si) % len(TEMPLATES)]
                cap = t.format(name=name, style=style, category=e["category"].lower(),
                               subcategory=e["subcategory"].replace("-", " "))
                rows.append(f"{rel}\t{cap}")
                captions.append(cap)
                n += 1
        counts[style] = n
    with open(os.path.join(work, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("filepath\ttitle\n" + "\n".join(rows) + "\n")
    with open(os.path.join(work, "train_captions.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(captions) + "\n")

    eval_set = hold_out or EVAL_SET
    n_eval, n_classes = write_eval_layout(emoji, npm_dir, work, eval_set)
    print("captions: " + ", ".join(f"{k} {v}" for k, v in counts.items()) +
          f"; {eval_set} eval {n_eval} images in {n_classes} classes")


if __name__ == "__main__":
    main()
