"""The four quantities of the decomposition ``CE = EE + SA - Conf``, named once.

Every table, figure, fit and file refers to a quantity through one of these records: its short
key (``"EE"``, the name used in fits.json, tables and figure legends), the key of its value in a
cell's summary (``"error_entropy"``) and its long name (``"Error-Entropy"``).
:data:`QUANTITIES` lists them in the paper's order, CE first; :data:`COMPONENTS` are the three
parts of CE.

Examples:
    >>> from errorentropy.stats.quantities import EE, QUANTITIES, by_key
    >>> [q.key for q in QUANTITIES]
    ['CE', 'EE', 'SA', 'Conf']
    >>> EE.field, EE.label
    ('error_entropy', 'Error-Entropy (EE)')
    >>> by_key("Conf").name
    'Confidence'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    """One quantity of the decomposition.

    Attributes:
        key: the short name (``"CE"``, ``"EE"``, ``"SA"``, ``"Conf"``) used in fits.json, tables
            and figures.
        field: the key of its value (nats per token) in a cell's summary.
        name: the long name, as the paper writes it.
    """

    key: str
    field: str
    name: str

    @property
    def label(self) -> str:
        """The long name with the key, e.g. ``"Error-Entropy (EE)"`` (figure titles)."""
        return f"{self.name} ({self.key})"


CE = Quantity("CE", "cross_entropy", "Cross-entropy")
EE = Quantity("EE", "error_entropy", "Error-Entropy")
SA = Quantity("SA", "self_alignment", "Self-Alignment")
CONF = Quantity("Conf", "confidence", "Confidence")

QUANTITIES: tuple[Quantity, ...] = (CE, EE, SA, CONF)
"""The paper's order: CE, then its parts EE, SA and Conf."""

COMPONENTS: tuple[Quantity, ...] = (EE, SA, CONF)
"""The parts of CE (``CE = EE + SA - Conf``): Table 2's columns, Fig. 8's panels."""

KEYS: tuple[str, ...] = tuple(q.key for q in QUANTITIES)
"""The short names in the paper's order: ``("CE", "EE", "SA", "Conf")``."""


def by_key(key: str) -> Quantity:
    """The quantity whose short name is ``key``; raises KeyError for any other name."""
    for quantity in QUANTITIES:
        if quantity.key == key:
            return quantity
    raise KeyError(f"no quantity {key!r}; choose one of {', '.join(KEYS)}")
