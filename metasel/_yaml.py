"""Reading a spec's YAML safely: bounded in size, depth and expansion, duplicate keys refused.

``yaml.safe_load`` constructs no objects but trusts the document's shape: a 356-byte
alias bomb expands to billions of nodes the moment anything walks it, 600 levels of
nesting overflow the recursive composer, and a key given twice silently keeps the last
value. :func:`load_spec_yaml` checks each limit before the step that would blow it up:
the nesting depth on the token stream (iterative), the expanded size on the node graph
(each shared node counted once per use, without expanding it), string lengths on the
scalars, then duplicate keys while constructing.
"""

from __future__ import annotations

from typing import Any

#: a spec file larger than this is refused before it is parsed
MAX_BYTES = 256_000
#: deepest nesting of mappings and lists
MAX_DEPTH = 32
#: nodes of the document once every alias is expanded
MAX_NODES = 100_000
#: longest string value or key
MAX_STRING = 10_000


class SpecYAMLError(ValueError):
    """A YAML document that breaks a limit or repeats a key; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def _loader_class():
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise SpecYAMLError(f"duplicate key {str(key)[:60]!r} (first given at line {seen[key]})", line)
                    seen[key] = line
                except TypeError:  # an unhashable key: the spec checks refuse it later
                    continue
            return super().construct_mapping(node, deep=deep)

    return Loader


def _check_depth(text: str) -> None:
    import yaml

    opening = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
               yaml.FlowSequenceStartToken)
    closing = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, opening):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecYAMLError(f"nested more than {MAX_DEPTH} levels deep", token.start_mark.line + 1)
        elif isinstance(token, closing):
            depth -= 1
        elif isinstance(token, yaml.ScalarToken) and len(token.value) > MAX_STRING:
            raise SpecYAMLError(f"a string of {len(token.value):,} characters (at most {MAX_STRING:,})",
                                token.start_mark.line + 1)


def _expanded_size(root) -> int:
    """Nodes of the document with every alias expanded, counted without expanding (memoised per node)."""
    import yaml

    size: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size:
            continue
        if isinstance(node, yaml.ScalarNode):
            size[id(node)] = 1
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if done:
            total = 1 + sum(size.get(id(c), 0) for c in children)
            size[id(node)] = total
            if total > MAX_NODES:
                raise SpecYAMLError(f"expands to more than {MAX_NODES:,} values (aliases of aliases?)",
                                    node.start_mark.line + 1)
        else:
            stack.append((node, True))
            stack += [(c, False) for c in children if id(c) not in size]
    return size.get(id(root), 0)


def load_spec_yaml(text: str) -> Any:
    """The document in ``text``, or :class:`SpecYAMLError` (a limit, a duplicate key) or
    ``yaml.YAMLError`` (not YAML)."""
    if len(text) > MAX_BYTES:
        raise SpecYAMLError(f"{len(text):,} characters; a spec has at most {MAX_BYTES:,}")
    _check_depth(text)
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
