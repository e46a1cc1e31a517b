"""Parsing of JSON request bodies that refuses what a client got wrong with a 400, never a 500:
invalid UTF-8 or syntax, non-finite numbers (``NaN``, ``Infinity``, ``1e309``), integers with
thousands of digits, and nesting deep enough to exhaust the parser's recursion.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from omoai_core.errors import InvalidInputError


def _constant(name: str) -> NoReturn:
    raise InvalidInputError(f"the body is not valid JSON: {name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInputError(f"the body is not valid JSON: {text[:32]} is out of the range of a number")
    return value


def parse_json(data: bytes | str) -> Any:
    """The parsed body; :class:`InvalidInputError` (400) for anything that is not plain, finite JSON."""
    try:
        return json.loads(data, parse_constant=_constant, parse_float=_finite)
    except InvalidInputError:
        raise
    except RecursionError:
        raise InvalidInputError("the body is not valid JSON: it is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidInputError("the body is not valid JSON: it is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:  # e.g. an integer over Python's digit limit
        raise InvalidInputError(f"the body is not valid JSON: {str(e)[:120]}") from None
