"""Strategic merge of plain data, for profile `targets` and `patches`.

Mappings merge key by key; a `null` in the patch removes the key; lists of mappings that
all carry a `name` merge item by item on that name (as Kubernetes merges containers);
any other list, and any scalar, is replaced. Inputs are never modified.
"""

from __future__ import annotations

from typing import Any


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        result = dict(base)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = merge(result[key], value)
            else:
                result[key] = value
        return result
    if _named_items(base) and _named_items(patch):
        result_list = list(base)
        positions = {item["name"]: index for index, item in enumerate(result_list)}
        for item in patch:
            index = positions.get(item["name"])
            if index is None:
                positions[item["name"]] = len(result_list)
                result_list.append(item)
            else:
                result_list[index] = merge(result_list[index], item)
        return result_list
    return patch


def _named_items(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in value)
    )
