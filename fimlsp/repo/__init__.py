"""Repository-level context: definitions and similar code from files the user never opened.

The prompt otherwise holds the current file and snippets of other *open* documents, but the code
a completion most often needs (the signature of a function imported from another module, the
fields of a class) usually lives in a file that is not open. This package keeps an index of the
workspace folders the client names and picks, per request, what of it goes into the prompt:

- `files`: which files of a folder are indexed: what the VCS would track (`.gitignore`), source
  code only, no binaries, generated, huge or secrets-like files, never outside the folder.
- `parse`: one file → its definitions (tree-sitter where a grammar is installed, a regex
  otherwise) and its syntax chunks, the units of the lexical index.
- `index`: the index itself (definitions by name, an incremental BM25 over chunks), built and
  updated on a background thread, bounded and reported.
- `choose`: per request, the definitions of the identifiers around the cursor plus the chunks
  most like the code above it, deduplicated, ranked, and kept stable across keystrokes.
"""
