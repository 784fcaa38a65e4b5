"""The shape of a seed row: where its instruction, input, output, system prompt and id come from. Format presets
(alpaca, dolly, sharegpt, messages), a field mapping with dotted paths into nested records (`instances.0.input`),
and `auto`, which guesses a preset or a mapping from the first rows' column names. A turn's content may be a list
of parts (OpenAI's `[{"type": "text", "text": …}]`): its text parts are read, joined by a newline."""

from __future__ import annotations

from dataclasses import dataclass

# Record fields a shape fills; `conversation` is the column holding a chat's turns (sharegpt, messages).
FIELDS = ("instruction", "input", "output", "system", "id")
MAPPABLE = FIELDS + ("conversation",)
FORMATS = ("auto", "alpaca", "dolly", "sharegpt", "messages")


@dataclass(frozen=True)
class Turns:
    """How a conversation format writes a turn: its role and content keys, and the role names it uses."""

    role: str
    content: str
    user: tuple[str, ...]
    assistant: tuple[str, ...]
    system: tuple[str, ...] = ("system",)


TURNS = {
    "sharegpt": Turns("from", "value", ("human", "user"), ("gpt", "assistant")),
    "messages": Turns("role", "content", ("user",), ("assistant",)),
}

PRESETS = {
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output", "system": "system", "id": "id"},
    "dolly": {"instruction": "instruction", "input": "context", "output": "response", "id": "id"},
    "sharegpt": {"conversation": "conversations", "system": "system", "id": "id"},
    "messages": {"conversation": "messages", "id": "id"},
}

# Column names `auto` recognises for each field (compared case-insensitively), most specific first.
COMMON_NAMES = {
    "instruction": ("instruction", "prompt", "question", "query", "problem", "text"),
    "input": ("input", "context"),
    "output": ("output", "response", "answer", "completion", "solution"),
    "system": ("system", "system_prompt"),
    "id": ("id",),
}
# Columns named like a chat that `auto` takes as the instruction when they hold text rather than turn objects: a
# string (LIMA's test set), or a list of strings alternating user and assistant (LIMA's train set: the first two).
CHAT_NAMES = ("conversations", "conversation", "messages")
# Content part types that hold text (OpenAI chat, and the Responses API's input/output text); any other part
# (image_url, input_audio, file, refusal, …) makes its row a `non_text_content` reject.
TEXT_PARTS = ("text", "input_text", "output_text")
PART_SEPARATOR = "\n"  # between a turn's text parts, as vLLM's OpenAI server joins them into one prompt string

MISSING = object()  # a path that leads nowhere in a row (unlike a null value, which is there)


def lookup(row: dict, path: str):
    """The value at a dotted `path` in a nested row (`instances.0.input`: key, list index, key), or MISSING.
    A key that itself holds dots is found as it is."""
    if path in row:
        return row[path]
    value = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


@dataclass(frozen=True)
class Shape:
    """Where each record field comes from in a source row: `fields` maps a field to a dotted path."""

    format: str = "alpaca"
    fields: tuple[tuple[str, str], ...] = tuple(PRESETS["alpaca"].items())

    def path(self, name: str) -> str | None:
        return dict(self.fields).get(name)

    @property
    def turns(self) -> Turns | None:
        return TURNS.get(self.format)

    def as_dict(self) -> dict:
        """The shape as plain data, for the log, summary.json and the manifest."""
        return {"format": self.format, "fields": dict(sorted(self.fields))}

    def columns(self, names: list[str]) -> list[str]:
        """The table columns this shape reads (a path's first part, or the whole path when a column has it)."""
        wanted = {path if path in names else path.split(".")[0] for _, path in self.fields}
        return [name for name in names if name in wanted]

    def root(self, names: list[str]) -> str:
        """The column a row cannot do without: the one holding the instruction (or the conversation)."""
        path = self.path("conversation") if self.turns else self.path("instruction")
        return path if path in names else path.split(".")[0]

    def label(self, name: str) -> str:
        """How a message names where `name` came from: "'instruction'", "'value' of the first human turn in …"."""
        turns = self.turns
        if turns and name in ("instruction", "output"):
            role = turns.user[0] if name == "instruction" else turns.assistant[0]
            return f"'{turns.content}' of the first {role} turn in '{self.path('conversation')}'"
        return f"'{self.path(name) or name}'"

    def project(self, row: dict) -> tuple[dict, tuple[str, str] | None]:
        """The row's fields under the record's names (absent ones left out, nulls kept as None), and a problem
        (reason, message) when a conversation cannot be read."""
        found = {}
        for name, path in self.fields:
            if name != "conversation" and (value := lookup(row, path)) is not MISSING:
                found[name] = value
        return (found, None) if self.turns is None else _read_turns(row, self, found)


def _read_turns(row: dict, shape: Shape, found: dict) -> tuple[dict, tuple[str, str] | None]:
    """The first user turn as the instruction, the first assistant turn after it as the output, a system turn as
    the system prompt (over a `system` column)."""
    turns, path = shape.turns, shape.path("conversation")
    chat = lookup(row, path)
    if chat is MISSING or chat is None:
        return found, ("missing_field", f"field '{path}' is {'missing' if chat is MISSING else 'null'}")
    if not isinstance(chat, list):
        return found, ("bad_conversation", f"field '{path}' is {kind(chat)}, expected a list of turns")
    roles, system_turn, problem = [], False, None
    for number, turn in enumerate(chat, 1):
        if not isinstance(turn, dict):
            return found, ("bad_conversation", f"turn {number} of '{path}' is {kind(turn)}, expected an object")
        role = turn.get(turns.role)
        role = role.lower() if isinstance(role, str) else role
        roles.append(str(role))
        if role in turns.system and not system_turn:
            name, system_turn = "system", True
        elif role in turns.user and "instruction" not in found:
            name = "instruction"
        elif role in turns.assistant and "instruction" in found and "output" not in found:
            name = "output"
        else:
            continue  # turns the record does not read: their parts are not checked
        found[name], part_problem = _content_text(turn.get(turns.content), f"'{turns.content}' of turn {number} "
                                                                           f"in '{path}'")
        problem = problem or part_problem  # the first one; the turns after it are still read, for the rejects file
    if problem:
        return found, problem
    if "instruction" not in found:
        seen = ", ".join(dict.fromkeys(roles)) or "none"
        return found, ("missing_field", f"field '{path}' has no {'/'.join(turns.user)} turn (roles found: {seen})")
    return found, None


def _content_text(content, where: str) -> tuple[object, tuple[str, str] | None]:
    """A turn's content as the record reads it: a list of parts becomes its text parts joined by PART_SEPARATOR
    (a part's text under "text", or "value" as some converters write it), with the first part that is not text
    as the problem (non_text_content is a problem of the row, not of the file; the rejects file keeps the text).
    Content that is not a list is left for the row check."""
    if not isinstance(content, list):
        return content, None
    texts, problem = [], None
    for number, part in enumerate(content, 1):
        key = next((k for k in ("text", "value") if k in part), None) if isinstance(part, dict) else None
        part_type = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, str):
            texts.append(part)
        elif not isinstance(part, dict):
            problem = problem or ("bad_conversation", f"part {number} of {where} is {kind(part)}, expected an object")
        elif part_type is not None and part_type not in TEXT_PARTS:
            problem = problem or ("non_text_content", f"part {number} of {where} is of type {part_type!r}; only "
                                                      f"text parts ({', '.join(TEXT_PARTS)}) are read")
        elif key is None:
            problem = problem or ("bad_conversation", f"part {number} of {where} has no 'text' (keys: "
                                                      f"{', '.join(map(str, part)) or 'none'})")
        elif not isinstance(part[key], str):
            problem = problem or ("not_a_string", f"'{key}' of part {number} of {where} is {kind(part[key])}, "
                                                  "expected a string")
        else:
            texts.append(part[key])
    return PART_SEPARATOR.join(texts), problem


_KINDS = {type(None): "null", bool: "a boolean", int: "an int", float: "a float", str: "a string"}
_KINDS.update({list: "a list", dict: "an object", bytes: "bytes"})


def kind(value) -> str:
    """The JSON-ish name of a value's type, for messages (bool is checked before int, its base class)."""
    return next((name for k, name in _KINDS.items() if isinstance(value, k)), f"a {type(value).__name__}")


def make_shape(fmt: str, overrides: dict[str, str | None]) -> Shape:
    """A preset with the fields the user named (`data.fields.*`) put over it."""
    if fmt not in PRESETS:
        raise ValueError(f"data.format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    unknown = set(overrides) - set(MAPPABLE)
    if unknown:
        raise ValueError(f"data.fields has no {', '.join(sorted(unknown))} (it maps {', '.join(MAPPABLE)})")
    fields = {**PRESETS[fmt], **{k: v for k, v in overrides.items() if v}}
    # a preset's optional field naming the column now mapped to the instruction reads nothing
    fields = {k: v for k, v in fields.items() if k == "instruction" or v != fields.get("instruction")}
    if fmt in TURNS:
        fields = {k: v for k, v in fields.items() if k not in ("instruction", "input", "output")}
    elif "conversation" in fields:
        raise ValueError(f"data.fields.conversation needs data.format=sharegpt or messages, not {fmt}")
    return Shape(fmt, tuple(sorted(fields.items())))


def guess_shape(rows: list) -> Shape | None:
    """`data.format=auto`: the shape the first rows suggest, or None when no column looks like an instruction."""
    return explain_shape(rows)[0]


def explain_shape(rows: list) -> tuple[Shape | None, str]:
    """`data.format=auto`'s guess from the first rows, and why, for the log. A list of {from, value} or {role,
    content} turns makes a conversation format unless instruction and output columns are both there; otherwise
    common column names are matched case-insensitively, a chat column holding text (CHAT_NAMES) is the
    instruction, and `instances: [{input, output}]` (Super-NaturalInstructions) is looked into."""
    rows = [row for row in rows if isinstance(row, dict)]
    by_lower: dict[str, str] = {}
    for row in rows:
        for key in row:
            by_lower.setdefault(str(key).lower(), key)
    found = {name: _first_known(by_lower, names) for name, names in COMMON_NAMES.items()}
    chats = _conversation_columns(rows)
    if chats and not (found["instruction"] and found["output"]):
        fmt, column = chats[0]
        turns = TURNS[fmt]
        why = f"'{column}' holds lists of {{{turns.role}, {turns.content}}} turns"
        return make_shape(fmt, {"conversation": column, "system": found["system"], "id": found["id"]}), why
    why = "columns named like the fields"
    if not found["instruction"] and (chat := _chat_text_column(rows, by_lower)):
        column, listed = chat
        if listed:
            found["instruction"], found["output"] = f"{column}.0", found["output"] or f"{column}.1"
            why = (f"'{column}' holds lists of strings, not turn objects: the first is the instruction, the second "
                   "the output")
        else:
            found["instruction"] = column
            why = f"'{column}' holds a string, not a list of turns: it is the instruction"
    elif not found["instruction"] and found["input"]:  # rows of {input, output}: the input is the task
        found["instruction"], found["input"] = found["input"], None
        why = f"no instruction column: '{found['instruction']}' is the task"
    if not found["instruction"]:
        return None, "no column named like an instruction and no list of turns"
    if not (found["input"] or found["output"]):
        found.update(_nested_pair(rows))
    fields = {name: path for name, path in found.items() if path}
    for fmt in ("alpaca", "dolly"):  # name the preset when it is one
        preset = make_shape(fmt, {})
        if all(preset.path(name) == path for name, path in fields.items()):
            return preset, why
    return make_shape("alpaca", fields), why


def instruction_candidates(rows: list) -> list[list[Shape]]:
    """When `auto` cannot tell the instruction: for each path holding text in the first rows (a column, a key in
    an object, a list's first item), alpaca shapes reading it as the instruction, first over the other fields
    auto recognised by name, then over the alpaca names alone (the caller keeps the first that reads rows)."""
    rows = [row for row in rows if isinstance(row, dict)]
    by_lower = {str(key).lower(): key for row in reversed(rows) for key in row}  # the first spelling wins
    known = {name: _first_known(by_lower, names) for name, names in COMMON_NAMES.items() if name != "instruction"}
    known = {name: path for name, path in known.items() if path}
    out = []
    for path in _text_paths(rows):
        if path not in known.values():
            variants = [make_shape("alpaca", {**known, "instruction": path}),
                        make_shape("alpaca", {"instruction": path})]
            out.append(list(dict.fromkeys(variants)))
    return out


def _text_paths(rows: list[dict]) -> list[str]:
    """Dotted paths to strings in the rows, in column order: a key, a key inside an object, the first item of a
    list (and a key inside it)."""
    paths: dict[str, None] = {}
    for row in rows[:20]:
        for key, value in row.items():
            for sub, inner in _children(value):
                for subsub, leaf in _children(inner) if sub else [("", inner)]:
                    if isinstance(leaf, str):
                        paths.setdefault(f"{key}{sub}{subsub}")
    return list(paths)


def _children(value) -> list[tuple[str, object]]:
    """("", value) itself, then (".key", item) of an object or (".0", first item) of a list."""
    if isinstance(value, dict):
        return [("", value)] + [(f".{k}", v) for k, v in value.items() if "." not in str(k)]
    if isinstance(value, list) and value:
        return [("", value), (".0", value[0])]
    return [("", value)]


def _chat_text_column(rows: list[dict], by_lower: dict[str, str]) -> tuple[str, bool] | None:
    """(column, whether it holds lists) of the first CHAT_NAMES column whose values in the rows are all strings,
    or all lists of strings."""
    for name in CHAT_NAMES:
        column = by_lower.get(name)
        values = [row[column] for row in rows[:20] if row.get(column) is not None] if column else []
        if values and all(isinstance(v, str) for v in values):
            return column, False
        if values and all(isinstance(v, list) and v and all(isinstance(s, str) for s in v) for v in values):
            return column, True
    return None


def _first_known(by_lower: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((by_lower[name] for name in names if name in by_lower), None)


def _conversation_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(format, column) of every column holding a list of turn objects, in column order."""
    out = []
    for row in rows[:20]:
        for key, value in row.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                keys = set(value[0])
                for fmt, turns in TURNS.items():
                    if {turns.role, turns.content} <= keys and (fmt, key) not in out:
                        out.append((fmt, key))
    return out


def _nested_pair(rows: list[dict]) -> dict[str, str]:
    """input/output paths into the first item of a list of objects (`instances.0.input`), if one holds them."""
    for row in rows[:20]:
        for key, value in row.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                inner = {str(k).lower(): k for k in value[0]}
                pair = {name: _first_known(inner, COMMON_NAMES[name]) for name in ("input", "output")}
                if pair["output"]:
                    return {name: f"{key}.0.{sub}" for name, sub in pair.items() if sub}
    return {}


def overrides_for(shape: Shape) -> str:
    """The command-line overrides that select `shape`: `data.format=dolly`, or `data.fields.*=…` over alpaca."""
    if shape.format != "alpaca":
        preset = make_shape(shape.format, {})
        extra = [f"data.fields.{k}={v}" for k, v in shape.fields if preset.path(k) != v]
        return " ".join([f"data.format={shape.format}", *extra])
    changed = [f"data.fields.{k}={v}" for k, v in shape.fields if PRESETS["alpaca"].get(k) != v]
    return " ".join(["data.format=alpaca", *changed])
