"""``hf:org/name[@revision]`` targets: a model from the local Hugging Face cache, resolved the
way ``from_pretrained`` does offline (``HF_HOME``/``HF_HUB_CACHE`` respected). Nothing is
downloaded: a model that is not cached is a usage error that says how to fetch it."""
from __future__ import annotations

import re

from evalguard.errors import UsageError

PREFIX = "hf:"
_SPEC = re.compile(r"^hf:(?P<repo>[\w.-]+(?:/[\w.-]+)?)(?:@(?P<revision>[\w./-]+))?$")


def is_hf_id(target: str) -> bool:
    return target.startswith(PREFIX)


def resolve(target: str) -> str:
    """The cached snapshot folder of ``hf:org/name[@revision]`` (revision: a branch, tag or commit)."""
    match = _SPEC.match(target)
    if not match:
        raise UsageError(f"{target}: expected hf:ORG/NAME or hf:ORG/NAME@REVISION")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise UsageError(f"{target}: resolving Hugging Face ids needs huggingface_hub "
                         "(pip install huggingface_hub, or transformers)") from None
    repo, revision = match.group("repo"), match.group("revision")
    try:
        return snapshot_download(repo, revision=revision, local_files_only=True)
    except LocalEntryNotFoundError:
        from huggingface_hub.constants import HF_HUB_CACHE

        wanted = repo + (f"@{revision}" if revision else "")
        raise UsageError(f"{target}: not in the local Hugging Face cache ({HF_HUB_CACHE}); evalguard does not "
                         f"download models: fetch it first (huggingface-cli download {repo}"
                         f"{' --revision ' + revision if revision else ''}, or from_pretrained({wanted!r}))") from None
    except Exception as exc:  # noqa: BLE001 - a malformed repo id or revision
        raise UsageError(f"{target}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
