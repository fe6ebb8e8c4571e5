"""The one error bad input data raises: it names the file, column and row where they are known."""

from __future__ import annotations


class DataError(ValueError):
    """Bad or unusable data. `row` is the 1-based data row (the header is not counted)."""

    status_code = 400

    def __init__(
        self, message: str, *, source: str | None = None, column: str | None = None, row: int | None = None
    ) -> None:
        self.reason = message
        self.source = source
        self.column = column
        self.row = row
        where = [f"{source}" if source else "", f"column '{column}'" if column else "", f"row {row}" if row else ""]
        prefix = ", ".join(part for part in where if part)
        super().__init__(f"{prefix}: {message}" if prefix else message)
