"""Text around the local model: the chat template, tool calls as text, the call grammar's
schema, and the streaming cut at stop strings and at "<tool_call>".

Tools follow the Qwen2.5 convention, which small instruct models read well: called as
<tool_call>{"name": ..., "arguments": {...}}</tool_call>, answered in a user message inside
<tool_response></tool_response>. The tool list itself is local_prompt.compact_tools().
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Sequence

from .base import ChatMessage, ToolCall, ToolSpec

log = logging.getLogger(__name__)

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
STOP_STRINGS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|eot_id|>", "</s>",
                "<end_of_turn>", "<start_of_turn>", "<tool_response>", TOOL_CLOSE)
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
          "{{ message['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Gemma GGUFs without a template (the base models): Gemma's turn markers, the system prompt
# as a turn of its own so that it stays a fixed prefix.
GEMMA = ("{{ bos_token }}{% for message in messages %}<start_of_turn>"
         "{{ 'model' if message['role'] == 'assistant' else 'user' }}\n"
         "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
         "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
MAX_STRING_CHARS = 120   # bound on free-text tool arguments under the grammar


def render_call(call: ToolCall) -> str:
    return (f"{TOOL_OPEN}\n" + json.dumps({"name": call.name, "arguments": dict(call.args)},
                                          ensure_ascii=False) + f"\n{TOOL_CLOSE}")


def as_template_message(m: ChatMessage) -> tuple[str, str]:
    if m.role == "user":
        return "user", f"{m.context}\n\n{m.text}" if m.context else m.text
    if m.role == "assistant":
        parts = [m.text] if m.text else []
        parts.extend(render_call(c) for c in m.tool_calls)
        return "assistant", "\n".join(parts)
    return "user", f"<tool_response>\n{m.text}\n</tool_response>"


def tool_call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """JSON schema of {"name": ..., "arguments": ...} for exactly one of the tools."""
    options = []
    for t in tools:
        options.append({"type": "object", "additionalProperties": False,
                        "required": ["name", "arguments"],
                        "properties": {"name": {"const": t.name},
                                       "arguments": _bounded(dict(t.parameters))}})
    return options[0] if len(options) == 1 else {"oneOf": options}


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of a schema whose free strings have a length limit (the grammar must end)."""
    out = dict(schema)
    if out.get("type") == "string" and "enum" not in out and "maxLength" not in out:
        out["maxLength"] = MAX_STRING_CHARS
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _bounded(dict(v)) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = _bounded(dict(out["items"]))
        out.setdefault("maxItems", 10)
    if out.get("type") == "object" and "properties" not in out:
        out["properties"] = {}
        out.setdefault("additionalProperties", False)
    return out


def chat_template(llama: Any) -> Callable[[list[dict[str, str]], bool], str]:
    """The GGUF's chat template as a function of messages (when it has none: Gemma's turns
    for a Gemma vocabulary, else ChatML)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    metadata = getattr(llama, "metadata", {}) or {}
    source = metadata.get("tokenizer.chat_template") or (
        GEMMA if _has_token(llama, "<start_of_turn>") else CHATML)

    def token_text(token: int) -> str:
        return llama._model.token_get_text(token) if token != -1 else ""

    eos, bos = token_text(llama.token_eos()), token_text(llama.token_bos())
    formatters = {generation: Jinja2ChatFormatter(template=source, eos_token=eos, bos_token=bos,
                                                  add_generation_prompt=generation)
                  for generation in (True, False)}
    chatml = {generation: Jinja2ChatFormatter(template=CHATML, eos_token="", bos_token="",
                                              add_generation_prompt=generation)
              for generation in (True, False)}

    def render(messages: list[dict[str, str]], generation: bool = True) -> str:
        try:
            return formatters[generation](messages=messages).prompt
        except Exception as exc:  # noqa: BLE001 - a model's own Jinja template may fail anyhow
            log.warning("chat template failed (%s); using ChatML", exc)
            return chatml[generation](messages=messages).prompt

    return render


def _has_token(llama: Any, text: str) -> bool:
    tokens = llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    return len(tokens) == 1


class Splitter:
    """Cuts streamed text at the first sentinel, holding back an end that could start one."""

    def __init__(self, sentinels: Sequence[str]) -> None:
        self.sentinels = tuple(sentinels)
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, str | None]:
        """(text safe to emit now, the sentinel found or None; after a sentinel, stop)."""
        self.pending += piece
        hit: tuple[int, str] | None = None
        for s in self.sentinels:
            i = self.pending.find(s)
            if i != -1 and (hit is None or i < hit[0]):
                hit = (i, s)
        if hit is not None:
            text, self.pending = self.pending[:hit[0]], ""
            return text, hit[1]
        keep = 0
        for s in self.sentinels:
            for n in range(min(len(s) - 1, len(self.pending)), keep, -1):
                if self.pending.endswith(s[:n]):
                    keep = n
                    break
        cut = len(self.pending) - keep
        text, self.pending = self.pending[:cut], self.pending[cut:]
        return text, None

    def flush(self) -> str:
        """What was held back, at the end of the stream (dropped if it looks like markup)."""
        rest, self.pending = self.pending, ""
        return "" if rest.startswith("<") else rest


def json_complete(text: str) -> bool:
    """True once `text` holds one whole JSON object (braces balanced outside strings)."""
    depth, in_string, escaped, seen = 0, False, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
            seen = True
        elif ch == "}":
            depth -= 1
            if seen and depth == 0:
                return True
    return False
