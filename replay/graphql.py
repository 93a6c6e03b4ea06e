"""GraphQL requests: matched on the normalised operation, compared per field on drift.

All of GraphQL goes to one URL, so the method-path-body key sees only "a POST
to /graphql with some JSON". Here a GraphQL body (``{"query": ...,
"variables": ..., "operationName": ...}``, or the same in a GET's query
string) becomes the operation parsed with graphql-core and printed in a
normal form: whitespace and comments gone, fragments inlined, the fields of
each selection set sorted, variables with their defaults filled in. Two
queries a person would call the same then make the same key.

graphql-core is the ``graphql`` extra: without it GraphQL bodies are matched
as any JSON body.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["GraphQLOperation", "normalise", "operation_type"]


def _parse(query: str) -> Any:
    try:
        from graphql import GraphQLError, parse
    except ImportError:  # the graphql extra is not installed
        return None
    try:
        return parse(query, no_location=True)
    except (GraphQLError, RecursionError):
        return None


def operation_type(query: str, operation_name: object = None) -> str | None:
    """``query``, ``mutation`` or ``subscription`` for the operation the request runs; None
    when it does not parse (or graphql-core is missing)."""
    document = _parse(query)
    if document is None:
        return None
    operation = _operation(document, operation_name)
    return None if operation is None else str(operation.operation.value)


def _operation(document: Any, operation_name: object) -> Any:
    from graphql import OperationDefinitionNode

    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if isinstance(operation_name, str) and operation_name:
        for operation in operations:
            if operation.name is not None and operation.name.value == operation_name:
                return operation
        return None
    return operations[0] if len(operations) == 1 else None


class GraphQLOperation:
    """One GraphQL request, normalised: what its match key is made of."""

    __slots__ = ("kind", "name", "text", "variables")

    def __init__(self, kind: str, name: str, text: str, variables: dict[str, Any]) -> None:
        self.kind = kind
        self.name = name
        """The operation's name ("" when anonymous)."""
        self.text = text
        """The operation printed in normal form."""
        self.variables = variables

    def key(self) -> tuple[str, str, str, str]:
        return (
            "graphql",
            self.name,
            self.text,
            json.dumps(self.variables, sort_keys=True, separators=(",", ":")),
        )


def normalise(document: object) -> GraphQLOperation | None:
    """The normalised operation of a GraphQL request body (a parsed JSON object), or None."""
    if not isinstance(document, dict):
        return None
    query = document.get("query")
    if not isinstance(query, str) or not query.strip():
        return None
    parsed = _parse(query)
    if parsed is None:
        return None
    operation = _operation(parsed, document.get("operationName"))
    if operation is None:
        return None
    from graphql import FragmentDefinitionNode

    fragments = {
        d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)
    }
    variables = document.get("variables")
    given = dict(variables) if isinstance(variables, dict) else {}
    filled: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name in given:
            filled[name] = given[name]
        elif definition.default_value is not None:
            from graphql import value_from_ast_untyped

            filled[name] = value_from_ast_untyped(definition.default_value)
    for name, value in given.items():
        filled.setdefault(name, value)
    selection = _normal_selection(operation.selection_set, fragments, 0)
    name = operation.name.value if operation.name is not None else ""
    text = f"{operation.operation.value} {selection}"
    return GraphQLOperation(str(operation.operation.value), name, text, filled)


def _normal_selection(selection_set: Any, fragments: dict[str, Any], depth: int) -> str:
    """Fields sorted, fragments inlined, arguments and directives in a fixed order."""
    from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, print_ast

    if selection_set is None or depth > 64:
        return ""
    parts: set[str] = set()
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            alias = f"{selection.alias.value}:" if selection.alias is not None else ""
            arguments = sorted(
                f"{a.name.value}:{print_ast(a.value)}" for a in selection.arguments or ()
            )
            arguments_text = f"({','.join(arguments)})" if arguments else ""
            directives = "".join(sorted(print_ast(d) for d in selection.directives or ()))
            inner = _normal_selection(selection.selection_set, fragments, depth + 1)
            parts.add(f"{alias}{selection.name.value}{arguments_text}{directives}{inner}")
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is None:
                parts.add(f"...{selection.name.value}")
                continue
            # Inlined: its fields join the parent's, as if written there. (Without the
            # schema the type condition cannot be checked; on a union it is lost.)
            inner = _normal_selection(fragment.selection_set, fragments, depth + 1)
            parts.update(_split_top(inner))
        elif isinstance(selection, InlineFragmentNode):
            condition = (
                f"on {selection.type_condition.name.value}"
                if selection.type_condition is not None
                else ""
            )
            inner = _normal_selection(selection.selection_set, fragments, depth + 1)
            parts.add(f"...{condition}{inner}")
    return "{" + " ".join(sorted(parts)) + "}"


def _split_top(selection: str) -> list[str]:
    """The top-level entries of a normalised selection ``{a b{c d}}`` -> ``["a", "b{c d}"]``."""
    body = selection[1:-1]
    entries: list[str] = []
    depth = 0
    start = 0
    for position, char in enumerate(body):
        if char in "{(":
            depth += 1
        elif char in "})":
            depth -= 1
        elif char == " " and depth == 0:
            entries.append(body[start:position])
            start = position + 1
    if body[start:]:
        entries.append(body[start:])
    return entries


# -- drift -------------------------------------------------------------------------------------

_RESPONSE_KEYS = frozenset({"data", "errors", "extensions"})


def is_graphql_answer(document: object) -> bool:
    """A GraphQL response: an object of ``data``, ``errors`` and ``extensions`` only."""
    return (
        isinstance(document, dict)
        and bool(document)
        and set(document) <= _RESPONSE_KEYS
        and ("data" in document or "errors" in document)
    )


def _error_key(error: object) -> str:
    """An error by its message and path, the parts that say what failed."""
    if not isinstance(error, dict):
        return json.dumps(error, sort_keys=True)
    path = ".".join(str(p) for p in error.get("path") or ())
    message = str(error.get("message", ""))
    return f"{path}: {message}" if path else message


def error_changes(
    old: dict[str, Any], new: dict[str, Any]
) -> list[tuple[str, str, str | None, str | None]]:
    """``errors[]`` compared as its own class: (kind, location, old, new) per error.

    A new error is breaking (the consumer gets a failure it did not before); one
    gone is a fix; the same error with another message is a value change. The
    caller compares ``data`` field by field.
    """
    before = [_error_key(e) for e in old.get("errors") or ()]
    after = [_error_key(e) for e in new.get("errors") or ()]
    changes: list[tuple[str, str, str | None, str | None]] = []
    for number, error in enumerate(after):
        if error not in before:
            changes.append(("graphql_error_added", f"errors[{number}]", None, error))
    for number, error in enumerate(before):
        if error not in after:
            changes.append(("graphql_error_removed", f"errors[{number}]", error, None))
    return changes


def introspection_query() -> str:
    """The standard introspection query (graphql-core's)."""
    from graphql import get_introspection_query

    return str(get_introspection_query(descriptions=False))


def schema_changes(old_sdl: str, new_introspection: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Schema drift between the recorded build's schema (SDL, or an introspection result as
    JSON) and the target's introspection result:
    (class, kind, description), class ``breaking`` (a removed field or type, a field made
    nullable, an argument added as required...), ``additive`` or ``value`` (nullability made
    stricter, a dangerous change). ``ValueError`` for an SDL or introspection that is not one."""
    from graphql import (
        GraphQLError,
        GraphQLInterfaceType,
        GraphQLObjectType,
        build_client_schema,
        build_schema,
        find_breaking_changes,
        find_dangerous_changes,
    )

    try:
        if old_sdl.lstrip().startswith("{"):  # an introspection result saved as JSON
            saved = json.loads(old_sdl)
            old = build_client_schema(saved.get("data", saved))
        else:
            old = build_schema(old_sdl)
    except (GraphQLError, TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"the GraphQL schema does not parse: {exc}") from exc
    try:
        data = new_introspection.get("data", new_introspection)
        new = build_client_schema(data)
    except (GraphQLError, TypeError, KeyError) as exc:
        raise ValueError(f"the target's introspection answer is not a schema: {exc}") from exc
    found: list[tuple[str, str, str]] = []
    for change in find_breaking_changes(old, new):
        found.append(("breaking", str(change.type.name).lower(), change.description))
    for danger in find_dangerous_changes(old, new):
        found.append(("value", str(danger.type.name).lower(), danger.description))
    for name, old_type in old.type_map.items():
        new_type = new.type_map.get(name)
        if name.startswith("__") or not isinstance(
            old_type, GraphQLObjectType | GraphQLInterfaceType
        ):
            continue
        if not isinstance(new_type, GraphQLObjectType | GraphQLInterfaceType):
            continue
        for field_name, old_field in old_type.fields.items():
            new_field = new_type.fields.get(field_name)
            if new_field is None:
                continue
            before, after = str(old_field.type), str(new_field.type)
            if before != after and before.replace("!", "") == after.replace("!", ""):
                described = f"{name}.{field_name} changed from {before} to {after}"
                if not any(described in text for _, _, text in found):
                    found.append(("value", "nullability_changed", described))
    return found


def field_paths(text: str) -> set[str]:
    """The leaf fields of a normalised operation (``GraphQLOperation.text``), as dotted paths:
    ``query {product(sku:$sku){name price}}`` -> ``{"product.name", "product.price"}``."""
    start = text.find("{")
    return _paths(text[start:], "") if start >= 0 else set()


def _paths(selection: str, prefix: str) -> set[str]:
    found: set[str] = set()
    for entry in _split_top(selection):
        depth = 0
        head, inner = entry, ""
        for position, char in enumerate(entry):
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "{" and depth == 0:
                head, inner = entry[:position], entry[position:]
                break
        name = head.split("(", 1)[0].split("@", 1)[0]
        path = f"{prefix}.{name}" if prefix else name
        found |= _paths(inner, path) if inner else {path}
    return found
