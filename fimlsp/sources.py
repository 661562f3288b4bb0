"""Which documents may lend their text to another document's prompt.

A prompt may leave the machine (a serving engine elsewhere) and a suggestion may repeat what it
was shown, so a document's text goes into another document's prompt only when the user can be
taken to mean it as code of the project they work on:

- `file:` documents inside the workspace folders the client named (when it named none, as with
  a single file opened on its own, every local `file:` document: no folder sets a boundary);
- `untitled:` buffers (unsaved text the user is typing);
- never any other scheme: `git:` (other revisions), `output:` (logs), `vscode-userdata:`
  (editor settings), `vscode-notebook-cell:` and whatever else an editor syncs;
- never a secrets-like name, in any folder: `SECRET_NAMES` below, or a file under one of
  `SECRET_DIRS` (`~/.ssh`, the editor's own `.vscode` settings); `contextSecrets: true` lets
  open documents with such names lend snippets after all (the workspace index never reads them).

The same list is the workspace index's (fimlsp/repo/files.py), so what an unopened file cannot
lend, the same file opened cannot either. Matching is by name, case-insensitive, on the path as
the URI gives it (no disk access: this runs per request on the model's thread).
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

# File names that hold credentials or keys, refused even where an extension would look like code
# (`secrets.py`, `id_rsa.pub`, `credentials.json`).
SECRET_NAMES = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks",
    "*.keystore", "*.crt", "*.cer", "*.der", "*.gpg", "*.asc", "id_rsa*", "id_dsa*", "id_ecdsa*",
    "id_ed25519*", ".netrc", "_netrc", ".npmrc", ".pypirc", ".git-credentials", "*credential*",
    "*secret*", "*.tfvars", "*.tfstate", "*.kdbx", "htpasswd", ".htpasswd", ".pgpass",
    "settings.json", "*.code-workspace", "auth.json", ".dockercfg",
)
# Folders whose every file is configuration with credentials or the editor's own settings.
SECRET_DIRS = frozenset({".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker", ".vscode",
                         ".idea", ".password-store"})
UNSAVED_SCHEMES = frozenset({"untitled"})


def is_secret(name: str) -> bool:
    """A secrets-like file name (`SECRET_NAMES`)."""
    lower = name.lower()
    return any(fnmatch.fnmatchcase(lower, pattern) for pattern in SECRET_NAMES)


def is_secret_path(parts: Iterable[str]) -> bool:
    """A path (its components, the file's name last) that names a secret or lies under a
    secrets folder."""
    parts = list(parts)
    return bool(parts) and (is_secret(parts[-1]) or
                            any(part.lower() in SECRET_DIRS for part in parts[:-1]))


def _local_path(uri: str) -> str | None:
    """The normalised path of a local `file:` URI (escaped or not), else None."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    # An unescaped URI may hold '?' or '#' in a file name: the path is everything after the
    # authority.
    rest = uri[len(parts.scheme) + 1:]
    if rest.startswith("//"):
        rest = rest[2 + len(parts.netloc):]
    path = unquote(rest)
    return posixpath.normpath(path) if path.startswith("/") else None


class ContextSources:
    """The rule of the module docstring for one server: its workspace folders and settings.

    Asked per document per request on the model's threads while the event loop may change the
    folders: the folders, the setting and the verdicts so far are one tuple, replaced whole."""

    def __init__(self, folders: Iterable[str] = (), allow_secrets: bool = False) -> None:
        self._state: tuple[tuple[str, ...], bool, bool, dict[str, bool]] = ((), False, False, {})
        self.set_folders(folders, allow_secrets)

    def set_folders(self, uris: Iterable[str], allow_secrets: bool | None = None) -> None:
        """The workspace folders (URIs) the client named (non-local ones hold no documents);
        `allow_secrets`: the `contextSecrets` setting, when it is given."""
        uris = list(uris)
        folders = tuple(p for p in (_local_path(u) for u in uris) if p is not None)
        allow = self.allow_secrets if allow_secrets is None else allow_secrets
        if (folders, bool(uris), allow) != self._state[:3]:
            self._state = (folders, bool(uris), allow, {})

    def set_allow_secrets(self, allow: bool) -> None:
        folders, named, _allow, _verdicts = self._state
        if allow != self.allow_secrets:
            self._state = (folders, named, allow, {})

    @property
    def allow_secrets(self) -> bool:
        return self._state[2]

    @property
    def folders(self) -> tuple[str, ...]:
        return self._state[0]

    def allows(self, uri: str) -> bool:
        """May the document at `uri` lend snippets to other documents' prompts?"""
        folders, named, allow, verdicts = self._state
        verdict = verdicts.get(uri)
        if verdict is None:
            if len(verdicts) > 4096:  # URIs of documents long closed: start again
                verdicts.clear()
            verdict = verdicts[uri] = _decide(uri, folders, named, allow)
        return verdict


def _decide(uri: str, folders: tuple[str, ...], named: bool, allow_secrets: bool) -> bool:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in UNSAVED_SCHEMES:
        name = unquote(uri.split(":", 1)[1]).rsplit("/", 1)[-1]
        return allow_secrets or not is_secret(name)
    path = _local_path(uri)
    if path is None:
        return False
    if not folders:
        if named:
            return False  # folders named, none of them local: nothing here is in them
        parts = path.split("/")[1:]
    else:
        root = next((f for f in folders if path == f or path.startswith(f.rstrip("/") + "/")),
                    None)
        if root is None:
            return False
        parts = path[len(root.rstrip("/")) + 1:].split("/")
    return allow_secrets or not is_secret_path(parts)
